//! Behavioural isolation cases, generated from the schema: for every tenant-owned table
//! and every tenant, what one tenant can read, insert, update and delete, run on a real,
//! migrated database the way the application runs.
//!
//! - PostgreSQL, raw SQL as the application role with the tenant setting: proves that
//!   row-level security and the keys isolate tenants even when a query forgets its filter.
//! - Both backends, through the app's tenant-scoped API (`app::ScopedTable`): proves the
//!   API's filters, and what the database enforces beneath it on SQLite (composite
//!   foreign keys, the tenant column's immutability).
//!
//! Before any case runs, a guard refuses a role that would bypass row-level security
//! (superuser, BYPASSRLS, owner of a tenant-owned table): cases run as such a role would
//! pass without proving anything.
//!
//! The database is populated first: the default tenant's rows are cloned into two more
//! tenants (ids shifted by a power of ten); a table the fixture left empty gets generated
//! rows. This changes the data, so it runs last, on a throwaway database.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use sqlx::{Connection, PgConnection};

use app::Backend;

use crate::checks::Failure;
use crate::config::Config;
use crate::db::{Conn, quote};
use crate::isolation::RoleFacts;
use crate::schema::{Schema, Table};

/// What the behavioural cases found.
#[derive(Debug, Default)]
pub struct BehaviourReport {
    pub tenants: Vec<i64>,
    pub tables: usize,
    /// How many assertions ran.
    pub cases: usize,
    pub failures: Vec<Failure>,
}

/// Runs every behavioural case on the database behind `conn` (an administrative
/// connection, used to populate and to know the truth) and `url` (for the app's pool,
/// which connects as `role`).
pub async fn run_behaviour(
    conn: &mut Conn,
    url: &str,
    config: &Config,
    schema: &Schema,
    role: &str,
) -> BehaviourReport {
    let mut report = BehaviourReport::default();
    let model = Model::new(config, schema);
    report.tables = model.tables.len();
    if let Conn::Postgres(c) = conn
        && let Err(failure) = guard(c, role, &model).await
    {
        report.failures.push(failure);
        return report;
    }
    let tenants = match populate(conn, &model).await {
        Ok(tenants) => tenants,
        Err(failure) => {
            report.failures.push(failure);
            return report;
        }
    };
    report.tenants = tenants.clone();
    let truth = match Truth::read(conn, &model, &tenants).await {
        Ok(truth) => truth,
        Err(failure) => {
            report.failures.push(failure);
            return report;
        }
    };
    let mut cases = Cases {
        model: &model,
        truth: &truth,
        tenants: &tenants,
        report: &mut report,
    };
    if let Conn::Postgres(c) = conn {
        cases.raw_postgres(c, role).await;
    }
    if let Conn::Sqlite(c) = conn {
        cases.raw_sqlite(c).await;
    }
    match app::Db::connect_as(url, role).await {
        Ok(db) => {
            cases.through_the_api(&db).await;
            db.close().await;
        }
        Err(error) => cases.report.failures.push(Failure::new(format!(
            "connect the app as `{role}`: {error}"
        ))),
    }
    report
}

/// The tenancy facts the cases need, derived from the configuration and the schema.
pub struct Model<'a> {
    pub column: &'a str,
    pub setting: &'a str,
    pub tenants_table: &'a str,
    pub default_tenant: i64,
    /// Tenant-owned tables with the tenant column, parents before children.
    pub tables: Vec<TableModel<'a>>,
    schema: &'a Schema,
    config: &'a Config,
}

pub struct TableModel<'a> {
    pub name: &'a str,
    pub table: &'a Table,
    /// The single-column primary key, when there is one (cases that aim at one row
    /// need it).
    pub key: Option<&'a str>,
}

impl<'a> Model<'a> {
    pub fn new(config: &'a Config, schema: &'a Schema) -> Model<'a> {
        let column = config.tenancy.column.as_str();
        let owned: BTreeMap<&str, &Table> = schema
            .tables
            .iter()
            .filter(|(name, table)| !config.is_global(name) && table.column(column).is_some())
            .map(|(name, table)| (name.as_str(), table))
            .collect();
        // Parents first (Kahn's algorithm over references between tenant-owned tables).
        let mut order: Vec<&str> = Vec::new();
        let mut placed: BTreeSet<&str> = BTreeSet::new();
        while placed.len() < owned.len() {
            let ready: Vec<&str> = owned
                .iter()
                .filter(|(name, _)| !placed.contains(*name))
                .filter(|(name, table)| {
                    table.foreign_keys.iter().all(|fk| {
                        fk.referenced_table == **name
                            || !owned.contains_key(fk.referenced_table.as_str())
                            || placed.contains(fk.referenced_table.as_str())
                    })
                })
                .map(|(name, _)| *name)
                .collect();
            // A cycle: place the rest as they come; populating will say what failed.
            let next = if ready.is_empty() {
                owned
                    .keys()
                    .filter(|name| !placed.contains(*name))
                    .copied()
                    .collect()
            } else {
                ready
            };
            for name in next {
                placed.insert(name);
                order.push(name);
            }
        }
        Model {
            column,
            setting: &config.tenancy.tenant_setting,
            tenants_table: &config.tenancy.tenants_table,
            default_tenant: config.tenancy.default_tenant_id,
            tables: order
                .into_iter()
                .map(|name| {
                    let table = owned[name];
                    TableModel {
                        name,
                        table,
                        key: match table.primary_key.as_slice() {
                            [key] => Some(key.as_str()),
                            _ => None,
                        },
                    }
                })
                .collect(),
            schema,
            config,
        }
    }

    fn is_tenant_owned(&self, table: &str) -> bool {
        self.tables.iter().any(|t| t.name == table)
    }

    fn table(&self, name: &str) -> Option<&TableModel<'a>> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// Fails when `role` would bypass row-level security, so the cases cannot pass vacuously.
async fn guard(conn: &mut PgConnection, role: &str, model: &Model<'_>) -> Result<(), Failure> {
    let facts = RoleFacts::read(conn, role).await.map_err(|error| {
        Failure::new(format!("read the attributes of role `{role}`: {error:#}"))
    })?;
    if !facts.exists {
        return Err(Failure::new(format!(
            "the isolation cases run as `{role}`, which does not exist\nfix: create the role in a migration or correct tenancy.app_role in {}",
            crate::display_path(&model.config.path)
        )));
    }
    let owned: BTreeSet<&str> = model.tables.iter().map(|t| t.name).collect();
    let reasons = facts.bypasses(&owned);
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Failure::new(format!(
        "refusing to run the isolation cases as `{role}`: it {}, so row-level security does not apply and every case would pass without proving anything\nfix: run them as the application role (tenancy.app_role), which must be NOSUPERUSER NOBYPASSRLS and own no tenant-owned table",
        reasons.join(", and ")
    )))
}

pub(crate) fn is_integer(data_type: &str) -> bool {
    data_type.to_ascii_lowercase().contains("int")
}

pub(crate) fn is_text(data_type: &str) -> bool {
    let lower = data_type.to_ascii_lowercase();
    lower.contains("text") || lower.contains("char") || lower.contains("clob")
}

/// Columns that appear in a unique key without the tenant column: copies must change them.
fn globally_unique_columns<'t>(table: &'t Table, column: &str) -> BTreeSet<&'t str> {
    let keys = table.uniques.iter().map(|k| &k.columns).chain(
        table
            .indexes
            .iter()
            .filter(|i| i.unique)
            .map(|i| &i.columns),
    );
    keys.filter(|columns| !columns.iter().any(|c| c == column))
        .flatten()
        .map(String::as_str)
        .collect()
}

/// Gives the database three tenants with rows in every tenant-owned table: the default
/// tenant (the fixture's) and two clones of it. Returns the tenant ids.
pub async fn populate(conn: &mut Conn, model: &Model<'_>) -> Result<Vec<i64>, Failure> {
    let backend = conn.backend();
    let tenants_table = model
        .schema
        .tables
        .get(model.tenants_table)
        .ok_or_else(|| Failure::new(format!("no tenants table `{}`", model.tenants_table)))?;
    let tenant_key = match tenants_table.primary_key.as_slice() {
        [key] => key.clone(),
        _ => {
            return Err(Failure::new(format!(
                "`{}` needs a single-column primary key for the isolation cases",
                model.tenants_table
            )));
        }
    };
    let newest = conn
        .count(&format!(
            "SELECT coalesce(max({key}), 0) FROM {table}",
            key = quote(&tenant_key),
            table = quote(model.tenants_table)
        ))
        .await
        .map_err(|error| Failure::new(format!("read the tenants: {error:#}")))?;
    let default = model.default_tenant;
    let clones = [newest + 1, newest + 2];

    // The shift for copied ids: a power of ten above every id in the tenant-owned tables.
    let mut largest = 0;
    for table in &model.tables {
        if let Some(key) = table.key
            && table
                .table
                .column(key)
                .is_some_and(|c| is_integer(&c.data_type))
        {
            let max = conn
                .count(&format!(
                    "SELECT coalesce(max({}), 0) FROM {}",
                    quote(key),
                    quote(table.name)
                ))
                .await
                .map_err(|error| {
                    Failure::new(format!("read the ids of `{}`: {error:#}", table.name))
                })?;
            largest = largest.max(max);
        }
    }
    let shift = 10_i64.pow(largest.max(1).ilog10() + 1);

    for (index, clone) in clones.iter().enumerate() {
        let unique = globally_unique_columns(tenants_table, "");
        let exprs: Vec<String> = tenants_table
            .columns
            .iter()
            .map(|c| {
                if c.name == tenant_key {
                    clone.to_string()
                } else if unique.contains(c.name.as_str()) && is_text(&c.data_type) {
                    format!("{} || '-{clone}'", quote(&c.name))
                } else {
                    quote(&c.name)
                }
            })
            .collect();
        let sql = insert_select(
            backend,
            model.tenants_table,
            tenants_table,
            &exprs,
            &format!("{} = {default}", quote(&tenant_key)),
        );
        conn.execute(&sql).await.map_err(|error| {
            Failure::new(format!(
                "create tenant {clone} as a copy of tenant {default} in `{}`: {error}",
                model.tenants_table
            ))
        })?;
        let offset = shift * (index as i64 + 1);
        for table in &model.tables {
            clone_rows(conn, model, table, default, *clone, offset).await?;
        }
    }
    let tenants = vec![default, clones[0], clones[1]];
    for table in &model.tables {
        for tenant in &tenants {
            let rows = conn
                .count(&format!(
                    "SELECT count(*) FROM {} WHERE {} = {tenant}",
                    quote(table.name),
                    quote(model.column)
                ))
                .await
                .map_err(|error| Failure::new(format!("count `{}`: {error:#}", table.name)))?;
            if rows == 0 {
                generate_rows(conn, model, table, *tenant).await?;
            }
        }
    }
    if backend == Backend::Postgres {
        conn.execute(crate::rehearsal::REALIGN_SEQUENCES)
            .await
            .map_err(|error| Failure::new(format!("realign identity sequences: {error}")))?;
    }
    Ok(tenants)
}

/// `INSERT INTO table (every column) SELECT exprs FROM table WHERE filter`.
fn insert_select(
    backend: Backend,
    name: &str,
    table: &Table,
    exprs: &[String],
    filter: &str,
) -> String {
    let columns: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    let overriding = if backend == Backend::Postgres
        && table
            .columns
            .iter()
            .any(|c| c.identity.as_deref() == Some("generated always as identity"))
    {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    format!(
        "INSERT INTO {table} ({columns}){overriding} SELECT {exprs} FROM {table} WHERE {filter}",
        table = quote(name),
        columns = columns.join(", "),
        exprs = exprs.join(", ")
    )
}

/// Copies the rows of tenant `from` to tenant `to`, shifting ids (and the references to
/// them) by `offset` and suffixing globally unique text.
async fn clone_rows(
    conn: &mut Conn,
    model: &Model<'_>,
    table: &TableModel<'_>,
    from: i64,
    to: i64,
    offset: i64,
) -> Result<(), Failure> {
    let shifted_references: BTreeSet<&str> = table
        .table
        .foreign_keys
        .iter()
        .filter_map(|fk| {
            let parent = model.table(&fk.referenced_table)?;
            let parent_key = parent.key?;
            fk.columns
                .iter()
                .zip(&fk.referenced_columns)
                .find(|(_, referenced)| referenced.as_str() == parent_key)
                .map(|(column, _)| column.as_str())
        })
        .collect();
    let unique = globally_unique_columns(table.table, model.column);
    let exprs: Vec<String> = table
        .table
        .columns
        .iter()
        .map(|c| {
            let name = c.name.as_str();
            let quoted = quote(name);
            if name == model.column {
                to.to_string()
            } else if (Some(name) == table.key
                || shifted_references.contains(name)
                || unique.contains(name))
                && is_integer(&c.data_type)
            {
                format!("{quoted} + {offset}")
            } else if unique.contains(name) && is_text(&c.data_type) {
                format!("{quoted} || '-{to}'")
            } else {
                quoted
            }
        })
        .collect();
    let sql = insert_select(
        conn.backend(),
        table.name,
        table.table,
        &exprs,
        &format!("{} = {from}", quote(model.column)),
    );
    conn.execute(&sql).await.map_err(|error| {
        Failure::new(format!(
            "copy tenant {from}'s rows of `{}` to tenant {to}: {error}",
            table.name
        ))
    })
}

/// Two generated rows for a table no fixture row reached (e.g. one created after the
/// fixture's version): every NOT NULL column without a default gets a value of its type,
/// and references point at the same tenant's rows.
async fn generate_rows(
    conn: &mut Conn,
    model: &Model<'_>,
    table: &TableModel<'_>,
    tenant: i64,
) -> Result<(), Failure> {
    let backend = conn.backend();
    for row in 0..2 {
        let mut columns = Vec::new();
        let mut values = Vec::new();
        for column in &table.table.columns {
            let name = column.name.as_str();
            let reference = table.table.foreign_keys.iter().find_map(|fk| {
                let position = fk.columns.iter().position(|c| c == name)?;
                Some((fk, &fk.referenced_columns[position]))
            });
            let value = if name == model.column {
                Some(tenant.to_string())
            } else if let Some((fk, referenced)) = reference {
                let filter = if model.is_tenant_owned(&fk.referenced_table) {
                    format!(" WHERE {} = {tenant}", quote(model.column))
                } else {
                    String::new()
                };
                // Each generated row takes the next parent, so keys that include the
                // reference stay unique; with fewer parents, the first one.
                Some(format!(
                    "coalesce((SELECT {r} FROM {p}{filter} ORDER BY {r} LIMIT 1 OFFSET {row}), \
                     (SELECT {r} FROM {p}{filter} ORDER BY {r} LIMIT 1))",
                    r = quote(referenced),
                    p = quote(&fk.referenced_table)
                ))
            } else if column.not_null
                && column.default.is_none()
                && column.identity.is_none()
                && !(Some(name) == table.key && is_integer(&column.data_type))
            {
                Some(allowed_value(table.table, name).unwrap_or_else(|| {
                    generated_value(backend, &column.data_type, table.name, tenant, row)
                }))
            } else {
                None
            };
            if let Some(value) = value {
                columns.push(quote(name));
                values.push(value);
            }
        }
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(table.name),
            columns.join(", "),
            values.join(", ")
        );
        conn.execute(&sql).await.map_err(|error| {
            Failure::new(format!(
                "`{}` has no fixture rows, and a generated row for tenant {tenant} was refused: {error}\nfix: add rows for `{}` to the fixture {}",
                table.name,
                table.name,
                crate::display_path(&model.config.seed_file)
            ))
        })?;
    }
    Ok(())
}

fn generated_value(
    backend: Backend,
    data_type: &str,
    table: &str,
    tenant: i64,
    row: usize,
) -> String {
    let lower = data_type.to_ascii_lowercase();
    let day = row + 1;
    if lower.contains("int")
        || lower.contains("numeric")
        || lower.contains("decimal")
        || lower.contains("real")
        || lower.contains("double")
        || lower.contains("float")
    {
        (row + 1).to_string()
    } else if lower.contains("bool") {
        if backend == Backend::Postgres {
            "true"
        } else {
            "1"
        }
        .to_string()
    } else if lower.contains("timestamp") {
        format!("'2024-01-0{day} 00:00:00'")
    } else if lower.contains("date") {
        format!("'2024-01-0{day}'")
    } else if lower.contains("json") {
        "'{}'".to_string()
    } else if lower.contains("uuid") {
        format!("md5('{table}-{tenant}-{row}')::uuid")
    } else {
        format!("'{table} {tenant}-{row}'")
    }
}

/// What the administrative connection sees: each table's keys per tenant, and one row of
/// each tenant as JSON.
struct Truth {
    /// table → tenant → keys (text, sorted).
    keys: BTreeMap<String, BTreeMap<i64, Vec<String>>>,
    /// table → tenant → one row as a JSON object.
    rows: BTreeMap<String, BTreeMap<i64, Map<String, Value>>>,
}

impl Truth {
    async fn read(conn: &mut Conn, model: &Model<'_>, tenants: &[i64]) -> Result<Truth, Failure> {
        let mut truth = Truth {
            keys: BTreeMap::new(),
            rows: BTreeMap::new(),
        };
        for table in &model.tables {
            for tenant in tenants {
                let filter = format!("{} = {tenant}", quote(model.column));
                if let Some(key) = table.key {
                    let mut keys = conn
                        .texts(&format!(
                            "SELECT CAST({k} AS TEXT) FROM {t} WHERE {filter}",
                            k = quote(key),
                            t = quote(table.name)
                        ))
                        .await
                        .map_err(|error| {
                            Failure::new(format!("read the keys of `{}`: {error:#}", table.name))
                        })?;
                    keys.sort();
                    truth
                        .keys
                        .entry(table.name.to_string())
                        .or_default()
                        .insert(*tenant, keys);
                }
                let row_sql = rows_as_json(conn.backend(), table, &filter);
                let text = conn.texts(&row_sql).await.map_err(|error| {
                    Failure::new(format!("read a row of `{}`: {error:#}", table.name))
                })?;
                let Some(text) = text.first() else {
                    return Err(Failure::new(format!(
                        "`{}` has no rows for tenant {tenant} after populating",
                        table.name
                    )));
                };
                let Ok(Value::Object(row)) = serde_json::from_str(text) else {
                    return Err(Failure::new(format!(
                        "a row of `{}` is not a JSON object: {text}",
                        table.name
                    )));
                };
                truth
                    .rows
                    .entry(table.name.to_string())
                    .or_default()
                    .insert(*tenant, row);
            }
        }
        Ok(truth)
    }

    fn keys(&self, table: &str, tenant: i64) -> &[String] {
        self.keys
            .get(table)
            .and_then(|by_tenant| by_tenant.get(&tenant))
            .map_or(&[], Vec::as_slice)
    }

    fn row(&self, table: &str, tenant: i64) -> &Map<String, Value> {
        &self.rows[table][&tenant]
    }
}

/// `SELECT` each row of `table` matching `filter` as a JSON object (text), in key order.
pub fn rows_as_json(backend: Backend, table: &TableModel<'_>, filter: &str) -> String {
    let order = table
        .key
        .map(|key| format!(" ORDER BY {}", quote(key)))
        .unwrap_or_default();
    match backend {
        Backend::Postgres => format!(
            "SELECT row_to_json(t)::text FROM {} t WHERE {filter}{order}",
            quote(table.name)
        ),
        Backend::Sqlite => format!(
            "SELECT json_object({}) FROM {} WHERE {filter}{order}",
            table
                .table
                .columns
                .iter()
                .map(|c| format!("'{}', {}", c.name, quote(&c.name)))
                .collect::<Vec<_>>()
                .join(", "),
            quote(table.name)
        ),
    }
}

/// A database error's SQLSTATE (PostgreSQL) or extended code (SQLite), and its message.
fn error_code(error: &sqlx::Error) -> (String, String) {
    match error {
        sqlx::Error::Database(db) => (
            db.code().map(|c| c.to_string()).unwrap_or_default(),
            db.message().to_string(),
        ),
        other => (String::new(), other.to_string()),
    }
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn json_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

struct Cases<'r, 'm> {
    model: &'r Model<'m>,
    truth: &'r Truth,
    tenants: &'r [i64],
    report: &'r mut BehaviourReport,
}

/// The outcome of one statement run as a tenant.
enum Outcome {
    Rows(u64),
    Refused(String, String),
}

impl Cases<'_, '_> {
    fn case(&mut self, passed: bool, message: impl FnOnce() -> String) {
        self.report.cases += 1;
        if !passed {
            self.report.failures.push(Failure::new(message()));
        }
    }

    /// The tenant each tenant attacks: the next one.
    fn other(&self, tenant: i64) -> i64 {
        let index = self.tenants.iter().position(|t| *t == tenant).unwrap_or(0);
        self.tenants[(index + 1) % self.tenants.len()]
    }

    /// For each composite reference to a tenant-owned parent: (the parent, the child's
    /// non-tenant columns, the parent's matching columns).
    fn references<'t>(&self, table: &'t Table) -> Vec<(&'t str, Vec<&'t str>, Vec<&'t str>)> {
        table
            .foreign_keys
            .iter()
            .filter(|fk| self.model.is_tenant_owned(&fk.referenced_table))
            .map(|fk| {
                let (children, parents): (Vec<&str>, Vec<&str>) = fk
                    .columns
                    .iter()
                    .zip(&fk.referenced_columns)
                    .filter(|(c, _)| c.as_str() != self.model.column)
                    .map(|(c, p)| (c.as_str(), p.as_str()))
                    .unzip();
                (fk.referenced_table.as_str(), children, parents)
            })
            .collect()
    }

    /// PostgreSQL, raw SQL as `role` with the tenant setting: row-level security must
    /// isolate tenants without any filter in the query.
    async fn raw_postgres(&mut self, conn: &mut PgConnection, role: &str) {
        let model = self.model;
        let mut app = AppRole {
            conn,
            role,
            setting: model.setting,
        };
        let column = quote(model.column);
        for table in &model.tables {
            let name = quote(table.name);
            for &tenant in self.tenants {
                let tenant_text = tenant.to_string();
                let other = self.other(tenant);
                let expected = self.truth.keys(table.name, tenant).len() as i64;
                // Reads see exactly the tenant's rows.
                let read = format!(
                    "SELECT count(*)::bigint, count(*) FILTER (WHERE {column} <> {tenant})::bigint FROM {name}"
                );
                match app.counts(Some(&tenant_text), &read).await {
                    Ok((seen, foreign)) => self.case(seen == expected && foreign == 0, || format!(
                        "postgres, as `{role}` for tenant {tenant}: SELECT from `{}` saw {seen} rows ({foreign} of other tenants); tenant {tenant} owns {expected}\nfix: the `{}` policy must filter USING ({} = current_setting('{}'))",
                        table.name, table.name, model.column, model.setting
                    )),
                    Err(error) => self.case(false, || format!("postgres: read `{}` as tenant {tenant}: {error}", table.name)),
                }
                // Inserting another tenant's row is refused by the policy's WITH CHECK.
                let insert =
                    fresh_copy_insert(table, model.column, self.truth.row(table.name, other));
                let outcome = app.execute(Some(&tenant_text), &insert).await;
                self.case(matches!(&outcome, Outcome::Refused(code, _) if code == "42501"), || format!(
                    "postgres, as `{role}` for tenant {tenant}: inserting a row of tenant {other} into `{}` {}\nfix: the `{}` policy needs WITH CHECK ({} = current_setting('{}'))",
                    table.name, describe(&outcome, "was not refused by row-level security"), table.name, model.column, model.setting
                ));
                // UPDATE and DELETE aimed at another tenant's rows change nothing.
                for (verb, sql) in [
                    (
                        "UPDATE",
                        format!("UPDATE {name} SET {column} = {column} WHERE {column} = {other}"),
                    ),
                    (
                        "DELETE",
                        format!("DELETE FROM {name} WHERE {column} = {other}"),
                    ),
                ] {
                    let outcome = app.execute(Some(&tenant_text), &sql).await;
                    self.case(!matches!(outcome, Outcome::Rows(n) if n > 0), || format!(
                        "postgres, as `{role}` for tenant {tenant}: {verb} of tenant {other}'s rows in `{}` {}\nfix: the `{}` policy must cover {verb} with USING ({} = current_setting('{}'))",
                        table.name, describe(&outcome, "changed them"), table.name, model.column, model.setting
                    ));
                }
                let Some(key) = table.key else { continue };
                let Some(own) = self.truth.keys(table.name, tenant).first().cloned() else {
                    continue;
                };
                // A row cannot be moved to another tenant.
                let moved = format!(
                    "UPDATE {name} SET {column} = {other} WHERE {} = {}",
                    quote(key),
                    literal(&own)
                );
                let outcome = app.execute(Some(&tenant_text), &moved).await;
                self.case(matches!(outcome, Outcome::Refused(..)), || format!(
                    "postgres, as `{role}` for tenant {tenant}: moving row {own} of `{}` to tenant {other} {}\nfix: the `{}` policy needs WITH CHECK ({} = current_setting('{}'))",
                    table.name, describe(&outcome, "was not refused"), table.name, model.column, model.setting
                ));
                // A child cannot reference another tenant's parent.
                for (parent, children, parents) in self.references(table.table) {
                    let Some(parent_row) = self.truth.rows.get(parent).and_then(|r| r.get(&other))
                    else {
                        continue;
                    };
                    let assignments: Vec<String> = children
                        .iter()
                        .zip(&parents)
                        .map(|(c, p)| {
                            format!("{} = {}", quote(c), literal(&json_text(&parent_row[*p])))
                        })
                        .collect();
                    let sql = format!(
                        "UPDATE {name} SET {} WHERE {} = {}",
                        assignments.join(", "),
                        quote(key),
                        literal(&own)
                    );
                    let outcome = app.execute(Some(&tenant_text), &sql).await;
                    self.case(matches!(outcome, Outcome::Refused(..)), || format!(
                        "postgres, as `{role}` for tenant {tenant}: row {own} of `{}` was made to reference tenant {other}'s `{parent}` ({}) {}\nfix: make the foreign key composite: FOREIGN KEY ({}, {}) REFERENCES {parent} ({}, {})",
                        table.name, children.join(", "), describe(&outcome, "and it was not refused"),
                        model.column, children.join(", "), model.column, parents.join(", ")
                    ));
                }
            }
            // With no tenant set (or an empty one), the database fails closed.
            for (label, tenant) in [("no tenant set", None), ("an empty tenant", Some(""))] {
                let read = format!("SELECT count(*)::bigint, 0::bigint FROM {name}");
                let seen = app.counts(tenant, &read).await;
                self.case(!matches!(seen, Ok((n, _)) if n > 0), || format!(
                    "postgres, as `{role}` with {label}: SELECT from `{}` returned {} rows; it must fail closed (an error or no rows)\nfix: compare with NULLIF(current_setting('{}', true), '')::bigint in the policy",
                    table.name, seen.map(|(n, _)| n).unwrap_or_default(), model.setting
                ));
                let insert = fresh_copy_insert(
                    table,
                    model.column,
                    self.truth.row(table.name, self.tenants[0]),
                );
                let outcome = app.execute(tenant, &insert).await;
                self.case(matches!(outcome, Outcome::Refused(..)), || format!(
                    "postgres, as `{role}` with {label}: an insert into `{}` {}; it must fail closed",
                    table.name, describe(&outcome, "was accepted")
                ));
            }
        }
    }

    /// SQLite has no row-level security; what its schema enforces directly is that a
    /// row never changes tenant.
    async fn raw_sqlite(&mut self, conn: &mut sqlx::SqliteConnection) {
        let model = self.model;
        for table in &model.tables {
            let Some(key) = table.key else { continue };
            for &tenant in self.tenants {
                let other = self.other(tenant);
                let Some(own) = self.truth.keys(table.name, tenant).first().cloned() else {
                    continue;
                };
                let sql = format!(
                    "UPDATE {} SET {} = {other} WHERE {} = {}",
                    quote(table.name),
                    quote(model.column),
                    quote(key),
                    literal(&own)
                );
                let outcome = in_rolled_back_sqlite(conn, &sql).await;
                self.case(matches!(outcome, Outcome::Refused(..)), || format!(
                    "sqlite: moving row {own} of `{}` from tenant {tenant} to tenant {other} {}\nfix: add a BEFORE UPDATE OF {} trigger on `{}` that raises when the tenant changes",
                    table.name, describe(&outcome, "was not refused"), model.column, table.name
                ));
            }
        }
    }

    /// Both backends, through the app's tenant-scoped API.
    async fn through_the_api(&mut self, db: &app::Db) {
        let model = self.model;
        let backend = db.backend();
        for table in &model.tables {
            let Some(key) = table.key else { continue };
            for &tenant in self.tenants {
                let other = self.other(tenant);
                let scoped_tenant = db.tenant(app::TenantId(tenant));
                let scoped = match scoped_tenant.table(table.name) {
                    Ok(scoped) => scoped,
                    Err(error) => {
                        self.case(false, || {
                            format!("{backend}: the API refused table `{}`: {error}", table.name)
                        });
                        continue;
                    }
                };
                let expected = self.truth.keys(table.name, tenant);
                match scoped.keys(key).await {
                    Ok(mut seen) => {
                        seen.sort();
                        self.case(seen == expected, || format!(
                            "{backend}, through the API as tenant {tenant}: `{}` returned {} rows, {} of them not tenant {tenant}'s; it owns {}",
                            table.name, seen.len(), seen.iter().filter(|k| !expected.contains(k)).count(), expected.len()
                        ));
                    }
                    Err(error) => self.case(false, || {
                        format!(
                            "{backend}, through the API as tenant {tenant}: read `{}`: {error}",
                            table.name
                        )
                    }),
                }
                let foreign_row = self.truth.row(table.name, other).clone();
                let inserted = scoped.insert(&foreign_row).await;
                self.case(matches!(inserted, Err(app::Error::WrongTenant { .. })), || format!(
                    "{backend}, through the API as tenant {tenant}: inserting a row of tenant {other} into `{}` was not refused as another tenant's ({inserted:?})",
                    table.name
                ));
                let foreign_keys = self.truth.keys(table.name, other).to_vec();
                let touch = touch_values(table.table, key, model.column, &foreign_row);
                for (verb, outcome) in [
                    ("UPDATE", scoped.update(key, &foreign_keys, &touch).await),
                    ("DELETE", scoped.delete(key, &foreign_keys).await),
                ] {
                    self.case(!matches!(outcome, Ok(n) if n > 0), || format!(
                        "{backend}, through the API as tenant {tenant}: {verb} of tenant {other}'s rows in `{}` changed {} rows",
                        table.name, outcome.as_ref().copied().unwrap_or_default()
                    ));
                }
                let Some(own) = expected.first().cloned() else {
                    continue;
                };
                let mut moved = Map::new();
                moved.insert(model.column.to_string(), Value::from(other));
                let outcome = scoped.update(key, std::slice::from_ref(&own), &moved).await;
                self.case(outcome.is_err(), || format!(
                    "{backend}, through the API as tenant {tenant}: moving row {own} of `{}` to tenant {other} was not refused",
                    table.name
                ));
                for (parent, children, parents) in self.references(table.table) {
                    let Some(parent_row) = self.truth.rows.get(parent).and_then(|r| r.get(&other))
                    else {
                        continue;
                    };
                    let values: Map<String, Value> = children
                        .iter()
                        .zip(&parents)
                        .map(|(c, p)| (c.to_string(), parent_row[*p].clone()))
                        .collect();
                    let outcome = scoped
                        .update(key, std::slice::from_ref(&own), &values)
                        .await;
                    let changed = matches!(outcome, Ok(n) if n > 0);
                    if changed {
                        // Put it back, so later cases see the fixture's data.
                        let original = self.truth.rows[table.name]
                            .get(&tenant)
                            .filter(|r| r.get(key).map(json_text).as_deref() == Some(own.as_str()));
                        if let Some(original) = original {
                            let restore: Map<String, Value> = children
                                .iter()
                                .map(|c| (c.to_string(), original[*c].clone()))
                                .collect();
                            let _ = scoped
                                .update(key, std::slice::from_ref(&own), &restore)
                                .await;
                        }
                    }
                    self.case(!changed, || format!(
                        "{backend}, through the API as tenant {tenant}: row {own} of `{}` now references tenant {other}'s `{parent}` ({})\nfix: make the foreign key composite: FOREIGN KEY ({}, {}) REFERENCES {parent} ({}, {})",
                        table.name, children.join(", "), model.column, children.join(", "), model.column, parents.join(", ")
                    ));
                }
            }
        }
    }
}

/// Values that rewrite a row with what it already holds (the first column that is
/// neither the key nor the tenant column): an UPDATE that would change nothing visible
/// but still counts the rows it matched.
fn touch_values(
    table: &Table,
    key: &str,
    column: &str,
    row: &Map<String, Value>,
) -> Map<String, Value> {
    table
        .columns
        .iter()
        .find(|c| c.name != key && c.name != column)
        .and_then(|c| row.get(&c.name).map(|v| (c.name.clone(), v.clone())))
        .into_iter()
        .collect()
}

fn overriding(table: &Table) -> &'static str {
    if table
        .columns
        .iter()
        .any(|c| c.identity.as_deref() == Some("generated always as identity"))
    {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    }
}

fn describe(outcome: &Outcome, accepted: &str) -> String {
    match outcome {
        Outcome::Rows(rows) => format!("{accepted} ({rows} rows)"),
        Outcome::Refused(code, message) => format!("failed for another reason: {message} ({code})"),
    }
}

/// Rows changed, or the refusal with its code.
fn outcome(result: Result<u64, sqlx::Error>) -> Outcome {
    match result {
        Ok(rows) => Outcome::Rows(rows),
        Err(error) => {
            let (code, message) = error_code(&error);
            Outcome::Refused(code, message)
        }
    }
}

/// A PostgreSQL connection that runs each statement as the application role, with the
/// tenant setting given (`None`: not set at all), in a transaction that is rolled back.
struct AppRole<'a> {
    conn: &'a mut PgConnection,
    role: &'a str,
    setting: &'a str,
}

impl AppRole<'_> {
    /// `BEGIN`, the role and the tenant setting, `sql`, `ROLLBACK`: one round trip per
    /// case (two when `sql` fails), where one statement at a time took five. Returns each
    /// statement's result and every row, or the error that stopped the batch.
    async fn in_rolled_back_batch(
        &mut self,
        tenant: Option<&str>,
        sql: &str,
    ) -> Result<(Vec<u64>, Vec<sqlx::postgres::PgRow>), sqlx::Error> {
        use futures_util::TryStreamExt;
        use sqlx::Either;
        let setting = tenant
            .map(|tenant| {
                format!(
                    "SELECT set_config({}, {}, true);\n",
                    literal(self.setting),
                    literal(tenant)
                )
            })
            .unwrap_or_default();
        let batch = format!(
            "BEGIN;\nSET LOCAL ROLE {};\n{setting}{sql};\nROLLBACK",
            quote(self.role)
        );
        let mut results = Vec::new();
        let mut rows = Vec::new();
        let outcome: Result<(), sqlx::Error> = async {
            let mut stream = sqlx::raw_sql(sqlx::AssertSqlSafe(batch)).fetch_many(&mut *self.conn);
            while let Some(item) = stream.try_next().await? {
                match item {
                    Either::Left(done) => results.push(done.rows_affected()),
                    Either::Right(row) => rows.push(row),
                }
            }
            Ok(())
        }
        .await;
        if let Err(error) = outcome {
            // The batch stopped at the error, inside the transaction.
            sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await?;
            return Err(error);
        }
        Ok((results, rows))
    }

    /// Runs a two-count query.
    async fn counts(&mut self, tenant: Option<&str>, sql: &str) -> Result<(i64, i64), sqlx::Error> {
        use sqlx::Row;
        let (_, rows) = self.in_rolled_back_batch(tenant, sql).await?;
        let row = rows.last().ok_or(sqlx::Error::RowNotFound)?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Runs a statement.
    async fn execute(&mut self, tenant: Option<&str>, sql: &str) -> Outcome {
        let result = self
            .in_rolled_back_batch(tenant, sql)
            .await
            .map(|(results, _)| {
                // BEGIN, SET, [set_config], the statement, ROLLBACK.
                results
                    .len()
                    .checked_sub(2)
                    .map_or(0, |statement| results[statement])
            });
        outcome(result)
    }
}

async fn in_rolled_back_sqlite(conn: &mut sqlx::SqliteConnection, sql: &str) -> Outcome {
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(error) => return outcome(Err(error)),
    };
    let result = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *tx)
        .await
        .map(|done| done.rows_affected());
    let _ = tx.rollback().await;
    outcome(result)
}

/// The first value a CHECK constraint lists for `column` (`column IN (…)`, which
/// PostgreSQL shows as `column = ANY (ARRAY[…])`), as SQL.
pub(crate) fn allowed_value(table: &Table, column: &str) -> Option<String> {
    use sqlparser::ast::{BinaryOperator, Expr, Visit, Visitor};
    use std::ops::ControlFlow;

    struct Finder<'a> {
        column: &'a str,
        value: Option<String>,
    }
    impl Visitor for Finder<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            let first = match expr {
                Expr::InList {
                    expr,
                    list,
                    negated: false,
                } if super::rules::is_column(expr, self.column) => list.first(),
                Expr::AnyOp {
                    left,
                    compare_op: BinaryOperator::Eq,
                    right,
                    ..
                } if super::rules::is_column(left, self.column) => match right.as_ref() {
                    Expr::Array(array) => array.elem.first(),
                    Expr::Nested(inner) => match inner.as_ref() {
                        Expr::Array(array) => array.elem.first(),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            };
            if let Some(first) = first {
                self.value = Some(first.to_string());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    table.checks.iter().find_map(|check| {
        let text = check.expression.trim();
        let text = text.strip_prefix("CHECK").unwrap_or(text);
        let expr = super::rules::parse_expression(text)?;
        let mut finder = Finder {
            column,
            value: None,
        };
        let _ = expr.visit(&mut finder);
        finder.value
    })
}

/// PostgreSQL: an INSERT of a copy of `row` that nothing but isolation would refuse: the
/// key is left to its default, and text in unique keys gets a suffix.
fn fresh_copy_insert(table: &TableModel<'_>, column: &str, row: &Map<String, Value>) -> String {
    let unique = globally_unique_columns(table.table, "");
    let mut copy = row.clone();
    let key_has_default = table.key.is_some_and(|key| {
        table
            .table
            .column(key)
            .is_some_and(|c| c.default.is_some() || c.identity.is_some())
    });
    if let Some(key) = table.key
        && key_has_default
    {
        copy.remove(key);
    }
    for definition in &table.table.columns {
        if definition.name != column
            && unique.contains(definition.name.as_str())
            && is_text(&definition.data_type)
            && let Some(Value::String(text)) = copy.get_mut(&definition.name)
        {
            text.push_str(" (copy)");
        }
    }
    let columns: Vec<String> = copy.keys().map(|c| quote(c)).collect();
    let name = quote(table.name);
    format!(
        "INSERT INTO {name} ({list}){} SELECT {list} FROM json_populate_record(NULL::{name}, {}::json)",
        overriding(table.table),
        literal(&Value::Object(copy).to_string()),
        list = columns.join(", ")
    )
}
