//! Values for generated rows, from a column's declared type and its CHECK constraints:
//! what the row generators (the isolation cases' and `--rows`') write where no fixture
//! row says otherwise.

use tenantgate::Backend;
use tenantgate::schema::Table;

pub fn is_integer(data_type: &str) -> bool {
    let lower = data_type.to_ascii_lowercase();
    lower.contains("int") || lower.contains("serial")
}

pub fn is_text(data_type: &str) -> bool {
    let lower = data_type.to_ascii_lowercase();
    lower.contains("text") || lower.contains("char") || lower.contains("clob")
}

pub fn is_uuid(data_type: &str) -> bool {
    data_type.to_ascii_lowercase().contains("uuid")
}

/// The first value a CHECK constraint lists for `column` (`column IN (…)`, which
/// PostgreSQL shows as `column = ANY (ARRAY[…])`), as SQL.
pub fn allowed_value(table: &Table, column: &str) -> Option<String> {
    use sqlparser::ast::{BinaryOperator, Expr, Visit, Visitor};
    use std::ops::ControlFlow;
    use tenantgate::rules::{is_column, parse_expression};

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
                } if is_column(expr, self.column) => list.first(),
                Expr::AnyOp {
                    left,
                    compare_op: BinaryOperator::Eq,
                    right,
                    ..
                } if is_column(left, self.column) => match right.as_ref() {
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
        let expr = parse_expression(text)?;
        let mut finder = Finder {
            column,
            value: None,
        };
        let _ = expr.visit(&mut finder);
        finder.value
    })
}

/// The app's own types, as the catalogs describe them: enum labels and domains' base types.
#[derive(Debug, Default)]
pub struct Types {
    /// Enum type → its first label.
    pub enums: std::collections::BTreeMap<String, String>,
    /// Domain → the type it is based on.
    pub domains: std::collections::BTreeMap<String, String>,
}

impl Types {
    /// Reads the enums and domains of a PostgreSQL database; SQLite has none.
    pub async fn read(conn: &mut tenantgate::db::Conn) -> anyhow::Result<Types> {
        let mut types = Types::default();
        if let tenantgate::db::Conn::Postgres(pg) = conn {
            let enums: Vec<(String, String)> = sqlx::query_as(
                "SELECT format_type(t.oid, NULL), e.enumlabel::text FROM pg_type t                  JOIN LATERAL (SELECT enumlabel FROM pg_enum WHERE enumtypid = t.oid ORDER BY enumsortorder LIMIT 1) e ON true                  WHERE t.typtype = 'e'",
            )
            .fetch_all(&mut *pg)
            .await?;
            types.enums.extend(enums);
            let domains: Vec<(String, String)> = sqlx::query_as(
                "SELECT format_type(t.oid, NULL), format_type(t.typbasetype, t.typtypmod) FROM pg_type t WHERE t.typtype = 'd'",
            )
            .fetch_all(&mut *pg)
            .await?;
            types.domains.extend(domains);
        }
        Ok(types)
    }
}

/// One value of `data_type` for row `row` of `label` (a table and a tenant), different
/// for each `(label, row)` where the type allows: what a NOT NULL column without a
/// default or a CHECK list gets in a generated row.
pub fn value_of_type(
    backend: Backend,
    types: &Types,
    data_type: &str,
    label: &str,
    row: usize,
) -> String {
    if let Some(first) = types.enums.get(data_type) {
        return format!("'{}'", first.replace('\'', "''"));
    }
    if let Some(base) = types.domains.get(data_type) {
        return format!(
            "CAST({} AS {data_type})",
            value_of_type(backend, types, base, label, row)
        );
    }
    let lower = data_type.to_ascii_lowercase();
    let n = row + 1;
    let text = format!("'{} {n}'", label.replace('\'', "''"));
    let postgres = backend == Backend::Postgres;
    if lower.ends_with("[]") {
        return if postgres {
            "'{}'".to_string()
        } else {
            "'[]'".to_string()
        };
    }
    if lower.contains("bool") {
        return if postgres { "true" } else { "1" }.to_string();
    }
    if is_integer(&lower)
        || lower.contains("numeric")
        || lower.contains("decimal")
        || lower.contains("real")
        || lower.contains("double")
        || lower.contains("float")
        || lower.contains("money")
    {
        return n.to_string();
    }
    if is_uuid(&lower) {
        return if postgres {
            format!("md5({text})::uuid")
        } else {
            "lower(hex(randomblob(16)))".to_string()
        };
    }
    if lower.contains("timestamp") || lower == "datetime" {
        return format!("'2024-01-{n:02} 00:00:00'");
    }
    if lower == "date" {
        return format!("'2024-01-{n:02}'");
    }
    if lower.starts_with("time") {
        return "'12:00:00'".to_string();
    }
    if lower.contains("interval") {
        return "'1 day'".to_string();
    }
    if lower.contains("json") {
        return "'{}'".to_string();
    }
    if lower.contains("bytea") || lower.contains("blob") {
        return if postgres { "'\\x00'::bytea" } else { "x'00'" }.to_string();
    }
    if lower.contains("inet") || lower.contains("cidr") {
        return format!("'10.0.0.{n}'");
    }
    if is_text(&lower) || lower.is_empty() || !postgres {
        return text;
    }
    // Another type (citext, ltree, …): text cast to it.
    format!("CAST({text} AS {data_type})")
}
