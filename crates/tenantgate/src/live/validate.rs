//! Validation before anything is touched: the database is reachable, its migrations table
//! is readable and clean, it ran exactly the migrations this build embeds (a prefix of
//! them), and a backup has room. Nothing here writes, so a refused run changed nothing.

use std::path::Path;

use sqlx::migrate::Migration;

use super::Source;
use super::report::Check;
use crate::db::Conn;

/// A row of the migrations table.
#[derive(Clone, Debug)]
pub struct Applied {
    pub version: i64,
    pub checksum: Vec<u8>,
    pub success: bool,
}

/// What validation found: the pending migrations, when the database may be migrated.
pub struct Plan<'m> {
    pub checks: Vec<Check>,
    /// The highest applied version.
    pub current: Option<i64>,
    pub pending: Vec<&'m Migration>,
}

impl Plan<'_> {
    pub fn ok(&self) -> bool {
        self.checks
            .iter()
            .all(|c| c.status != super::report::Status::Fail)
    }
}

/// Reads the migrations table; `None` when it does not exist (never creates it).
pub async fn read_applied(conn: &mut Conn, table: &str) -> anyhow::Result<Option<Vec<Applied>>> {
    let exists = match conn {
        Conn::Postgres(conn) => {
            sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
                .bind(table)
                .fetch_one(&mut *conn)
                .await?
        }
        Conn::Sqlite(conn) => {
            sqlx::query_scalar::<_, bool>(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?",
            )
            .bind(table)
            .fetch_one(&mut *conn)
            .await?
        }
    };
    if !exists {
        return Ok(None);
    }
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT version, checksum, success FROM {} ORDER BY version",
        crate::db::quote(table)
    ));
    let rows: Vec<(i64, Vec<u8>, bool)> = match conn {
        Conn::Postgres(conn) => sqlx::query_as(sql).fetch_all(conn).await?,
        Conn::Sqlite(conn) => sqlx::query_as(sql).fetch_all(conn).await?,
    };
    Ok(Some(
        rows.into_iter()
            .map(|(version, checksum, success)| Applied {
                version,
                checksum,
                success,
            })
            .collect(),
    ))
}

/// Compares the applied migrations with the source and lists what is pending (up to
/// `target` when given).
pub fn plan<'m>(
    source: &'m Source<'_>,
    applied: Option<&[Applied]>,
    target: Option<i64>,
) -> Plan<'m> {
    let mut checks = Vec::new();
    let ups: Vec<&Migration> = source.ups().collect();
    let applied = applied.unwrap_or_default();
    checks.push(Check::pass(
        "migrations table",
        if applied.is_empty() {
            format!(
                "`{}` is empty or absent: a new database",
                source.migrator.table_name
            )
        } else {
            format!("{} migrations recorded", applied.len())
        },
    ));

    let dirty: Vec<String> = applied
        .iter()
        .filter(|a| !a.success)
        .map(|a| source.file_of(a.version))
        .collect();
    checks.push(if dirty.is_empty() {
        Check::pass("not dirty", "no migration is recorded as failed")
    } else {
        Check::fail(
            "not dirty",
            format!(
                "{} is recorded as failed (success = false): the database is in an unknown state; \
                 restore the backup taken before it, or repair it by hand and delete its row from `{}`",
                dirty.join(", "),
                source.migrator.table_name
            ),
        )
    });

    let mut mismatched = Vec::new();
    let mut unknown = Vec::new();
    for row in applied {
        match ups.iter().find(|m| m.version == row.version) {
            Some(m) if *m.checksum == *row.checksum => {}
            Some(_) => mismatched.push(source.file_of(row.version)),
            None => unknown.push(format!("{:04}", row.version)),
        }
    }
    checks.push(if mismatched.is_empty() {
        Check::pass(
            "checksums",
            "every applied migration equals the embedded one",
        )
    } else {
        Check::fail(
            "checksums",
            format!(
                "{} differs from what the database applied: the database ran a different build \
                 (previously applied but has been modified); deploy the build that applied it, \
                 never an edited migration",
                mismatched.join(", ")
            ),
        )
    });

    let applied_versions: Vec<i64> = applied.iter().map(|a| a.version).collect();
    let gaps: Vec<String> = ups
        .iter()
        .filter(|m| {
            !applied_versions.contains(&m.version)
                && applied_versions.iter().any(|v| *v > m.version)
        })
        .map(|m| source.file_of(m.version))
        .collect();
    checks.push(if unknown.is_empty() && gaps.is_empty() {
        Check::pass("applied prefix", "the applied migrations are a prefix of the embedded ones")
    } else {
        let mut problems = Vec::new();
        if !unknown.is_empty() {
            problems.push(format!(
                "the database applied {} that this build does not embed: a newer build migrated it; deploy that build or a later one",
                unknown.join(", ")
            ));
        }
        if !gaps.is_empty() {
            problems.push(format!(
                "{} is not applied although later ones are (out of order); apply it by hand after review, or renumber it after the newest",
                gaps.join(", ")
            ));
        }
        Check::fail("applied prefix", problems.join("; "))
    });

    let pending: Vec<&Migration> = ups
        .iter()
        .copied()
        .filter(|m| !applied_versions.contains(&m.version))
        .filter(|m| target.is_none_or(|t| m.version <= t))
        .collect();
    if let Some(t) = target
        && !ups.iter().any(|m| m.version == t)
    {
        checks.push(Check::fail(
            "target",
            format!(
                "--target {t} is not a migration of this build (run `app migrations` to list them)"
            ),
        ));
    }
    checks.push(Check::pass(
        "pending",
        if pending.is_empty() {
            "none: up to date".to_string()
        } else {
            let files: Vec<String> = pending.iter().map(|m| source.file_of(m.version)).collect();
            format!("{}: {}", pending.len(), files.join(", "))
        },
    ));
    Plan {
        checks,
        current: applied_versions.last().copied(),
        pending,
    }
}

/// Free bytes on the file system that holds `dir` (or its nearest existing ancestor).
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let absolute = std::path::absolute(dir).ok()?;
    let mut probe = absolute.as_path();
    while !probe.exists() {
        probe = probe.parent()?;
    }
    let path = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes()).ok()?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stats` a writable statvfs.
    let status = unsafe { libc::statvfs(path.as_ptr(), &mut stats) };
    (status == 0).then(|| stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// The size of what a backup copies: the schema's relations, or the SQLite file.
pub async fn database_bytes(conn: &mut Conn) -> anyhow::Result<u64> {
    Ok(match conn {
        Conn::Postgres(conn) => {
            sqlx::query_scalar::<_, i64>(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'm')",
            )
            .fetch_one(conn)
            .await? as u64
        }
        Conn::Sqlite(conn) => {
            sqlx::query_scalar::<_, i64>(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            )
            .fetch_one(conn)
            .await? as u64
        }
    })
}
