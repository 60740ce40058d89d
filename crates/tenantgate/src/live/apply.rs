//! Applying the pending migrations, one transaction each, under the migration lock; and the
//! dry run, which applies them all inside one transaction and rolls it back.
//!
//! On PostgreSQL every statement runs with `lock_timeout`, so a migration that would queue
//! behind a long transaction (and make every query of the app queue behind it) gives up
//! quickly instead; it is retried with backoff, since each attempt rolls back cleanly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::migrate::{MigrateError, Migration};

use super::Source;
use super::report::{MigrationRun, Status};
use crate::db::Conn;

/// PostgreSQL session limits for the migrating connection.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// `lock_timeout`: how long one statement may wait for a lock.
    pub lock_timeout: Duration,
    /// `statement_timeout` (zero: none).
    pub statement_timeout: Duration,
    /// How many times a migration that hit `lock_timeout` is tried again.
    pub lock_retries: u32,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::ZERO,
            lock_retries: 3,
        }
    }
}

/// Sets the session limits (PostgreSQL); `client_connection_check_interval` (PostgreSQL
/// 14+) makes the server end the session soon after the runner dies, releasing its locks.
pub async fn session_settings(conn: &mut Conn, timeouts: &Timeouts) -> anyhow::Result<()> {
    if let Conn::Postgres(conn) = conn {
        let sql = format!(
            "SET lock_timeout = {}; SET statement_timeout = {}",
            timeouts.lock_timeout.as_millis(),
            timeouts.statement_timeout.as_millis()
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
        let _ = sqlx::raw_sql("SET client_connection_check_interval = 1000")
            .execute(&mut *conn)
            .await;
    }
    Ok(())
}

fn database_error(error: &MigrateError) -> Option<&dyn sqlx::error::DatabaseError> {
    match error {
        MigrateError::ExecuteMigration(sqlx::Error::Database(db), _)
        | MigrateError::Execute(sqlx::Error::Database(db)) => Some(db.as_ref()),
        _ => None,
    }
}

fn lock_timed_out(error: &MigrateError) -> bool {
    database_error(error).is_some_and(|db| db.code().as_deref() == Some("55P03"))
}

/// Errors that a concurrent session caused and a new attempt does not repeat: deadlocks,
/// serialization failures, and catalog rows updated concurrently (two tenant schemas
/// granting on one shared object at once).
fn transient(error: &MigrateError) -> bool {
    database_error(error).is_some_and(|db| {
        matches!(db.code().as_deref(), Some("40001" | "40P01"))
            || db.message().contains("tuple concurrently updated")
    })
}

fn describe(error: &MigrateError) -> String {
    match error {
        MigrateError::ExecuteMigration(inner, _) | MigrateError::Execute(inner) => {
            crate::db::error_text(inner)
        }
        other => other.to_string(),
    }
}

/// Applies `pending` in order; stops at the first failure, which is the last entry.
pub async fn apply(
    conn: &mut Conn,
    source: &Source<'_>,
    pending: &[&Migration],
    timeouts: &Timeouts,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<MigrationRun>> {
    let table = source.migrator.table_name.as_ref();
    conn.ensure_migrations_table(table).await?;
    let mut runs = Vec::new();
    for migration in pending {
        let file = source.file_of(migration.version);
        progress(&format!("applying {file}"));
        let started = Instant::now();
        let mut attempts = 0;
        let error = loop {
            attempts += 1;
            match conn.apply(table, migration).await {
                Ok(_) => break None,
                Err(error) if transient(&error) && attempts <= timeouts.lock_retries => {
                    // Jittered, so parallel schemas do not collide again.
                    let jitter = super::random(200);
                    let backoff = Duration::from_millis(50 + jitter * u64::from(attempts));
                    progress(&format!(
                        "{file} met a concurrent session ({}); retrying (attempt {} of {})",
                        describe(&error),
                        attempts + 1,
                        timeouts.lock_retries + 1
                    ));
                    tokio::time::sleep(backoff).await;
                }
                Err(error) if lock_timed_out(&error) && attempts <= timeouts.lock_retries => {
                    let backoff = Duration::from_secs(1 << (attempts - 1).min(5));
                    progress(&format!(
                        "{file} waited longer than lock_timeout ({} ms) for a lock; retrying in {} s (attempt {} of {})",
                        timeouts.lock_timeout.as_millis(),
                        backoff.as_secs(),
                        attempts + 1,
                        timeouts.lock_retries + 1
                    ));
                    tokio::time::sleep(backoff).await;
                }
                Err(error) => {
                    let mut message = format!("{file} failed: {}", describe(&error));
                    if lock_timed_out(&error) {
                        message.push_str(
                            "; a long transaction holds a lock it needs (see pg_locks); retry when it is gone, or raise --lock-timeout / --lock-retries",
                        );
                    }
                    break Some(message);
                }
            }
        };
        let failed = error.is_some();
        runs.push(MigrationRun {
            version: migration.version,
            file,
            status: if failed { Status::Fail } else { Status::Pass },
            seconds: started.elapsed().as_secs_f64(),
            attempts,
            rows_affected: None,
            locks: Vec::new(),
            error,
        });
        if failed {
            break;
        }
    }
    Ok(runs)
}

/// The relation locks this session holds, outside the system catalogs: relation → mode.
const SESSION_LOCKS: &str = "
SELECT c.relname::text, l.mode
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = pg_backend_pid() AND l.granted AND l.locktype = 'relation'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND c.relkind IN ('r', 'p', 'm', 'v')";

/// PostgreSQL lock modes, weakest first.
pub const LOCK_MODES: [&str; 8] = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

fn strength(mode: &str) -> usize {
    LOCK_MODES.iter().position(|m| *m == mode).unwrap_or(0)
}

/// Applies `pending` inside one transaction and rolls it back. Migrations that cannot run
/// in a transaction (`-- no-transaction`) are reported as not rehearsable, and the ones
/// after them as not rehearsed (they may depend on them).
pub async fn dry_run(
    conn: &mut Conn,
    source: &Source<'_>,
    pending: &[&Migration],
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<MigrationRun>> {
    conn.execute("BEGIN").await?;
    let mut runs = Vec::new();
    let mut held: BTreeMap<String, String> = BTreeMap::new();
    let mut stopped: Option<String> = None;
    for migration in pending {
        let file = source.file_of(migration.version);
        let mut run = MigrationRun {
            version: migration.version,
            file: file.clone(),
            status: Status::Skip,
            seconds: 0.0,
            attempts: 0,
            rows_affected: None,
            locks: Vec::new(),
            error: None,
        };
        if let Some(reason) = &stopped {
            run.error = Some(format!("not rehearsed: {reason}"));
            runs.push(run);
            continue;
        }
        if migration.no_tx {
            run.error = Some(
                "not rehearsable: it runs outside a transaction (-- no-transaction), so it cannot be rolled back"
                    .to_string(),
            );
            stopped = Some(format!("it follows {file}, which was not rehearsed"));
            runs.push(run);
            continue;
        }
        progress(&format!("rehearsing {file}"));
        let started = Instant::now();
        run.attempts = 1;
        let result = match conn {
            Conn::Postgres(c) => sqlx::raw_sql(migration.sql.clone())
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()),
            Conn::Sqlite(c) => sqlx::raw_sql(migration.sql.clone())
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()),
        };
        run.seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(rows) => {
                run.status = Status::Pass;
                run.rows_affected = Some(rows);
                run.locks = match conn {
                    Conn::Postgres(c) => {
                        let locks: Vec<(String, String)> =
                            sqlx::query_as(SESSION_LOCKS).fetch_all(&mut *c).await?;
                        let mut strongest: BTreeMap<String, String> = BTreeMap::new();
                        for (relation, mode) in locks {
                            let entry = strongest.entry(relation).or_insert_with(|| mode.clone());
                            if strength(&mode) > strength(entry) {
                                *entry = mode;
                            }
                        }
                        let mut new = Vec::new();
                        for (relation, mode) in strongest {
                            if held
                                .get(&relation)
                                .is_none_or(|m| strength(&mode) > strength(m))
                            {
                                new.push(format!("{relation}: {mode}"));
                                held.insert(relation, mode);
                            }
                        }
                        new
                    }
                    Conn::Sqlite(_) => vec!["database: write lock".to_string()],
                };
            }
            Err(error) => {
                run.status = Status::Fail;
                run.error = Some(format!("{file} failed: {error}"));
                stopped = Some(format!("{file} failed before it"));
            }
        }
        runs.push(run);
    }
    conn.execute("ROLLBACK")
        .await
        .map_err(|e| anyhow::format_err!("roll back the dry run: {e}"))?;
    Ok(runs)
}
