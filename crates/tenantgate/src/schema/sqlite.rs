//! Reads a SQLite schema through its pragmas. SQLite keeps CHECK constraints only in the
//! table's SQL, so those are read by parsing it (sqlparser), never by pattern matching.

use sqlparser::ast::{ColumnOption, CreateTable, Statement, TableConstraint};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;
use sqlx::SqliteConnection;

use super::{Check, Column, ForeignKey, Index, Key, Schema, Table};

const TABLES: &str = "SELECT name, sql FROM sqlite_schema \
     WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> $1 ORDER BY name";
const COLUMNS: &str =
    "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info($1) ORDER BY cid";
const FOREIGN_KEYS: &str = "SELECT id, \"from\", \"table\", \"to\", on_delete FROM pragma_foreign_key_list($1) ORDER BY id, seq";
const INDEXES: &str =
    "SELECT name, \"unique\", origin, partial FROM pragma_index_list($1) ORDER BY name";
const INDEX_COLUMNS: &str =
    "SELECT coalesce(name, '<expression>') FROM pragma_index_info($1) ORDER BY seqno";
const TRIGGERS: &str =
    "SELECT tbl_name, name, sql FROM sqlite_schema WHERE type = 'trigger' ORDER BY tbl_name, name";

pub(super) async fn read(
    conn: &mut SqliteConnection,
    migrations_table: &str,
) -> anyhow::Result<Schema> {
    let mut schema = Schema::default();
    let tables: Vec<(String, String)> = sqlx::query_as(TABLES)
        .bind(migrations_table)
        .fetch_all(&mut *conn)
        .await?;
    for (name, sql) in tables {
        let mut table = Table::default();
        let columns: Vec<(String, String, bool, Option<String>, i64)> = sqlx::query_as(COLUMNS)
            .bind(&name)
            .fetch_all(&mut *conn)
            .await?;
        let mut primary_key: Vec<(i64, String)> = Vec::new();
        for (column, data_type, not_null, default, pk_position) in columns {
            if pk_position > 0 {
                primary_key.push((pk_position, column.clone()));
            }
            table.columns.push(Column {
                name: column,
                data_type: data_type.to_lowercase(),
                not_null,
                default,
                identity: None,
                generated: false,
            });
        }
        primary_key.sort();
        table.primary_key = primary_key.into_iter().map(|(_, column)| column).collect();

        let foreign_keys: Vec<(i64, String, String, Option<String>, String)> =
            sqlx::query_as(FOREIGN_KEYS)
                .bind(&name)
                .fetch_all(&mut *conn)
                .await?;
        let mut by_id: std::collections::BTreeMap<i64, ForeignKey> = Default::default();
        for (id, from, parent, to, on_delete) in foreign_keys {
            let fk = by_id.entry(id).or_insert_with(|| ForeignKey {
                name: None,
                columns: Vec::new(),
                referenced_table: parent,
                referenced_columns: Vec::new(),
                on_delete: (on_delete != "NO ACTION").then(|| on_delete.to_lowercase()),
                validated: true,
            });
            fk.columns.push(from);
            fk.referenced_columns.push(to.unwrap_or_default());
        }
        table.foreign_keys = by_id.into_values().collect();
        // pragma ids follow declaration order in reverse; sort for a text that depends
        // only on what the keys are.
        table.foreign_keys.sort_by(|a, b| {
            (&a.columns, &a.referenced_table).cmp(&(&b.columns, &b.referenced_table))
        });

        let indexes: Vec<(String, bool, String, bool)> = sqlx::query_as(INDEXES)
            .bind(&name)
            .fetch_all(&mut *conn)
            .await?;
        for (index, unique, origin, partial) in indexes {
            let columns: Vec<String> = sqlx::query_scalar(INDEX_COLUMNS)
                .bind(&index)
                .fetch_all(&mut *conn)
                .await?;
            if origin == "u" {
                table.uniques.push(Key {
                    name: None,
                    columns: columns.clone(),
                });
            }
            table.indexes.push(Index {
                name: index,
                columns,
                unique,
                backs_constraint: origin != "c",
                partial,
            });
        }
        table.uniques.sort_by(|a, b| a.columns.cmp(&b.columns));
        table.checks = checks_of(&name, &sql)?;
        schema.tables.insert(name, table);
    }
    let triggers: Vec<(String, String, String)> =
        sqlx::query_as(TRIGGERS).fetch_all(&mut *conn).await?;
    for (table, name, sql) in triggers {
        if let Some(table) = schema.tables.get_mut(&table) {
            table.triggers.push((name, sql));
        }
    }
    Ok(schema)
}

/// The CHECK constraints of a CREATE TABLE statement, named ones by name.
fn checks_of(table: &str, sql: &str) -> anyhow::Result<Vec<Check>> {
    let statements = Parser::parse_sql(&SQLiteDialect {}, sql).map_err(|error| {
        anyhow::format_err!("parse the definition of SQLite table `{table}`: {error}")
    })?;
    let mut checks = Vec::new();
    for statement in statements {
        let Statement::CreateTable(CreateTable {
            columns,
            constraints,
            ..
        }) = statement
        else {
            continue;
        };
        for column in columns {
            for option in column.options {
                if let ColumnOption::Check(check) = option.option {
                    checks.push(Check {
                        name: option.name.map(|n| n.value),
                        expression: format!("CHECK ({})", check.expr),
                    });
                }
            }
        }
        for constraint in constraints {
            if let TableConstraint::Check(check) = constraint {
                checks.push(Check {
                    name: check.name.map(|n| n.value),
                    expression: format!("CHECK ({})", check.expr),
                });
            }
        }
    }
    checks.sort_by(|a, b| (&a.name, &a.expression).cmp(&(&b.name, &b.expression)));
    Ok(checks)
}
