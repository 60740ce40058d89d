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

/// A condition on `c.oid`: the relation is in one of the schemas `n` of `filter`
/// ([`schema_filter`]). Found through each schema's dependents in pg_depend (every table,
/// view, sequence and foreign table depends on its schema), an index lookup: pg_class
/// has no index that starts with the schema, and with a thousand tenant schemas a scan
/// of its ninety thousand rows took 5–8 ms for every one-schema question.
pub fn relation_in(filter: &str) -> String {
    format!(
        "c.oid IN (SELECT d.objid FROM pg_depend d \
         WHERE d.refclassid = 'pg_namespace'::regclass AND d.classid = 'pg_class'::regclass AND d.deptype = 'n' \
         AND d.refobjid IN (SELECT n.oid FROM pg_namespace n WHERE {filter}))"
    )
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

    /// From now on, note which tables this connection writes rows to: on SQLite its update
    /// hook does; on PostgreSQL the migrations applied through [`Conn::apply_tracked`] say
    /// what their transactions wrote.
    pub async fn track_writes(&mut self) -> anyhow::Result<Option<Writes>> {
        let conn = match self {
            Conn::Postgres(conn) => {
                // [`Conn::apply_tracked`] notes what each migration's transaction wrote,
                // with two questions prepared (and planned) once for the connection.
                prepare_tracking(conn).await?;
                return Ok(Some(Writes::default()));
            }
            Conn::Sqlite(conn) => conn,
        };
        let writes = Writes::default();
        let log = writes.0.clone();
        let mut handle = conn.lock_handle().await?;
        handle.set_update_hook(move |write| {
            let mut log = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mark = log.mark;
            if write.database != "main" {
                // Never a name of the main database's: every table counts as written.
                let name = format!("{}.{}", write.database, write.table);
                log.written.insert(name, mark);
            } else if let Some(last) = log.written.get_mut(write.table) {
                // Once per row: no allocation for a table already seen.
                *last = mark;
            } else {
                log.written.insert(write.table.to_string(), mark);
            }
        });
        Ok(Some(writes))
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
    ///
    /// On PostgreSQL this and [`Conn::texts`] send their SQL as a simple query: it is
    /// built for one use (names, values), and preparing it first would cost a round trip
    /// more and a place in sqlx's statement cache that nothing reuses.
    pub async fn count(&mut self, sql: &str) -> anyhow::Result<i64> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        Ok(match self {
            Conn::Postgres(conn) => {
                use sqlx::Row;
                let rows = simple_query(conn, sql).await?;
                let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
                row.try_get(0)?
            }
            Conn::Sqlite(conn) => sqlx::query_scalar(sql).fetch_one(conn).await?,
        })
    }

    /// The first column of every row, as text.
    pub async fn texts(&mut self, sql: &str) -> anyhow::Result<Vec<String>> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        Ok(match self {
            Conn::Postgres(conn) => {
                use sqlx::Row;
                let rows = simple_query(conn, sql).await?;
                rows.iter()
                    .map(|row| row.try_get(0))
                    .collect::<Result<_, _>>()?
            }
            Conn::Sqlite(conn) => sqlx::query_scalar(sql).fetch_all(conn).await?,
        })
    }

    /// The first two columns of every row, as text.
    pub async fn text_pairs(&mut self, sql: &str) -> anyhow::Result<Vec<(String, String)>> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        Ok(match self {
            Conn::Postgres(conn) => {
                use sqlx::Row;
                let rows = simple_query(conn, sql).await?;
                rows.iter()
                    .map(|row| Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?)))
                    .collect::<Result<_, _>>()?
            }
            Conn::Sqlite(conn) => sqlx::query_as(sql).fetch_all(conn).await?,
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

    /// [`Conn::apply`] (`up`) or [`Conn::revert`], noting in `writes` the tables the
    /// migration wrote rows to ([`Writes`]; on SQLite its update hook does that).
    pub async fn apply_tracked(
        &mut self,
        table: &str,
        migration: &Migration,
        up: bool,
        writes: Option<&Writes>,
    ) -> Result<Duration, MigrateError> {
        match (self, writes) {
            (Conn::Postgres(c), Some(writes)) => {
                postgres_tracked(c, table, migration, writes, up).await
            }
            (conn, _) if up => conn.apply(table, migration).await,
            (conn, _) => conn.revert(table, migration).await,
        }
    }

    /// Every table in `scope` (SQLite: every table), sorted. The schemas are found first,
    /// then their relations (by pg_class's (relname, relnamespace) index, not a scan of
    /// every relation of a thousand tenant schemas).
    pub async fn tables(&mut self, scope: &Scope) -> anyhow::Result<Vec<String>> {
        let sql = match self {
            Conn::Postgres(_) => format!(
                "SELECT {TABLE_NAME_SQL} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE {relations} AND c.relkind IN ('r', 'p') ORDER BY 1",
                relations = relation_in(&schema_filter(scope))
            ),
            Conn::Sqlite(_) => "SELECT name FROM sqlite_schema WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY 1"
                .to_string(),
        };
        // Prepared, unlike [`Conn::texts`]: a rehearsal asks after every migration, and the
        // same text for a scope reuses its plan (planning it each time was 60% of its
        // cost).
        let sql = sqlx::AssertSqlSafe(sql);
        let tables = match self {
            Conn::Postgres(conn) => sqlx::query_scalar(sql).fetch_all(conn).await,
            Conn::Sqlite(conn) => sqlx::query_scalar(sql).fetch_all(conn).await,
        };
        tables.context("list the tables")
    }

    /// Every table in `scope` but `except` (the migrations table).
    async fn tables_except(
        &mut self,
        scope: &Scope,
        except: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        Ok(self
            .tables(scope)
            .await?
            .into_iter()
            .filter(|table| except.is_none_or(|except| !crate::config::same_table(table, except)))
            .collect())
    }

    /// The row count of every table in `scope` but `except` (the migrations table).
    pub async fn row_counts(
        &mut self,
        scope: &Scope,
        except: Option<&str>,
    ) -> anyhow::Result<std::collections::BTreeMap<String, i64>> {
        let mut counts = std::collections::BTreeMap::new();
        let tables = self.tables_except(scope, except).await?;
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

    /// The row count of every table in `scope` but `except`, each with a stamp of its rows.
    /// PostgreSQL: its row count, the sum and the largest of its rows' `xmin`, and the sum
    /// of their `tableoid`. SQLite: its row count and root page, and only with the
    /// connection's [`Writes`], which say whether rows were written.
    ///
    /// Equal stamps mean the very same row versions, and so the same rows while the table's
    /// columns and their types are the same, provided one connection did all the writing
    /// in between (a rehearsal's): a transaction that starts after a stamp was read writes
    /// row versions whose `xmin` is above every one the stamp saw, so the largest `xmin`
    /// comes back to its value only when no such version is left, and the count is then
    /// the same only when none was deleted. The oids tell one table from another that took
    /// its name; the sum, versions frozen by a `VACUUM FREEZE` (whose `xmin` reads 2).
    pub async fn row_stamps(
        &mut self,
        scope: &Scope,
        except: Option<&str>,
    ) -> anyhow::Result<std::collections::BTreeMap<String, (i64, Option<String>)>> {
        if let Conn::Sqlite(c) = self {
            // A table's root page: another table that took its name has another.
            // WITHOUT ROWID tables have no stamp: the update hook does not see their rows.
            let roots: Vec<(String, i64)> = sqlx::query_as(
                "SELECT s.name, s.rootpage FROM sqlite_schema s \
                 JOIN pragma_table_list l ON l.name = s.name AND l.schema = 'main' \
                 WHERE s.type = 'table' AND l.wr = 0",
            )
            .fetch_all(&mut *c)
            .await
            .context("list the tables' root pages")?;
            let roots: std::collections::BTreeMap<String, i64> = roots.into_iter().collect();
            return Ok(self
                .row_counts(scope, except)
                .await?
                .into_iter()
                .map(|(table, rows)| {
                    let stamp = roots.get(&table).map(|root| format!("{rows}:{root}"));
                    (table, (rows, stamp))
                })
                .collect());
        }
        let tables = self.tables_except(scope, except).await?;
        self.row_stamps_of(&tables).await
    }

    /// PostgreSQL: [`Conn::row_stamps`] of `tables`, named as [`Conn::tables`] names them.
    pub async fn row_stamps_of(
        &mut self,
        tables: &[String],
    ) -> anyhow::Result<std::collections::BTreeMap<String, (i64, Option<String>)>> {
        let Conn::Postgres(c) = self else {
            anyhow::bail!("row stamps by table name are PostgreSQL's (SQLite's: row_stamps)");
        };
        if tables.is_empty() {
            return Ok(std::collections::BTreeMap::new());
        }
        let xmin = "CAST(CAST(xmin AS TEXT) AS bigint)";
        let sql = tables
            .iter()
            .map(|table| {
                format!(
                    "SELECT CAST({} AS TEXT), count(*),                      count(*) || ':' || coalesce(sum({xmin}), 0) || ':' || coalesce(max({xmin}), 0)                      || ':' || coalesce(sum(CAST(tableoid AS bigint)), 0) FROM {}",
                    literal(table),
                    quote_table(table)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows: Vec<(String, i64, String)> = fetch_serial(c, sql)
            .await
            .context("count the rows of every table")?;
        Ok(rows
            .into_iter()
            .map(|(table, rows, stamp)| (table, (rows, Some(stamp))))
            .collect())
    }

    /// What each of `tables` (names of `schema`'s tables) holds, as digests: of the
    /// multiset of its rows, and of the multiset of each column's values. Two equal digests
    /// mean the same rows; the column digests say which column changed when they differ.
    /// The digests are computed in the database: no row leaves it.
    pub async fn fingerprints(
        &mut self,
        schema: &crate::schema::Schema,
        tables: &[&str],
    ) -> anyhow::Result<std::collections::BTreeMap<String, Fingerprint>> {
        let mut fingerprints = std::collections::BTreeMap::new();
        let tables: Vec<(&str, Vec<&str>)> = tables
            .iter()
            .filter_map(|name| {
                let table = schema.tables.get(*name)?;
                let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
                (!columns.is_empty()).then_some((*name, columns))
            })
            .collect();
        if let Conn::Sqlite(c) = self {
            sqlite_digest::register(c).await?;
        }
        // A query per batch of tables, not per table: the round trips were most of the
        // cost. (SQLite allows 500 terms in one compound SELECT.)
        for batch in tables.chunks(200) {
            let sql = batch
                .iter()
                .map(|(name, columns)| match self {
                    Conn::Postgres(_) => {
                        let digest = |expression: String| {
                            format!(
                                "md5(coalesce(string_agg({expression}, E'\\n' ORDER BY {expression}), ''))"
                            )
                        };
                        let mut select = vec![digest("t::text".to_string())];
                        select.extend(columns.iter().map(|column| {
                            digest(format!("coalesce(t.{}::text, E'\\\\N')", quote(column)))
                        }));
                        format!(
                            "SELECT {}::text, array_to_string(ARRAY[{}], ' ') FROM {} t",
                            literal(name),
                            select.join(", "),
                            quote_table(name)
                        )
                    }
                    Conn::Sqlite(_) => {
                        // quote() tells NULL from 'NULL' and 1 from '1'; a unit separator
                        // between the values of a row.
                        let values: Vec<String> = columns
                            .iter()
                            .map(|column| format!("quote({})", quote(column)))
                            .collect();
                        let mut select =
                            vec![format!("{}({})", sqlite_digest::NAME, values.join(" || char(31) || "))];
                        select.extend(
                            values
                                .iter()
                                .map(|value| format!("{}({value})", sqlite_digest::NAME)),
                        );
                        format!(
                            "SELECT {}, {} FROM {}",
                            literal(name),
                            select.join(" || ' ' || "),
                            quote_table(name)
                        )
                    }
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            let rows: Vec<(String, String)> = match self {
                Conn::Postgres(c) => fetch_serial(c, sql).await,
                Conn::Sqlite(c) => {
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut *c)
                        .await
                }
            }
            .context("fingerprint the tables")?;
            let mut by_table: std::collections::BTreeMap<String, String> =
                rows.into_iter().collect();
            for (name, columns) in batch {
                let digests = by_table
                    .remove(*name)
                    .unwrap_or_default()
                    .split(' ')
                    .map(str::to_string)
                    .collect();
                fingerprints.insert((*name).to_string(), Fingerprint::of(columns, digests));
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

/// Runs `sql` on PostgreSQL without parallel workers or JIT, in a transaction of its own:
/// a rehearsal's tables are small and many, and a `UNION ALL` over seventy of them was
/// planned as a parallel append whose workers took longer to start than the scans (a
/// 50 ms read became 6 ms).
async fn fetch_serial<T>(conn: &mut PgConnection, sql: String) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let mut transaction = conn.begin().await?;
    sqlx::query(
        "SELECT set_config('max_parallel_workers_per_gather', '0', true), set_config('jit', 'off', true)",
    )
    .execute(&mut *transaction)
    .await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(rows)
}

/// The user tables of the database with what this backend's statistics have counted of
/// their inserted, updated and deleted rows (`oid:count,…`). `pg_stat_xact_*` counts
/// include earlier transactions' until the backend flushes them, which it does only
/// between transactions: read at the start of one, they are what its own writes add to.
const WRITE_COUNTS: &str = "SELECT coalesce(string_agg(c.oid::text || ':' || (pg_stat_get_xact_tuples_inserted(c.oid) + pg_stat_get_xact_tuples_updated(c.oid) + pg_stat_get_xact_tuples_deleted(c.oid)), ','), '') FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.relnamespace NOT IN (CAST('pg_catalog' AS regnamespace), CAST('information_schema' AS regnamespace))";

/// The tables whose rows the current transaction changed, as a JSON array of names (as
/// [`Conn::tables`] names them), NULL when the statistics are off: rows inserted,
/// updated or deleted since `{counted}` ([`WRITE_COUNTS`]) was read (triggers' and foreign
/// key actions' included), tables whose `pg_class` row it changed (TRUNCATE's new file,
/// which the statistics do not count; a rewrite, a rename), and every ancestor of those
/// (a parent's rows include its children's).
const WRITTEN_SINCE: &str = "WITH RECURSIVE counted AS (
    SELECT CAST(split_part(x, ':', 1) AS oid) AS relid, CAST(split_part(x, ':', 2) AS bigint) AS n
    FROM unnest(string_to_array({counted}, ',')) x
), written(relid) AS (
    SELECT c.oid FROM pg_class c LEFT JOIN counted k ON k.relid = c.oid
    WHERE c.relkind IN ('r', 'p') AND c.relnamespace NOT IN (CAST('pg_catalog' AS regnamespace), CAST('information_schema' AS regnamespace))
      AND (pg_stat_get_xact_tuples_inserted(c.oid) + pg_stat_get_xact_tuples_updated(c.oid) + pg_stat_get_xact_tuples_deleted(c.oid) <> coalesce(k.n, 0)
           OR age(c.xmin) <= age(CAST(pg_current_xact_id() AS xid)))
    UNION
    SELECT i.inhparent FROM pg_inherits i JOIN written w ON w.relid = i.inhrelid
)
SELECT CASE WHEN CAST(current_setting('track_counts') AS bool) THEN CAST(coalesce(json_agg(CASE WHEN n.nspname = current_schema() THEN c.relname::text ELSE n.nspname || '.' || c.relname END), '[]') AS text) END
FROM written w JOIN pg_class c ON c.oid = w.relid JOIN pg_namespace n ON n.oid = c.relnamespace";

/// Where a tracked migration's transaction keeps the [`WRITE_COUNTS`] it started with
/// (`SET LOCAL`: gone at its end) for the [`WRITTEN_SINCE`] question after its script.
const COUNTS_SETTING: &str = "tenantgate.write_counts";

/// The prepared statements of [`postgres_tracked`]: the counts kept, and the question.
const COUNTS_STATEMENT: &str = "tenantgate_write_counts";
const WRITTEN_STATEMENT: &str = "tenantgate_written_since";

/// Prepares the two statements every tracked apply runs, in this session: a plain query
/// in a migration's message would be planned again each time (0.3 ms of the server's,
/// a third of the question's cost, in every apply of a long history). A connection that
/// has them already keeps them.
async fn prepare_tracking(conn: &mut PgConnection) -> anyhow::Result<()> {
    let prepared: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pg_prepared_statements WHERE name IN ($1, $2)")
            .bind(COUNTS_STATEMENT)
            .bind(WRITTEN_STATEMENT)
            .fetch_all(&mut *conn)
            .await
            .context("list the session's prepared statements")?;
    let question = WRITTEN_SINCE.replace(
        "{counted}",
        &format!("current_setting('{COUNTS_SETTING}', true)"),
    );
    let statements = [
        (
            COUNTS_STATEMENT,
            format!("SELECT set_config('{COUNTS_SETTING}', ({WRITE_COUNTS}), true)"),
        ),
        (WRITTEN_STATEMENT, question),
    ];
    for (name, sql) in statements {
        if prepared.iter().any(|p| p == name) {
            continue;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE {name} AS {sql}")))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("prepare `{name}`, which tracks a migration's writes"))?;
    }
    Ok(())
}

/// Applies (`up`) or reverts a migration as sqlx does (the script and the bookkeeping in
/// one transaction, the execution time recorded with it), and notes in `writes` what the
/// transaction wrote ([`WRITTEN_SINCE`]). In one round trip, where sqlx's takes five:
/// `BEGIN`, the counts kept in a setting, the script, the bookkeeping, the question and
/// `COMMIT`, one message. Anything that goes wrong in it rolls back and runs the migration
/// again as sqlx does (its error then says which statement failed, at which position of
/// the script), with everything counted as written; a migration that runs outside a
/// transaction (`-- no-transaction`) is run so too.
async fn postgres_tracked(
    conn: &mut PgConnection,
    table: &str,
    migration: &Migration,
    writes: &Writes,
    up: bool,
) -> Result<Duration, MigrateError> {
    use sqlx::Row;
    if migration.no_tx {
        return untracked(conn, table, migration, writes, up).await;
    }
    let started = std::time::Instant::now();
    let bookkeeping = if up {
        let checksum: String = migration
            .checksum
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        // sqlx's execution time: from before `BEGIN` to its end, in nanoseconds.
        format!(
            "INSERT INTO {table} ( version, description, success, checksum, execution_time ) VALUES ( {}, {}, TRUE, decode({}, 'hex'), CAST(extract(epoch FROM clock_timestamp() - now()) * 1000000000 AS bigint) )",
            migration.version,
            literal(&migration.description),
            literal(&checksum),
        )
    } else {
        format!("DELETE FROM {table} WHERE version = {}", migration.version)
    };
    // The script on lines of its own: a last line that is a comment ends there. The
    // statements are [`prepare_tracking`]'s (a script that deallocates them fails the
    // message, and runs again untracked).
    let batch = format!(
        "BEGIN; EXECUTE {COUNTS_STATEMENT};\n{}\n;\n{bookkeeping}; EXECUTE {WRITTEN_STATEMENT}; COMMIT",
        migration.sql.as_str()
    );
    // Every response read (`fetch_all`): an error in a later statement of the message
    // must not go unseen. The question's row comes last (the script's own rows before).
    let answer = sqlx::raw_sql(sqlx::AssertSqlSafe(batch))
        .fetch_all(&mut *conn)
        .await
        .and_then(|rows| rows.into_iter().last().ok_or(sqlx::Error::RowNotFound))
        .and_then(|row| row.try_get::<Option<String>, _>(0));
    let written = match answer {
        Ok(written) => written,
        Err(_) => {
            // The transaction stopped before or at its COMMIT (the script failed, or a
            // deferred constraint): nothing of it stays.
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            return untracked(conn, table, migration, writes, up).await;
        }
    };
    match written.and_then(|json| serde_json::from_str::<Vec<String>>(&json).ok()) {
        Some(tables) => writes.record(tables),
        None => writes.record_everything(),
    }
    Ok(started.elapsed())
}

/// Applies or reverts a migration as sqlx does; what it wrote is not known.
async fn untracked(
    conn: &mut PgConnection,
    table: &str,
    migration: &Migration,
    writes: &Writes,
    up: bool,
) -> Result<Duration, MigrateError> {
    writes.record_everything();
    if up {
        conn.apply(table, migration).await
    } else {
        conn.revert(table, migration).await
    }
}

/// The tables a connection wrote rows to, and when: [`Conn::track_writes`]; and when
/// something wrote without saying what ([`Writes::record_everything`]).
///
/// SQLite's update hook sees every row inserted, updated or deleted in a rowid table,
/// by a statement, a trigger or a foreign key's action, with two exceptions that leave
/// the row count changed: `DELETE` without `WHERE` (the truncate optimisation) and rows
/// deleted by `REPLACE` (whose insert it sees). WITHOUT ROWID tables it does not see.
#[derive(Clone, Default)]
pub struct Writes(std::sync::Arc<std::sync::Mutex<WriteLog>>);

#[derive(Default)]
struct WriteLog {
    mark: u64,
    /// Table name (as the hook gives it) → the mark that was current when it was last
    /// written.
    written: std::collections::HashMap<String, u64>,
    /// The last mark at which something wrote without saying what.
    everything: Option<u64>,
}

impl Writes {
    /// The log, even if a thread that held it panicked (what it noted stays noted).
    fn log(&self) -> std::sync::MutexGuard<'_, WriteLog> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new mark: [`Writes::since`] it tells the tables written after this call.
    pub fn mark(&self) -> u64 {
        let mut log = self.log();
        log.mark += 1;
        log.mark
    }

    /// Notes `tables` as written now (PostgreSQL, [`Conn::apply_tracked`]).
    pub fn record(&self, tables: impl IntoIterator<Item = String>) {
        let mut log = self.log();
        let mark = log.mark;
        for table in tables {
            log.written.insert(table, mark);
        }
    }

    /// Notes that anything may have been written now: what wrote could not say what.
    pub fn record_everything(&self) {
        let mut log = self.log();
        log.everything = Some(log.mark);
    }

    /// Whether, after `mark` was taken, something wrote without saying what.
    pub fn everything_since(&self, mark: u64) -> bool {
        let log = self.log();
        log.everything.is_some_and(|at| at >= mark)
    }

    /// The tables (lowercase) written after `mark` was taken.
    pub fn since(&self, mark: u64) -> std::collections::BTreeSet<String> {
        let log = self.log();
        log.written
            .iter()
            .filter(|(_, last)| **last >= mark)
            .map(|(name, _)| name.to_lowercase())
            .collect()
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

/// `tenantgate_digest(text)`, an aggregate function of the SQLite connections that
/// fingerprint tables: the sum of its values' 64-bit hashes, as 32 hex digits, and the
/// number of values (`…:3`) — the same for the same multiset of values in any order, so
/// nothing is sorted, and computed where the rows are, so none crosses sqlx's channel.
mod sqlite_digest {
    use std::ffi::c_int;
    use std::hash::{Hash, Hasher};

    use libsqlite3_sys as ffi;
    use sqlx::SqliteConnection;

    pub const NAME: &str = "tenantgate_digest";

    /// Registers the function on `conn` (again: it replaces itself).
    pub async fn register(conn: &mut SqliteConnection) -> anyhow::Result<()> {
        let mut handle = conn.lock_handle().await?;
        let db = handle.as_raw_handle().as_ptr();
        // SAFETY: `db` is the open connection, locked for this call; the callbacks keep no
        // pointer past the call they get it in.
        let code = unsafe {
            ffi::sqlite3_create_function_v2(
                db,
                c"tenantgate_digest".as_ptr(),
                1,
                ffi::SQLITE_UTF8 | ffi::SQLITE_DETERMINISTIC,
                std::ptr::null_mut(),
                None,
                Some(step),
                Some(finish),
                None,
            )
        };
        anyhow::ensure!(
            code == ffi::SQLITE_OK,
            "register the SQLite function {NAME} (error code {code})"
        );
        Ok(())
    }

    /// The running sum (low and high 64 bits) and the number of values.
    #[repr(C)]
    struct Sum {
        low: u64,
        high: u64,
        count: u64,
    }

    unsafe extern "C" fn step(
        context: *mut ffi::sqlite3_context,
        _: c_int,
        values: *mut *mut ffi::sqlite3_value,
    ) {
        // SAFETY: SQLite hands one value (nArg = 1) and zeroed aggregate memory of the size
        // asked for, which outlives the aggregate; a NULL return means out of memory.
        unsafe {
            let sum = ffi::sqlite3_aggregate_context(context, std::mem::size_of::<Sum>() as c_int)
                as *mut Sum;
            if sum.is_null() {
                ffi::sqlite3_result_error_nomem(context);
                return;
            }
            let value = *values;
            let mut hasher = std::hash::DefaultHasher::new();
            if ffi::sqlite3_value_type(value) == ffi::SQLITE_NULL {
                None::<&[u8]>.hash(&mut hasher);
            } else {
                let text = ffi::sqlite3_value_text(value);
                let length = ffi::sqlite3_value_bytes(value) as usize;
                let bytes: &[u8] = if text.is_null() {
                    &[]
                } else {
                    std::slice::from_raw_parts(text, length)
                };
                Some(bytes).hash(&mut hasher);
            }
            let total = (u128::from((*sum).high) << 64 | u128::from((*sum).low))
                .wrapping_add(u128::from(hasher.finish()));
            (*sum).low = total as u64;
            (*sum).high = (total >> 64) as u64;
            (*sum).count += 1;
        }
    }

    unsafe extern "C" fn finish(context: *mut ffi::sqlite3_context) {
        // SAFETY: as in `step`; asking for 0 bytes gives the memory if `step` ever ran,
        // else NULL (no rows: the digest of nothing).
        unsafe {
            let sum = ffi::sqlite3_aggregate_context(context, 0) as *const Sum;
            let (total, count) = if sum.is_null() {
                (0u128, 0u64)
            } else {
                (
                    u128::from((*sum).high) << 64 | u128::from((*sum).low),
                    (*sum).count,
                )
            };
            let text = format!("{total:032x}:{count}");
            ffi::sqlite3_result_text(
                context,
                text.as_ptr() as *const std::ffi::c_char,
                text.len() as c_int,
                ffi::SQLITE_TRANSIENT(),
            );
        }
    }
}

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

/// The rows of a statement built for one use, sent as a simple query ([`Conn::count`]).
async fn simple_query(
    conn: &mut PgConnection,
    sql: sqlx::AssertSqlSafe<String>,
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    sqlx::raw_sql(sql).fetch_all(conn).await
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
