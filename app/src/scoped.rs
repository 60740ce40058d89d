//! Tenant-scoped access to any tenant-owned table by name, for code that must treat every
//! table alike (the isolation gate, data repair tasks) without a typed method per table.
//!
//! The same guarantees as the typed API: every statement runs in a transaction bound to
//! the tenant (on PostgreSQL, `app.tenant_id` for the row-level security policies) and
//! filters by `tenant_id`; a row carrying another tenant's id is refused before it reaches
//! the database, and `tenant_id` can never be assigned.

use serde_json::{Map, Value};

use crate::Error;
use crate::tenant::{Db, Tenant, in_tenant_transaction};

/// The column that names a row's tenant, in every tenant-owned table.
pub const TENANT_COLUMN: &str = "tenant_id";

/// One tenant's view of one table. Values travel as JSON so that the database, which
/// knows the column types, converts them.
#[derive(Clone, Debug)]
pub struct ScopedTable<'db> {
    tenant: Tenant<'db>,
    table: String,
}

impl<'db> Tenant<'db> {
    /// The tenant's rows of `table`; the name must be a plain identifier.
    pub fn table(&self, table: &str) -> Result<ScopedTable<'db>, Error> {
        identifier(table)?;
        Ok(ScopedTable {
            tenant: *self,
            table: table.to_string(),
        })
    }
}

impl ScopedTable<'_> {
    /// The values of `key` (as text) of every row the tenant owns, in order.
    pub async fn keys(&self, key: &str) -> Result<Vec<String>, Error> {
        let key = identifier(key)?;
        let sql = format!(
            "SELECT CAST({key} AS TEXT) FROM {} WHERE {TENANT_COLUMN} = $1 ORDER BY {key}",
            self.quoted()
        );
        let tenant = self.tenant;
        in_tenant_transaction!(tenant, |tx| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(tenant.id.0)
                .fetch_all(&mut *tx)
                .await?
        })
    }

    /// Inserts `row` (column → value). The row's `tenant_id` must be this tenant's, or
    /// absent (it is then filled in).
    pub async fn insert(&self, row: &Map<String, Value>) -> Result<(), Error> {
        let tenant = self.tenant.id.0;
        let mut row = row.clone();
        match row.get(TENANT_COLUMN) {
            None | Some(Value::Null) => {
                row.insert(TENANT_COLUMN.to_string(), Value::from(tenant));
            }
            Some(value) if value.as_i64() == Some(tenant) => {}
            Some(value) => {
                return Err(Error::WrongTenant {
                    table: self.table.clone(),
                    row_tenant: value.to_string(),
                    tenant,
                });
            }
        }
        let columns = identifiers(&row)?;
        let json = Value::Object(row).to_string();
        let table = self.quoted();
        // PostgreSQL converts the JSON with the table's own row type; SQLite's columns
        // take JSON scalars as they are.
        let postgres = format!(
            "INSERT INTO {table} ({list}) SELECT {list} FROM json_populate_record(NULL::{table}, $1::json)",
            list = columns.join(", ")
        );
        let sqlite = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            columns.join(", "),
            row_paths(&columns)
        );
        let sql = self.pick(postgres, sqlite);
        let tenant = self.tenant;
        in_tenant_transaction!(tenant, |tx| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&json)
                .execute(&mut *tx)
                .await?;
        })
    }

    /// Sets `values` on the tenant's rows whose `key` is one of `keys`; returns how many
    /// rows changed. Rows of other tenants are not matched; `tenant_id` cannot be set.
    pub async fn update(
        &self,
        key: &str,
        keys: &[String],
        values: &Map<String, Value>,
    ) -> Result<u64, Error> {
        let key = identifier(key)?;
        if values.contains_key(TENANT_COLUMN) {
            return Err(Error::TenantColumnAssigned {
                table: self.table.clone(),
            });
        }
        let columns = identifiers(values)?;
        if columns.is_empty() {
            return Ok(0);
        }
        let json = Value::Object(values.clone()).to_string();
        let keys = serde_json::to_string(keys).expect("strings serialize");
        let table = self.quoted();
        let postgres = format!(
            "UPDATE {table} SET ({list}) = (SELECT {list} FROM json_populate_record(NULL::{table}, $1::json)) \
             WHERE {TENANT_COLUMN} = $2 AND CAST({key} AS TEXT) IN (SELECT json_array_elements_text($3::json))",
            list = columns.join(", ")
        );
        let sqlite = format!(
            "UPDATE {table} SET ({}) = ({}) \
             WHERE {TENANT_COLUMN} = $2 AND CAST({key} AS TEXT) IN (SELECT value FROM json_each($3))",
            columns.join(", "),
            row_paths(&columns)
        );
        let sql = self.pick(postgres, sqlite);
        let tenant = self.tenant;
        in_tenant_transaction!(tenant, |tx| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&json)
                .bind(tenant.id.0)
                .bind(&keys)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })
    }

    /// Deletes the tenant's rows whose `key` is one of `keys`; returns how many.
    pub async fn delete(&self, key: &str, keys: &[String]) -> Result<u64, Error> {
        let key = identifier(key)?;
        let keys = serde_json::to_string(keys).expect("strings serialize");
        let table = self.quoted();
        let postgres = format!(
            "DELETE FROM {table} WHERE {TENANT_COLUMN} = $1 AND CAST({key} AS TEXT) IN (SELECT json_array_elements_text($2::json))"
        );
        let sqlite = format!(
            "DELETE FROM {table} WHERE {TENANT_COLUMN} = $1 AND CAST({key} AS TEXT) IN (SELECT value FROM json_each($2))"
        );
        let sql = self.pick(postgres, sqlite);
        let tenant = self.tenant;
        in_tenant_transaction!(tenant, |tx| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(tenant.id.0)
                .bind(&keys)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })
    }

    fn quoted(&self) -> String {
        format!("\"{}\"", self.table)
    }

    /// The statement for the backend this tenant's database uses.
    fn pick(&self, postgres: String, sqlite: String) -> String {
        match self.tenant.db {
            Db::Postgres(_) => postgres,
            Db::Sqlite(_) => sqlite,
        }
    }
}

/// `json_extract($1, '$."c"')` for each column, for SQLite.
fn row_paths(columns: &[String]) -> String {
    columns
        .iter()
        .map(|column| format!("json_extract($1, '$.{column}')"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The row's column names, each checked and quoted as by [`identifier`].
fn identifiers(row: &Map<String, Value>) -> Result<Vec<String>, Error> {
    row.keys().map(|column| identifier(column)).collect()
}

/// A plain SQL identifier (letters, digits, underscores), quoted; anything else is refused.
fn identifier(name: &str) -> Result<String, Error> {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        Ok(format!("\"{name}\""))
    } else {
        Err(Error::InvalidIdentifier(name.to_string()))
    }
}
