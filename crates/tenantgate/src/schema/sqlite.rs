//! Reads a SQLite schema through its pragmas. SQLite keeps CHECK constraints only in the
//! table's SQL, so those are read by parsing it (sqlparser), never by pattern matching.

use sqlparser::ast::{ColumnOption, CreateTable, Statement, TableConstraint};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;
use sqlx::SqliteConnection;

use super::{Check, Column, ForeignKey, Index, Key, Schema, Table};

// Every table at once: the pragmas as table-valued functions joined with the schema
// table, one query each (a query per table and pragma was most of a rehearsal's time).
// `$1` is the migrations table, left out; `$2` the tables to read, a JSON array of their
// names, or NULL for all of them.
macro_rules! asked_for {
    () => {
        "($2 IS NULL OR m.tbl_name IN (SELECT value FROM json_each($2)))"
    };
}
const TABLES: &str = concat!(
    "SELECT m.name, m.sql FROM sqlite_schema m \
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> $1 AND ",
    asked_for!(),
    " ORDER BY m.name"
);
const COLUMNS: &str = concat!(
    "SELECT m.name, p.name, p.type, p.\"notnull\", p.dflt_value, p.pk \
     FROM sqlite_schema m, pragma_table_info(m.name) p \
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> $1 AND ",
    asked_for!(),
    " ORDER BY m.name, p.cid"
);
const FOREIGN_KEYS: &str = concat!(
    "SELECT m.name, p.id, p.\"from\", p.\"table\", p.\"to\", p.on_delete \
     FROM sqlite_schema m, pragma_foreign_key_list(m.name) p \
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> $1 AND ",
    asked_for!(),
    " ORDER BY m.name, p.id, p.seq"
);
const INDEXES: &str = concat!(
    "SELECT m.name, p.name, p.\"unique\", p.origin, p.partial \
     FROM sqlite_schema m, pragma_index_list(m.name) p \
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> $1 AND ",
    asked_for!(),
    " ORDER BY m.name, p.name"
);
const INDEX_COLUMNS: &str = concat!(
    "SELECT i.name, coalesce(p.name, '<expression>') \
     FROM sqlite_schema m, pragma_index_list(m.name) i, pragma_index_info(i.name) p \
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> $1 AND ",
    asked_for!(),
    " ORDER BY i.name, p.seqno"
);
// The migrations table's triggers are left out with it.
const TRIGGERS: &str = concat!(
    "SELECT m.tbl_name, m.name, m.sql FROM sqlite_schema m \
     WHERE m.type = 'trigger' AND m.tbl_name <> $1 AND ",
    asked_for!(),
    " ORDER BY m.tbl_name, m.name"
);

/// What a read saw of `sqlite_schema`: by table, the rows that define it (the table's,
/// its indexes' and its triggers' SQL). SQLite derives every pragma's answer about a table
/// from these, so a table whose rows are the same reads the same.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Marks {
    tables: std::collections::BTreeMap<String, String>,
}

/// Reads the schema as [`read`] does; given the model and marks of an earlier read on
/// this connection, the tables whose `sqlite_schema` rows are unchanged are taken from it.
/// Also how many tables it read: `None` for all.
pub(super) async fn read_changed(
    conn: &mut SqliteConnection,
    migrations_table: &str,
    previous: Option<(&Schema, &Marks)>,
) -> anyhow::Result<(Schema, Marks, Option<usize>)> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT tbl_name, group_concat(type || char(31) || name || char(31) || coalesce(sql, ''), char(30)) \
         FROM (SELECT tbl_name, type, name, sql FROM sqlite_schema ORDER BY tbl_name, type, name) \
         GROUP BY tbl_name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let marks = Marks {
        tables: rows.into_iter().collect(),
    };
    let Some((before_schema, before)) = previous else {
        return Ok((
            read_tables(conn, migrations_table, None).await?,
            marks,
            None,
        ));
    };
    let changed: Vec<&String> = marks
        .tables
        .iter()
        .filter(|(name, rows)| before.tables.get(*name) != Some(*rows))
        .map(|(name, _)| name)
        .collect();
    let gone = before
        .tables
        .keys()
        .any(|name| !marks.tables.contains_key(name));
    if changed.is_empty() && !gone {
        return Ok((before_schema.clone(), marks, Some(0)));
    }
    let mut schema = read_tables(conn, migrations_table, Some(&changed)).await?;
    let read_again = schema.tables.len();
    for (name, table) in &before_schema.tables {
        let unchanged = marks.tables.contains_key(name) && !changed.contains(&name);
        if unchanged {
            schema.tables.insert(name.clone(), table.clone());
        }
    }
    Ok((schema, marks, Some(read_again)))
}

pub(super) async fn read(
    conn: &mut SqliteConnection,
    migrations_table: &str,
) -> anyhow::Result<Schema> {
    read_tables(conn, migrations_table, None).await
}

/// Reads every table, or those of `only` (names as `sqlite_schema` holds them).
async fn read_tables(
    conn: &mut SqliteConnection,
    migrations_table: &str,
    only: Option<&[&String]>,
) -> anyhow::Result<Schema> {
    use std::collections::BTreeMap;
    let names = only.map(serde_json::to_string).transpose()?;
    let names = names.as_deref();
    let mut schema = Schema::default();
    let tables: Vec<(String, String)> = fetch(conn, TABLES, migrations_table, names).await?;
    let columns: Vec<(String, String, String, bool, Option<String>, i64)> =
        fetch(conn, COLUMNS, migrations_table, names).await?;
    let foreign_keys: Vec<(String, i64, String, String, Option<String>, String)> =
        fetch(conn, FOREIGN_KEYS, migrations_table, names).await?;
    let indexes: Vec<(String, String, bool, String, bool)> =
        fetch(conn, INDEXES, migrations_table, names).await?;
    let index_columns: Vec<(String, String)> =
        fetch(conn, INDEX_COLUMNS, migrations_table, names).await?;
    let mut columns_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (index, column) in index_columns {
        columns_of.entry(index).or_default().push(column);
    }
    for (name, sql) in tables {
        let table = Table {
            checks: checks_of(&name, &sql)?,
            ..Table::default()
        };
        schema.tables.insert(name, table);
    }
    let mut primary_keys: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for (name, column, data_type, not_null, default, pk_position) in columns {
        let Some(table) = schema.tables.get_mut(&name) else {
            continue;
        };
        if pk_position > 0 {
            primary_keys
                .entry(name.clone())
                .or_default()
                .push((pk_position, column.clone()));
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
    for (name, mut primary_key) in primary_keys {
        primary_key.sort();
        if let Some(table) = schema.tables.get_mut(&name) {
            table.primary_key = primary_key.into_iter().map(|(_, column)| column).collect();
        }
    }
    let mut by_table: BTreeMap<String, BTreeMap<i64, ForeignKey>> = BTreeMap::new();
    for (name, id, from, parent, to, on_delete) in foreign_keys {
        let fk = by_table
            .entry(name)
            .or_default()
            .entry(id)
            .or_insert_with(|| ForeignKey {
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
    for (name, keys) in by_table {
        if let Some(table) = schema.tables.get_mut(&name) {
            table.foreign_keys = keys.into_values().collect();
            // pragma ids follow declaration order in reverse; sort for a text that
            // depends only on what the keys are.
            table.foreign_keys.sort_by(|a, b| {
                (&a.columns, &a.referenced_table).cmp(&(&b.columns, &b.referenced_table))
            });
        }
    }
    for (name, index, unique, origin, partial) in indexes {
        let Some(table) = schema.tables.get_mut(&name) else {
            continue;
        };
        let columns = columns_of.get(&index).cloned().unwrap_or_default();
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
    for table in schema.tables.values_mut() {
        table.uniques.sort_by(|a, b| a.columns.cmp(&b.columns));
    }
    let triggers: Vec<(String, String, String)> =
        fetch(conn, TRIGGERS, migrations_table, names).await?;
    for (table, name, sql) in triggers {
        if let Some(table) = schema.tables.get_mut(&table) {
            table.triggers.push((name, sql));
        }
    }
    Ok(schema)
}

/// One of the queries above: `names`, a JSON array of the tables to read, or all of them.
async fn fetch<T>(
    conn: &mut SqliteConnection,
    sql: &'static str,
    migrations_table: &str,
    names: Option<&str>,
) -> sqlx::Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    sqlx::query_as(sql)
        .bind(migrations_table)
        .bind(names)
        .fetch_all(&mut *conn)
        .await
}

/// The CHECK constraints of a CREATE TABLE statement, named ones by name. A rehearsal
/// reads the same definitions after every migration: each is parsed once.
fn checks_of(table: &str, sql: &str) -> anyhow::Result<Vec<Check>> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static PARSED: OnceLock<Mutex<HashMap<String, Vec<Check>>>> = OnceLock::new();
    let parsed = PARSED.get_or_init(Default::default);
    if let Some(checks) = parsed.lock().unwrap_or_else(|e| e.into_inner()).get(sql) {
        return Ok(checks.clone());
    }
    let checks = parse_checks(table, sql)?;
    let mut parsed = parsed.lock().unwrap_or_else(|e| e.into_inner());
    if parsed.len() > 10_000 {
        parsed.clear();
    }
    parsed.insert(sql.to_string(), checks.clone());
    Ok(checks)
}

fn parse_checks(table: &str, sql: &str) -> anyhow::Result<Vec<Check>> {
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
