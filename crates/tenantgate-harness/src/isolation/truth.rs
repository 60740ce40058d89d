//! What the administrative connection sees, which no policy filters: each tenant's rows of
//! every tenant-owned table (their count, their keys, one row), against which the cases
//! compare what a tenant is shown.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tenantgate::checks::Failure;
use tenantgate::db::{Conn, literal, quote, quote_table};
use tenantgate::{Backend, TenantValue};

use super::model::{Model, TableModel, key_text};
use super::values::is_integer;

/// One tenant's rows of one table.
#[derive(Debug, Default)]
pub struct TenantRows {
    pub count: i64,
    /// The rows' keys as text, sorted (empty when the table has no key).
    pub keys: Vec<String>,
    /// The first row, as a JSON object.
    pub sample: Option<Map<String, Value>>,
}

#[derive(Debug, Default)]
pub struct Truth {
    /// table → tenant → rows.
    pub tables: BTreeMap<String, BTreeMap<TenantValue, TenantRows>>,
    /// (table, integer column) → its largest value: fresh keys are built above it.
    pub maxima: BTreeMap<(String, String), i64>,
}

impl Truth {
    pub async fn read(
        conn: &mut Conn,
        model: &Model<'_>,
        tenants: &[TenantValue],
    ) -> Result<Truth, Failure> {
        let mut truth = Truth::default();
        for table in &model.tables {
            for tenant in tenants {
                let filter = model.belongs(table, "t", tenant);
                let read = |what: &str, error: anyhow::Error| {
                    Failure::new(format!("read {what} of `{}`: {error:#}", table.name))
                };
                // One query a tenant: its rows' keys and, in key order, each row as JSON
                // (the first is the sample).
                let key = if table.key.is_empty() {
                    "''".to_string()
                } else {
                    key_text("t", &table.key)
                };
                let rows = conn
                    .text_pairs(&rows_as_json_with(
                        model.backend,
                        table,
                        &filter,
                        Some(&key),
                    ))
                    .await
                    .map_err(|e| read("the rows", e))?;
                let count = rows.len() as i64;
                let sample = rows
                    .first()
                    .map(|(_, text)| match serde_json::from_str(text) {
                        Ok(Value::Object(row)) => Ok(row),
                        _ => Err(Failure::new(format!(
                            "a row of `{}` is not a JSON object: {text}",
                            table.name
                        ))),
                    })
                    .transpose()?;
                let mut keys = Vec::new();
                if !table.key.is_empty() {
                    keys = rows.into_iter().map(|(key, _)| key).collect();
                    keys.sort();
                }
                truth
                    .tables
                    .entry(table.name.to_string())
                    .or_default()
                    .insert(
                        tenant.clone(),
                        TenantRows {
                            count,
                            keys,
                            sample,
                        },
                    );
            }
            for column in table
                .table
                .columns
                .iter()
                .filter(|c| is_integer(&c.data_type))
            {
                let max = conn
                    .count(&format!(
                        "SELECT CAST(coalesce(max({}), 0) AS BIGINT) FROM {}",
                        quote(&column.name),
                        quote_table(table.name)
                    ))
                    .await
                    .map_err(|error| {
                        Failure::new(format!("read the keys of `{}`: {error:#}", table.name))
                    })?;
                truth
                    .maxima
                    .insert((table.name.to_string(), column.name.clone()), max);
            }
        }
        Ok(truth)
    }

    pub fn rows(&self, table: &str, tenant: &TenantValue) -> &TenantRows {
        static EMPTY: TenantRows = TenantRows {
            count: 0,
            keys: Vec::new(),
            sample: None,
        };
        self.tables
            .get(table)
            .and_then(|by_tenant| by_tenant.get(tenant))
            .unwrap_or(&EMPTY)
    }

    /// Every row the administrative connection sees, over every table and tenant.
    pub fn total(&self) -> i64 {
        self.tables
            .values()
            .flat_map(|by_tenant| by_tenant.values())
            .map(|rows| rows.count)
            .sum()
    }
}

/// `SELECT` each row of `table` (aliased `t`) matching `filter` as a JSON object (text),
/// in key order.
pub fn rows_as_json(backend: Backend, table: &TableModel<'_>, filter: &str) -> String {
    rows_as_json_with(backend, table, filter, None)
}

/// [`rows_as_json`], each row after `first`, an expression of `t`, when given.
fn rows_as_json_with(
    backend: Backend,
    table: &TableModel<'_>,
    filter: &str,
    first: Option<&str>,
) -> String {
    let order = if table.key.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", key_text("t", &table.key))
    };
    let first = first.map(|first| format!("{first}, ")).unwrap_or_default();
    match backend {
        Backend::Postgres => format!(
            "SELECT {first}row_to_json(t)::text FROM {} t WHERE {filter}{order}",
            quote_table(table.name)
        ),
        Backend::Sqlite => format!(
            "SELECT {first}json_object({}) FROM {} t WHERE {filter}{order}",
            table
                .table
                .columns
                .iter()
                .map(|c| format!("{}, t.{}", literal(&c.name), quote(&c.name)))
                .collect::<Vec<_>>()
                .join(", "),
            quote_table(table.name)
        ),
    }
}

/// A JSON value as the text `CAST(… AS TEXT)` gives for it.
pub fn json_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
