//! The migration lock: no two runners apply to one target at once. A second runner waits
//! (up to `--wait-for-lock`), saying who holds the lock, then fails clearly.
//!
//! PostgreSQL: a session advisory lock. For a whole database it is sqlx's own key (the
//! CRC-32 of the database name), so `app migrate`, `sqlx migrate run` and any app calling
//! `sqlx::migrate!().run()` exclude one another; each tenant schema has its own key, so
//! schemas migrate in parallel. The server releases it when the session ends, also when the
//! runner is killed. SQLite (no advisory locks): an exclusive lock on a file beside the
//! database, which the kernel releases when the process dies.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::PgConnection;

use super::target::Target;
use crate::db::Conn;

pub enum RunnerLock {
    Postgres { key: i64 },
    Sqlite { file: File, path: PathBuf },
}

/// sqlx's `generate_lock_id`, so the runner and sqlx take the same lock.
fn advisory_key(name: &str) -> i64 {
    const CRC_IEEE: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32ad9e * (CRC_IEEE.checksum(name.as_bytes()) as i64)
}

const HOLDER: &str = "
SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'),
       extract(epoch FROM now() - a.backend_start)::float8
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid::bigint = (($1::bigint >> 32) & 4294967295) AND l.objid::bigint = ($1::bigint & 4294967295)
LIMIT 1";

impl RunnerLock {
    /// Takes the lock, waiting up to `wait`; `waiting` is told once who holds it.
    pub async fn acquire(
        conn: &mut Conn,
        target: &Target,
        wait: Duration,
        waiting: &mut dyn FnMut(&str),
    ) -> anyhow::Result<RunnerLock> {
        let started = Instant::now();
        match conn {
            Conn::Postgres(conn) => {
                let database: String = sqlx::query_scalar("SELECT current_database()")
                    .fetch_one(&mut *conn)
                    .await?;
                let key = match &target.schema {
                    Some(schema) => advisory_key(&format!("{database}/{schema}")),
                    None => advisory_key(&database),
                };
                let mut told = false;
                loop {
                    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                        .bind(key)
                        .fetch_one(&mut *conn)
                        .await
                        .context("take the migration lock")?;
                    if got {
                        return Ok(RunnerLock::Postgres { key });
                    }
                    let holder = pg_holder(conn, key).await;
                    if !told {
                        waiting(&format!(
                            "waiting up to {:.0} s for the migration lock of {}, held by {holder}",
                            wait.as_secs_f64(),
                            target.label()
                        ));
                        told = true;
                    }
                    if started.elapsed() >= wait {
                        anyhow::bail!(
                            "another runner holds the migration lock of {} ({holder}) and did not release it within {:.0} s; \
                             wait for it to finish (see pg_stat_activity), or pass a longer --wait-for-lock",
                            target.label(),
                            wait.as_secs_f64()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Conn::Sqlite(_) => {
                let database = target.sqlite_file()?;
                let mut path = database.clone().into_os_string();
                path.push(".migrate-lock");
                let path = PathBuf::from(path);
                let mut told = false;
                loop {
                    let mut file = OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .read(true)
                        .write(true)
                        .open(&path)
                        .with_context(|| format!("open the lock file {}", path.display()))?;
                    match file.try_lock() {
                        Ok(()) => {
                            // The previous holder removes the file before unlocking it; a
                            // lock on a removed file is no lock: open the path again.
                            if same_file(&file, &path) {
                                file.set_len(0)?;
                                writeln!(file, "pid {}", std::process::id())?;
                                return Ok(RunnerLock::Sqlite { file, path });
                            }
                            continue;
                        }
                        Err(std::fs::TryLockError::WouldBlock) => {}
                        Err(std::fs::TryLockError::Error(error)) => {
                            return Err(error).with_context(|| {
                                format!("lock {} (the migration lock)", path.display())
                            });
                        }
                    }
                    let holder = std::fs::read_to_string(&path)
                        .map(|text| format!("process {}", text.trim().trim_start_matches("pid ")))
                        .unwrap_or_else(|_| "another process".to_string());
                    if !told {
                        waiting(&format!(
                            "waiting up to {:.0} s for the migration lock {}, held by {holder}",
                            wait.as_secs_f64(),
                            path.display()
                        ));
                        told = true;
                    }
                    if started.elapsed() >= wait {
                        anyhow::bail!(
                            "another runner ({holder}) holds the migration lock {} and did not release it within {:.0} s; \
                             wait for it to finish, or pass a longer --wait-for-lock",
                            path.display(),
                            wait.as_secs_f64()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Releases the lock (also released when the session or process ends).
    pub async fn release(self, conn: &mut Conn) {
        match (self, conn) {
            (RunnerLock::Postgres { key }, Conn::Postgres(conn)) => {
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(key)
                    .execute(conn)
                    .await;
            }
            (RunnerLock::Sqlite { file, path }, _) => {
                let _ = std::fs::remove_file(&path);
                let _ = file.unlock();
            }
            _ => {}
        }
    }
}

async fn pg_holder(conn: &mut PgConnection, key: i64) -> String {
    let row: Option<(i32, String, String, f64)> = sqlx::query_as(HOLDER)
        .bind(key)
        .fetch_optional(conn)
        .await
        .ok()
        .flatten();
    match row {
        Some((pid, application, host, seconds)) => format!(
            "server process {pid} ({}, from {host}, connected {seconds:.0} s ago)",
            if application.is_empty() {
                "no application_name"
            } else {
                application.as_str()
            }
        ),
        None => "another session".to_string(),
    }
}

fn same_file(file: &File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.ino() == named.ino() && open.dev() == named.dev(),
        _ => false,
    }
}
