//! One open connection to either backend, and the primitives every part of Tenantgate
//! builds on, each written once per backend (the way sqlx implements its `Migrate` trait
//! once per driver): apply or revert one migration, list the tables, count rows, move
//! identity sequences past explicit ids.
//!
//! Table names: a table in the connection's default schema (PostgreSQL's `public`, or
//! the schema a target sets) is named bare (`orders`); one in another schema is
//! qualified (`basejump.accounts`). [`quote_table`] quotes either form.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::{Migrate, MigrateError, Migration};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::Backend;

pub enum Conn {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which PostgreSQL schemas a read covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every schema the database holds but the system's: what a rehearsal's migrations
    /// created, wherever they put it.
    Database,
    /// The current schema only (one tenant schema of a schema-per-tenant database).
    CurrentSchema,
    /// The current schema and these (the app's schemas in a live database, which may
    /// hold other software's too).
    CurrentAnd(Vec<String>),
}

/// The schemas a [`Scope`] covers, as a SQL condition on `n.nspname`.
pub fn schema_filter(scope: &Scope) -> String {
    match scope {
        Scope::Database => {
            "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'"
                .to_string()
        }
        Scope::CurrentSchema => "n.nspname = current_schema()".to_string(),
        Scope::CurrentAnd(others) => format!(
            "(n.nspname = current_schema() OR n.nspname IN ({}))",
            std::iter::once("''".to_string())
                .chain(others.iter().map(|s| literal(s)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A table's name as [`Conn::tables`] gives it: bare in the current schema, qualified elsewhere.
pub const TABLE_NAME_SQL: &str = "CASE WHEN n.nspname = current_schema() THEN c.relname::text ELSE n.nspname || '.' || c.relname END";

impl Conn {
    pub async fn connect(backend: Backend, url: &str) -> anyhow::Result<Conn> {
        Conn::connect_with_pragmas(backend, url, &[]).await
    }

    /// Connects; on SQLite with these PRAGMAs set (as an app sets them while migrating).
    pub async fn connect_with_pragmas(
        backend: Backend,
        url: &str,
        pragmas: &[(String, String)],
    ) -> anyhow::Result<Conn> {
        Ok(match backend {
            Backend::Postgres => Conn::Postgres(
                PgConnection::connect(url)
                    .await
                    .context("connect to PostgreSQL")?,
            ),
            Backend::Sqlite => {
                let mut options = SqliteConnectOptions::from_str(url)?.create_if_missing(true);
                for (name, value) in pragmas {
                    options = options.pragma(name.clone(), value.clone());
                }
                Conn::Sqlite(
                    SqliteConnection::connect_with(&options)
                        .await
                        .context("open the SQLite database")?,
                )
            }
        })
    }

    /// SQLite: a handle that interrupts the statement this connection runs, from any
    /// thread (`sqlite3_interrupt`); valid while the connection is open.
    pub async fn sqlite_interrupter(&mut self) -> Option<SqliteInterrupter> {
        let Conn::Sqlite(conn) = self else {
            return None;
        };
        let mut handle = conn.lock_handle().await.ok()?;
        Some(SqliteInterrupter(handle.as_raw_handle().as_ptr() as usize))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Conn::Postgres(_) => Backend::Postgres,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub async fn close(self) {
        let _ = match self {
            Conn::Postgres(conn) => conn.close().await,
            Conn::Sqlite(conn) => conn.close().await,
        };
    }

    /// Runs one scalar count query (SQL built by the harness from catalog names).
    pub async fn count(&mut self, sql: &str) -> anyhow::Result<i64> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        Ok(match self {
            Conn::Postgres(conn) => sqlx::query_scalar(sql).fetch_one(conn).await?,
            Conn::Sqlite(conn) => sqlx::query_scalar(sql).fetch_one(conn).await?,
        })
    }

    /// The first column of every row, as text.
    pub async fn texts(&mut self, sql: &str) -> anyhow::Result<Vec<String>> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        Ok(match self {
            Conn::Postgres(conn) => sqlx::query_scalar(sql).fetch_all(conn).await?,
            Conn::Sqlite(conn) => sqlx::query_scalar(sql).fetch_all(conn).await?,
        })
    }

    /// Runs statements that return nothing.
    pub async fn execute(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Conn::Postgres(conn) => sqlx::raw_sql(sql).execute(conn).await.map(drop),
            Conn::Sqlite(conn) => sqlx::raw_sql(sql).execute(conn).await.map(drop),
        }
    }

    /// Creates the migrations table when it is missing, as sqlx does.
    pub async fn ensure_migrations_table(&mut self, table: &str) -> Result<(), MigrateError> {
        match self {
            Conn::Postgres(c) => c.ensure_migrations_table(table).await,
            Conn::Sqlite(c) => c.ensure_migrations_table(table).await,
        }
    }

    /// Applies one migration the way sqlx does (in a transaction unless it opts out),
    /// recording it in the migrations table.
    pub async fn apply(
        &mut self,
        table: &str,
        migration: &Migration,
    ) -> Result<Duration, MigrateError> {
        match self {
            Conn::Postgres(c) => c.apply(table, migration).await,
            Conn::Sqlite(c) => c.apply(table, migration).await,
        }
    }

    /// Runs one down migration the way sqlx does, removing its up from the table.
    pub async fn revert(
        &mut self,
        table: &str,
        down: &Migration,
    ) -> Result<Duration, MigrateError> {
        match self {
            Conn::Postgres(c) => c.revert(table, down).await,
            Conn::Sqlite(c) => c.revert(table, down).await,
        }
    }

    /// Every table in `scope` (SQLite: every table), sorted. The schemas are found first,
    /// then their relations (by pg_class's (relname, relnamespace) index, not a scan of
    /// every relation of a thousand tenant schemas).
    pub async fn tables(&mut self, scope: &Scope) -> anyhow::Result<Vec<String>> {
        let sql = match self {
            Conn::Postgres(_) => format!(
                "SELECT {TABLE_NAME_SQL} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relnamespace IN (SELECT n.oid FROM pg_namespace n WHERE {filter}) \
                 AND c.relkind IN ('r', 'p') ORDER BY 1",
                filter = schema_filter(scope)
            ),
            Conn::Sqlite(_) => "SELECT name FROM sqlite_schema WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY 1"
                .to_string(),
        };
        self.texts(&sql).await.context("list the tables")
    }

    /// The row count of every table in `scope` but `except` (the migrations table).
    pub async fn row_counts(
        &mut self,
        scope: &Scope,
        except: Option<&str>,
    ) -> anyhow::Result<std::collections::BTreeMap<String, i64>> {
        let mut counts = std::collections::BTreeMap::new();
        let tables: Vec<String> = self
            .tables(scope)
            .await?
            .into_iter()
            .filter(|table| except.is_none_or(|except| !crate::config::same_table(table, except)))
            .collect();
        if tables.is_empty() {
            return Ok(counts);
        }
        // One query for every table: a round trip per table is most of the cost.
        let sql = tables
            .iter()
            .map(|table| {
                format!(
                    "SELECT CAST({} AS TEXT), count(*) FROM {}",
                    literal(table),
                    quote_table(table)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows: Vec<(String, i64)> = match self {
            Conn::Postgres(c) => {
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&mut *c)
                    .await?
            }
            Conn::Sqlite(c) => {
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&mut *c)
                    .await?
            }
        };
        counts.extend(rows);
        Ok(counts)
    }

    /// What every table of `schema` holds, as digests: of the multiset of its rows, and of
    /// the multiset of each column's values. Two equal digests mean the same rows; the
    /// column digests say which column changed when they differ.
    pub async fn fingerprints(
        &mut self,
        schema: &crate::schema::Schema,
    ) -> anyhow::Result<std::collections::BTreeMap<String, Fingerprint>> {
        let mut fingerprints = std::collections::BTreeMap::new();
        let tables: Vec<(&String, Vec<&str>)> = schema
            .tables
            .iter()
            .map(|(name, table)| {
                (
                    name,
                    table.columns.iter().map(|c| c.name.as_str()).collect(),
                )
            })
            .filter(|(_, columns): &(&String, Vec<&str>)| !columns.is_empty())
            .collect();
        // A query per batch of tables, not per table: the round trips were most of the
        // cost. (SQLite allows 500 terms in one compound SELECT.)
        for batch in tables.chunks(200) {
            match self {
                Conn::Postgres(c) => {
                    // Digests in the server: no row leaves it.
                    let digest = |expression: String| {
                        format!(
                            "md5(coalesce(string_agg({expression}, E'\\n' ORDER BY {expression}), ''))"
                        )
                    };
                    let sql = batch
                        .iter()
                        .map(|(name, columns)| {
                            let mut select = vec![digest("t::text".to_string())];
                            select.extend(columns.iter().map(|column| {
                                digest(format!("coalesce(t.{}::text, E'\\\\N')", quote(column)))
                            }));
                            format!(
                                "SELECT {}::text, ARRAY[{}] FROM {} t",
                                literal(name),
                                select.join(", "),
                                quote_table(name)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" UNION ALL ");
                    let rows: Vec<(String, Vec<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut *c)
                        .await
                        .context("fingerprint the tables")?;
                    let mut by_table: std::collections::BTreeMap<String, Vec<String>> =
                        rows.into_iter().collect();
                    for (name, columns) in batch {
                        let digests = by_table.remove(name.as_str()).unwrap_or_default();
                        fingerprints.insert((*name).clone(), Fingerprint::of(columns, digests));
                    }
                }
                Conn::Sqlite(c) => {
                    let sql = batch
                        .iter()
                        .map(|(name, columns)| {
                            format!(
                                "SELECT {}, {} FROM {}",
                                literal(name),
                                columns
                                    .iter()
                                    .map(|column| format!("quote({})", quote(column)))
                                    .collect::<Vec<_>>()
                                    .join(" || char(31) || "),
                                quote_table(name)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" UNION ALL ");
                    let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut *c)
                        .await
                        .context("fingerprint the tables")?;
                    let mut by_table: std::collections::BTreeMap<&str, Vec<String>> = batch
                        .iter()
                        .map(|(name, _)| (name.as_str(), Vec::new()))
                        .collect();
                    for (table, row) in rows {
                        if let Some(rows) = by_table.get_mut(table.as_str()) {
                            rows.push(row);
                        }
                    }
                    // Each digest is the sum of its values' hashes: the same for the same
                    // multiset of values in any order, with nothing to sort.
                    let hash = |value: &str| {
                        use std::hash::{Hash, Hasher};
                        let mut hasher = std::hash::DefaultHasher::new();
                        value.hash(&mut hasher);
                        u128::from(hasher.finish())
                    };
                    for (name, columns) in batch {
                        let rows = by_table.remove(name.as_str()).unwrap_or_default();
                        let mut sums = vec![0u128; columns.len() + 1];
                        for row in &rows {
                            sums[0] = sums[0].wrapping_add(hash(row));
                            for (i, value) in row.split('\u{1f}').enumerate().take(columns.len()) {
                                sums[i + 1] = sums[i + 1].wrapping_add(hash(value));
                            }
                        }
                        let digests = sums
                            .iter()
                            .map(|sum| format!("{sum:032x}:{}", rows.len()))
                            .collect();
                        fingerprints.insert((*name).clone(), Fingerprint::of(columns, digests));
                    }
                }
            }
        }
        Ok(fingerprints)
    }

    /// After rows with explicit ids (a fixture, generated rows), PostgreSQL's identity
    /// and serial sequences must move past them; SQLite needs nothing.
    pub async fn realign_sequences(&mut self) -> Result<(), sqlx::Error> {
        if let Conn::Postgres(_) = self {
            self.execute(REALIGN_SEQUENCES).await?;
        }
        Ok(())
    }
}

/// [`Conn::sqlite_interrupter`].
#[derive(Clone, Copy, Debug)]
pub struct SqliteInterrupter(usize);

impl SqliteInterrupter {
    /// Makes the statement the connection runs stop with SQLITE_INTERRUPT.
    ///
    /// # Safety
    /// The connection it came from must still be open.
    pub unsafe fn interrupt(self) {
        // SAFETY: sqlite3_interrupt may be called from any thread on an open connection.
        unsafe { libsqlite3_sys::sqlite3_interrupt(self.0 as *mut libsqlite3_sys::sqlite3) };
    }
}

/// Digests of what a table holds: [`Conn::fingerprints`].
#[derive(Clone, Debug, PartialEq)]
pub struct Fingerprint {
    pub rows: String,
    pub columns: std::collections::BTreeMap<String, String>,
}

impl Fingerprint {
    fn of(columns: &[&str], digests: Vec<String>) -> Fingerprint {
        let mut digests = digests.into_iter();
        Fingerprint {
            rows: digests.next().unwrap_or_default(),
            columns: columns.iter().map(|c| c.to_string()).zip(digests).collect(),
        }
    }

    /// The columns whose values differ from `other`'s.
    pub fn changed_columns(&self, other: &Fingerprint) -> Vec<String> {
        self.columns
            .iter()
            .filter(|(column, digest)| other.columns.get(*column) != Some(*digest))
            .map(|(column, _)| column.clone())
            .collect()
    }
}

/// Moves every sequence owned by a column (identity or serial) past the column's largest
/// value, in every user schema.
const REALIGN_SEQUENCES: &str = "
DO $$
DECLARE r record;
BEGIN
    FOR r IN
        SELECT n.nspname, c.relname, a.attname,
               pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) AS seq
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
          AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
    LOOP
        IF r.seq IS NOT NULL THEN
            EXECUTE format('SELECT setval(%L, coalesce((SELECT max(%I) FROM %I.%I), 0) + 1, false)',
                           r.seq, r.attname, r.nspname, r.relname);
        END IF;
    END LOOP;
END
$$";

/// A database error as a person reads it: the server's message and SQLSTATE, with
/// PostgreSQL's DETAIL and HINT — never the line of the server's own C source that sqlx's
/// text of the error appends (`at line 869`).
pub fn error_text(error: &sqlx::Error) -> String {
    let sqlx::Error::Database(database) = error else {
        return error.to_string();
    };
    let mut text = database.message().trim_end().to_string();
    if let Some(code) = database.code() {
        text.push_str(&format!(" ({code})"));
    }
    if let Some(postgres) = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(detail) = postgres.detail() {
            text.push_str(&format!("; DETAIL: {}", detail.trim_end()));
        }
        if let Some(hint) = postgres.hint() {
            text.push_str(&format!("; HINT: {}", hint.trim_end()));
        }
    }
    text
}

/// A SQL string literal: `it's` → `'it''s'`.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A double-quoted SQL identifier.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A table name as [`Conn::tables`] gives it, quoted: `orders` → `"orders"`,
/// `basejump.accounts` → `"basejump"."accounts"`.
pub fn quote_table(name: &str) -> String {
    match name.split_once('.') {
        Some((schema, table)) => format!("{}.{}", quote(schema), quote(table)),
        None => quote(name),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn qualified_names_are_quoted_part_by_part() {
        assert_eq!(super::quote_table("orders"), "\"orders\"");
        assert_eq!(
            super::quote_table("basejump.accounts"),
            "\"basejump\".\"accounts\""
        );
        assert_eq!(super::literal("it's"), "'it''s'");
    }
}
