//! Backups before a run and restoring them when it fails.
//!
//! PostgreSQL: `pg_dump -Fc` of the target schema, taken in a snapshot exported by the
//! runner so the row counts it records are exactly those of the dump; checked with
//! `pg_restore --list`, and with `--verify-restore` restored into a scratch database whose
//! row counts are compared. A restore renames the damaged schema aside, restores into a
//! fresh one, and drops the damaged one only once the restore succeeded.
//!
//! SQLite: `VACUUM INTO` a new file, checked with `PRAGMA integrity_check`; restored in
//! place through SQLite's online backup API, which other connections see atomically.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};

use super::report::BackupInfo;
use super::target::{Target, redacted};
use crate::db::{Conn, Scope, quote};

/// Row counts per table.
pub type Counts = BTreeMap<String, i64>;

/// Counts the rows of every table of the target's schema, which is what its dump holds
/// (the migrations table included: its rows are part of the state a rollback must
/// restore).
pub async fn row_counts(conn: &mut Conn) -> anyhow::Result<Counts> {
    conn.row_counts(&Scope::CurrentSchema, None).await
}

/// Where backups and reports of one target go, and how they are named.
pub struct Files {
    pub dir: PathBuf,
    /// `<target label>-<UTC timestamp>`.
    pub base: String,
}

impl Files {
    pub fn new(dir: &Path, label: &str) -> Files {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%S%.3fZ")
            .to_string();
        Files {
            dir: dir.to_path_buf(),
            base: format!("{label}-{stamp}"),
        }
    }

    pub fn backup(&self, extension: &str) -> PathBuf {
        self.dir.join(format!("{}.{extension}", self.base))
    }

    pub fn report(&self) -> PathBuf {
        self.dir.join(format!("{}.report.json", self.base))
    }
}

/// A PostgreSQL client tool (pg_dump, pg_restore) at least as new as the server.
pub fn pg_tool(name: &str, pg_bin: Option<&Path>, server_major: u32) -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = pg_bin {
        candidates.push(dir.join(name));
    } else {
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|dir| dir.join(name)));
        }
        let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path().join("bin").join(name))
                    .collect()
            })
            .unwrap_or_default();
        versioned.sort_by_key(|path| std::cmp::Reverse(tool_major(path).unwrap_or(0)));
        candidates.extend(versioned);
    }
    let found: Vec<(PathBuf, u32)> = candidates
        .into_iter()
        .filter(|c| c.is_file())
        .filter_map(|c| tool_major(&c).map(|major| (c, major)))
        .collect();
    if let Some(path) = pick_tool(&found, server_major) {
        return Ok(path);
    }
    let too_old: Vec<String> = found
        .iter()
        .map(|(path, major)| format!("{} is version {major}", path.display()))
        .collect();
    let found = if too_old.is_empty() {
        format!("no {name} found")
    } else {
        too_old.join(", ")
    };
    bail!(
        "a backup needs {name} {server_major} or newer (the server is PostgreSQL {server_major}); {found}. \
         Install postgresql-client-{server_major}, pass --pg-bin DIR, or pass --no-backup to migrate without a backup"
    )
}

/// Of the tools found (in search order, with their majors), the one of the server's own
/// major, else the oldest newer one: a newer pg_dump reads an older server, but the SQL a
/// newer pg_restore writes may use settings the older server lacks (`transaction_timeout`
/// from 17 on).
fn pick_tool(found: &[(PathBuf, u32)], server_major: u32) -> Option<PathBuf> {
    found
        .iter()
        .find(|(_, major)| *major == server_major)
        .or_else(|| {
            found
                .iter()
                .filter(|(_, major)| *major > server_major)
                .min_by_key(|(_, major)| *major)
        })
        .map(|(path, _)| path.clone())
}

/// The major version a PostgreSQL client tool (`pg_dump --version`) reports.
pub fn tool_major(path: &Path) -> Option<u32> {
    let output = std::process::Command::new(path)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
    let version = text.split(") ").nth(1)?;
    version.split(['.', ' ']).next()?.trim().parse().ok()
}

/// The connection parameters for libpq tools: the url without its password, and the
/// password for PGPASSWORD (never on a command line, where `ps` shows it).
fn libpq_url(target: &Target) -> (String, Option<String>) {
    let url = &target.url;
    let password = url.split_once("://").and_then(|(_, rest)| {
        let authority = rest.split('/').next().unwrap_or_default();
        let (credentials, _) = authority.rsplit_once('@')?;
        let (_, password) = credentials.split_once(':')?;
        Some(percent_decode(password))
    });
    (redacted(url), password)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a libpq tool against the target's database.
async fn run_pg_tool(tool: &Path, target: &Target, args: &[&str]) -> anyhow::Result<String> {
    let (url, password) = libpq_url(target);
    let mut command = tokio::process::Command::new(tool);
    command.arg(format!("--dbname={url}"));
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    run_tool(command, tool, args).await
}

/// Runs a PostgreSQL tool on a file only (`pg_restore --list`).
async fn run_pg_tool_offline(tool: &Path, args: &[&str]) -> anyhow::Result<String> {
    run_tool(tokio::process::Command::new(tool), tool, args).await
}

/// Runs `command` with `args`; its stdout, or an error with its stderr.
async fn run_tool(
    mut command: tokio::process::Command,
    tool: &Path,
    args: &[&str],
) -> anyhow::Result<String> {
    let output = command
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("run {}", tool.display()))?;
    if !output.status.success() {
        bail!(
            "{} {} failed: {}",
            tool.file_name().unwrap_or_default().to_string_lossy(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn replace_database(url: &str, database: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, format!("?{query}")),
        None => (url, String::new()),
    };
    let (scheme, rest) = head.split_once("://").unwrap_or(("postgres", head));
    let authority = rest.split('/').next().unwrap_or_default();
    format!("{scheme}://{authority}/{database}{query}")
}

/// A `--schema` pattern that matches exactly `schema`.
fn schema_pattern(schema: &str) -> String {
    if schema
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        schema.to_string()
    } else {
        format!("\"{}\"", schema.replace('"', "\"\""))
    }
}

pub async fn current_schema(conn: &mut PgConnection) -> anyhow::Result<String> {
    sqlx::query_scalar::<_, Option<String>>("SELECT current_schema()::text")
        .fetch_one(conn)
        .await?
        .context("the connection has no current schema: set search_path, or pass a schema")
}

/// Writes `<file>.sha256` beside a backup, in sha256sum's format; returns the digest and
/// the file's size.
fn write_checksum(path: &Path) -> anyhow::Result<(String, u64)> {
    let (sha256, bytes) = sha256_file(path)?;
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut sum_path = path.to_path_buf().into_os_string();
    sum_path.push(".sha256");
    std::fs::write(&sum_path, format!("{sha256}  {file_name}\n"))
        .with_context(|| format!("write {}", PathBuf::from(&sum_path).display()))?;
    Ok((sha256, bytes))
}

/// How many entries a `pg_restore --list` table of contents holds.
fn toc_entries(list: &str) -> usize {
    list.lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .count()
}

pub fn sha256_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    let mut bytes = 0;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((crate::manifest::hex(&hasher.finalize()), bytes))
}

/// What `backup` needs to know.
pub struct BackupRequest<'a> {
    pub target: &'a Target,
    pub files: &'a Files,
    pub pg_bin: Option<&'a Path>,
    pub verify_restore: bool,
}

/// Takes and checks a backup; returns it with the row counts of the state it holds.
pub async fn backup(
    conn: &mut Conn,
    request: &BackupRequest<'_>,
) -> anyhow::Result<(BackupInfo, Counts)> {
    let started = Instant::now();
    std::fs::create_dir_all(&request.files.dir)
        .and_then(|()| super::fault::writable())
        .with_context(|| {
            format!(
                "write into the backup folder {} (free space, or choose another with --backup-dir)",
                request.files.dir.display()
            )
        })?;
    let (path, counts, verified_by) = match conn {
        Conn::Postgres(_) => backup_postgres(conn, request).await?,
        Conn::Sqlite(_) => backup_sqlite(conn, request).await?,
    };
    let (sha256, bytes) = write_checksum(&path)?;
    Ok((
        BackupInfo {
            path: path.display().to_string(),
            sha256,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            verified_by,
        },
        counts,
    ))
}

async fn server_major(conn: &mut PgConnection) -> anyhow::Result<u32> {
    let number: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(conn)
        .await?;
    Ok(number.parse::<u32>().unwrap_or(0) / 10000)
}

async fn backup_postgres(
    conn: &mut Conn,
    request: &BackupRequest<'_>,
) -> anyhow::Result<(PathBuf, Counts, Vec<String>)> {
    let Conn::Postgres(main) = conn else {
        unreachable!()
    };
    let major = server_major(main).await?;
    let schema = current_schema(main).await?;
    let pg_dump = pg_tool("pg_dump", request.pg_bin, major)?;
    let pg_restore = pg_tool("pg_restore", request.pg_bin, major)?;
    let path = request.files.backup("dump");

    // A second session exports a snapshot: pg_dump dumps exactly that state, and the
    // row counts are read in it.
    let mut snapshot = Conn::Postgres(
        PgConnection::connect_with(&request.target.pg_options()?)
            .await
            .context("open a second session for the backup snapshot")?,
    );
    snapshot
        .execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let Conn::Postgres(snap) = &mut snapshot else {
        unreachable!()
    };
    let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *snap)
        .await?;
    let counts = row_counts(&mut snapshot).await?;
    let dumped = run_pg_tool(
        &pg_dump,
        request.target,
        &[
            "--format=custom",
            "--no-password",
            &format!("--schema={}", schema_pattern(&schema)),
            &format!("--snapshot={id}"),
            &format!("--file={}", path.display()),
        ],
    )
    .await;
    let _ = snapshot.execute("COMMIT").await;
    snapshot.close().await;
    dumped.with_context(|| format!("back up schema {schema} with pg_dump"))?;

    let list = run_pg_tool_offline(&pg_restore, &["--list", &path.display().to_string()]).await?;
    let entries = toc_entries(&list);
    let mut verified_by = vec![format!("pg_restore --list: {entries} entries")];
    if request.verify_restore {
        verified_by.push(
            verify_restore_postgres(conn, request, &pg_restore, &path, &schema, &counts).await?,
        );
    }
    Ok((path, counts, verified_by))
}

/// The dump's table of contents for `schema`, without the entry that creates it (the
/// restore creates the schema itself), for `pg_restore --use-list`.
async fn restore_list(
    pg_restore: &Path,
    dump: &Path,
    schema: &str,
    dir: &Path,
) -> anyhow::Result<tempfile::NamedTempFile> {
    // `--schema` restricts the list to the schema's entries: a fan-out's dump holds many.
    let list = run_pg_tool_offline(
        pg_restore,
        &[
            "--list",
            &format!("--schema={}", schema_pattern(schema)),
            &dump.display().to_string(),
        ],
    )
    .await?;
    let kept: Vec<&str> = list
        .lines()
        .filter(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            !(words.len() >= 6 && words[3] == "SCHEMA" && words[4] == "-" && words[5] == schema)
        })
        .collect();
    // In the system's temporary folder: a backup folder that filled up must not stop
    // the restore that needs it.
    let _ = dir;
    let file = tempfile::Builder::new()
        .prefix("tenantgate-restore-list-")
        .tempfile()
        .context("write the restore list")?;
    std::fs::write(file.path(), kept.join("\n") + "\n")?;
    Ok(file)
}

/// `pg_restore` of the entries in `list` into the target's database, all or nothing.
async fn restore_listed(
    pg_restore: &Path,
    target: &Target,
    list: &tempfile::NamedTempFile,
    dump: &Path,
) -> anyhow::Result<String> {
    run_pg_tool(
        pg_restore,
        target,
        &[
            "--exit-on-error",
            "--single-transaction",
            "--no-password",
            &format!("--use-list={}", list.path().display()),
            &dump.display().to_string(),
        ],
    )
    .await
}

async fn verify_restore_postgres(
    conn: &mut Conn,
    request: &BackupRequest<'_>,
    pg_restore: &Path,
    dump: &Path,
    schema: &str,
    counts: &Counts,
) -> anyhow::Result<String> {
    let scratch = format!(
        "tenantgate_verify_{}_{}",
        std::process::id(),
        super::random(u64::from(u32::MAX))
    );
    conn.execute(&format!("CREATE DATABASE {}", quote(&scratch)))
        .await
        .context("create a scratch database for --verify-restore (the role needs CREATEDB)")?;
    let result = async {
        let list = restore_list(pg_restore, dump, schema, &request.files.dir).await?;
        let scratch_target = Target {
            url: replace_database(&request.target.url, &scratch),
            backend: crate::Backend::Postgres,
            schema: Some(schema.to_string()),
        };
        let mut scratch_conn = scratch_target.connect(false).await?;
        scratch_conn
            .execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)))
            .await?;
        restore_listed(pg_restore, &scratch_target, &list, dump)
            .await
            .context("restore the backup into a scratch database")?;
        let restored = row_counts(&mut scratch_conn).await?;
        scratch_conn.close().await;
        compare_counts(
            counts,
            &restored,
            "the live database",
            "the restored backup",
        )?;
        anyhow::Ok(format!(
            "restored into a scratch database: {} tables, row counts equal",
            restored.len()
        ))
    }
    .await;
    let _ = conn
        .execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote(&scratch)
        ))
        .await;
    result
}

/// One dump of many tenant schemas, taken by the fan-out before it starts: each schema's
/// run restores its own part of it on failure.
#[derive(Clone, Debug)]
pub struct SharedBackup {
    pub info: BackupInfo,
    /// Every schema's row counts in the dump's snapshot.
    pub counts: BTreeMap<String, Counts>,
}

/// `pg_dump` of every schema of `schemas` in one snapshot, with their row counts in it.
pub async fn backup_schemas(
    base: &Target,
    schemas: &[String],
    files: &Files,
    pg_bin: Option<&Path>,
) -> anyhow::Result<SharedBackup> {
    let started = Instant::now();
    std::fs::create_dir_all(&files.dir).with_context(|| {
        format!(
            "create the backup folder {} (choose another with --backup-dir)",
            files.dir.display()
        )
    })?;
    let mut snapshot = PgConnection::connect_with(&base.pg_options()?)
        .await
        .context("open a session for the backup snapshot")?;
    let major = server_major(&mut snapshot).await?;
    let pg_dump = pg_tool("pg_dump", pg_bin, major)?;
    let pg_restore = pg_tool("pg_restore", pg_bin, major)?;
    let path = files.backup("schemas.dump");
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut snapshot)
        .await?;
    let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut snapshot)
        .await?;
    // The rows are counted in the snapshot by a session of its own, which ends before
    // pg_dump starts: the counts lock every table and index they read until their
    // transaction ends, and pg_dump then needs the lock table's slots for its own.
    let counts = counted_in_snapshot(base, &id, schemas).await;
    let mut args = vec![
        "--format=custom".to_string(),
        "--no-password".to_string(),
        format!("--snapshot={id}"),
        format!("--file={}", path.display()),
    ];
    args.extend(
        schemas
            .iter()
            .map(|s| format!("--schema={}", schema_pattern(s))),
    );
    let arguments: Vec<&str> = args.iter().map(String::as_str).collect();
    let dumped = match counts {
        Ok(_) => run_pg_tool(&pg_dump, base, &arguments).await.map(|_| ()),
        Err(_) => Ok(()),
    };
    let _ = sqlx::raw_sql("COMMIT").execute(&mut snapshot).await;
    let _ = snapshot.close().await;
    let counts = counts.context("count the rows of the tenant schemas")?;
    dumped.with_context(|| format!("back up {} schemas with pg_dump", schemas.len()))?;
    let list = run_pg_tool_offline(&pg_restore, &["--list", &path.display().to_string()]).await?;
    let entries = toc_entries(&list);
    let (sha256, bytes) = write_checksum(&path)?;
    Ok(SharedBackup {
        info: BackupInfo {
            path: path.display().to_string(),
            sha256,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            verified_by: vec![format!(
                "pg_restore --list: {entries} entries for {} schemas",
                schemas.len()
            )],
        },
        counts,
    })
}

/// The row counts of `schemas` in the exported snapshot `id`, by a session that ends
/// when they are read (and with it the locks they took).
async fn counted_in_snapshot(
    base: &Target,
    id: &str,
    schemas: &[String],
) -> anyhow::Result<BTreeMap<String, Counts>> {
    let mut conn = PgConnection::connect_with(&base.pg_options()?)
        .await
        .context("open a session to count the rows in the backup snapshot")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
        crate::db::literal(id)
    )))
    .execute(&mut conn)
    .await?;
    let counts = schema_row_counts(&mut conn, schemas).await;
    let _ = sqlx::raw_sql("COMMIT").execute(&mut conn).await;
    let _ = conn.close().await;
    counts
}

/// `schemas` split into as few dumps as the server's shared lock table allows: a dump
/// locks every table it holds until it ends (pg_dump locks tables, not their indexes or
/// sequences), and the table has `max_locks_per_transaction × (max_connections + max_prepared_transactions)`
/// slots for every session together. A quarter of them is left to one dump. `at_most`
/// caps a dump's schemas further.
pub async fn dump_batches(
    base: &Target,
    schemas: &[String],
    at_most: Option<usize>,
) -> anyhow::Result<Vec<Vec<String>>> {
    let mut conn = PgConnection::connect_with(&base.pg_options()?)
        .await
        .context("connect to size the backup")?;
    let (slots, relations): (i64, i64) = sqlx::query_as(
        "SELECT current_setting('max_locks_per_transaction')::bigint * \
                (current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint), \
                (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p'))",
    )
    .bind(schemas)
    .fetch_one(&mut conn)
    .await
    .context("read the server's lock table size")?;
    let _ = conn.close().await;
    let per_schema = (relations / schemas.len().max(1) as i64).max(1);
    let per_dump = ((slots / 4) / per_schema).max(1) as usize;
    let per_dump = at_most.map_or(per_dump, |at_most| per_dump.min(at_most.max(1)));
    Ok(schemas.chunks(per_dump).map(<[String]>::to_vec).collect())
}

/// The row counts of every table of every schema, a few hundred tables per query.
async fn schema_row_counts(
    conn: &mut PgConnection,
    schemas: &[String],
) -> anyhow::Result<BTreeMap<String, Counts>> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') ORDER BY 1, 2",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await?;
    let mut counts: BTreeMap<String, Counts> =
        schemas.iter().map(|s| (s.clone(), Counts::new())).collect();
    for batch in tables.chunks(500) {
        let sql: Vec<String> = batch
            .iter()
            .map(|(schema, table)| {
                format!(
                    "SELECT {}::text, {}::text, count(*) FROM {}.{}",
                    crate::db::literal(schema),
                    crate::db::literal(table),
                    quote(schema),
                    quote(table)
                )
            })
            .collect();
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql.join(" UNION ALL ")))
                .fetch_all(&mut *conn)
                .await?;
        for (schema, table, count) in rows {
            counts.entry(schema).or_default().insert(table, count);
        }
    }
    Ok(counts)
}

/// Fails naming every table whose count differs.
pub fn compare_counts(
    expected: &Counts,
    actual: &Counts,
    left: &str,
    right: &str,
) -> anyhow::Result<()> {
    let mut differences = Vec::new();
    for (table, count) in expected {
        match actual.get(table) {
            Some(other) if other == count => {}
            Some(other) => differences.push(format!(
                "{table}: {count} rows in {left}, {other} in {right}"
            )),
            None => differences.push(format!(
                "{table}: {count} rows in {left}, missing from {right}"
            )),
        }
    }
    for table in actual.keys().filter(|t| !expected.contains_key(*t)) {
        differences.push(format!("{table}: in {right} only"));
    }
    if differences.is_empty() {
        Ok(())
    } else {
        bail!("row counts differ: {}", differences.join("; "))
    }
}

async fn backup_sqlite(
    conn: &mut Conn,
    request: &BackupRequest<'_>,
) -> anyhow::Result<(PathBuf, Counts, Vec<String>)> {
    let path = request.files.backup("sqlite");
    let counts = row_counts(conn).await?;
    let literal = path.display().to_string().replace('\'', "''");
    conn.execute(&format!("VACUUM INTO '{literal}'"))
        .await
        .with_context(|| format!("back up to {} with VACUUM INTO", path.display()))?;
    let options = SqliteConnectOptions::new().filename(&path).read_only(true);
    let mut copy = Conn::Sqlite(SqliteConnection::connect_with(&options).await?);
    let integrity = copy.texts("PRAGMA integrity_check").await?;
    let mut verified_by = Vec::new();
    if integrity != ["ok"] {
        copy.close().await;
        bail!(
            "the backup {} fails PRAGMA integrity_check: {}",
            path.display(),
            integrity.join("; ")
        );
    }
    verified_by.push("PRAGMA integrity_check: ok".to_string());
    if request.verify_restore {
        let restored = row_counts(&mut copy).await?;
        compare_counts(&counts, &restored, "the live database", "the backup")?;
        verified_by.push(format!(
            "opened: {} tables, row counts equal",
            restored.len()
        ));
    }
    copy.close().await;
    Ok((path, counts, verified_by))
}

/// Restores `backup` over the target.
pub async fn restore(
    conn: &mut Conn,
    target: &Target,
    backup: &Path,
    pg_bin: Option<&Path>,
) -> anyhow::Result<()> {
    match conn {
        Conn::Postgres(main) => {
            let major = server_major(main).await?;
            let schema = current_schema(main).await?;
            let pg_restore = pg_tool("pg_restore", pg_bin, major)?;
            let dir = backup.parent().unwrap_or(Path::new("."));
            let list = restore_list(&pg_restore, backup, &schema, dir).await?;
            let aside = format!(
                "{}_failed_{}",
                &schema[..schema.len().min(40)],
                std::process::id()
            );
            let owner: String = sqlx::query_scalar(
                "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = $1",
            )
            .bind(&schema)
            .fetch_one(&mut *main)
            .await?;
            // The restore as one transaction, run by psql (the archive's data is COPY
            // text): the failed schema moves aside, the backup is restored in its place,
            // the failed one is dropped, and nothing of it is visible until COMMIT. A run
            // killed during the restore leaves the database as the failure left it, never
            // half restored, and psql finishes or aborts it on its own.
            let psql = pg_tool("psql", pg_bin, major)?;
            let head = format!(
                "\\set ON_ERROR_STOP on\nBEGIN;\nALTER SCHEMA {s} RENAME TO {a};\nCREATE SCHEMA {s} AUTHORIZATION {o};\n",
                s = quote(&schema),
                a = quote(&aside),
                o = quote(&owner),
            );
            let tail = format!("\nDROP SCHEMA {} CASCADE;\nCOMMIT;\n", quote(&aside));
            restore_in_one_transaction(&pg_restore, &psql, target, &list, backup, &head, &tail, major)
                .await
                .with_context(|| {
                    format!(
                        "restore {} into schema {schema} (in one transaction: the schema was left as it was after the failure)",
                        backup.display()
                    )
                })
        }
        Conn::Sqlite(main) => restore_sqlite(main, backup).await,
    }
}

/// `pg_restore` of the listed entries as SQL, piped into `psql` between `head` and
/// `tail`, which open and commit one transaction: no file is written, and a runner killed
/// mid-way closes psql's input before COMMIT, which the server then rolls back.
#[allow(clippy::too_many_arguments)]
async fn restore_in_one_transaction(
    pg_restore: &Path,
    psql: &Path,
    target: &Target,
    list: &tempfile::NamedTempFile,
    backup: &Path,
    head: &str,
    tail: &str,
    server_major: u32,
) -> anyhow::Result<()> {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut dump = tokio::process::Command::new(pg_restore)
        .arg(format!("--use-list={}", list.path().display()))
        .arg("--file=-")
        .arg(backup)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("run {}", pg_restore.display()))?;
    let (url, password) = libpq_url(target);
    let mut load = tokio::process::Command::new(psql);
    load.arg(format!("--dbname={url}"))
        .args(["--no-psqlrc", "--quiet", "--no-password", "--file=-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(password) = password {
        load.env("PGPASSWORD", password);
    }
    let mut load = load
        .spawn()
        .with_context(|| format!("run {}", psql.display()))?;
    let mut input = load.stdin.take().context("psql's input")?;
    let mut output = BufReader::new(dump.stdout.take().context("pg_restore's output")?);
    let pumped: anyhow::Result<()> = async {
        input.write_all(head.as_bytes()).await?;
        let mut line = Vec::new();
        loop {
            line.clear();
            if output.read_until(b'\n', &mut line).await? == 0 {
                break;
            }
            // A newer pg_restore writes settings an older server does not have.
            if server_major < 17 && line.starts_with(b"SET transaction_timeout") {
                continue;
            }
            input.write_all(&line).await?;
        }
        let restored = dump.wait_with_output().await?;
        if !restored.status.success() {
            bail!(
                "pg_restore failed: {}",
                String::from_utf8_lossy(&restored.stderr).trim()
            );
        }
        input.write_all(tail.as_bytes()).await?;
        input.shutdown().await?;
        Ok(())
    }
    .await;
    drop(input);
    let loaded = load.wait_with_output().await?;
    // psql's error first: when it stops on one, writing to it fails too.
    if !loaded.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&loaded.stderr).trim()
        );
    }
    pumped
}

async fn restore_sqlite(main: &mut SqliteConnection, backup: &Path) -> anyhow::Result<()> {
    use libsqlite3_sys as ffi;
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(backup)
        .read_only(true);
    let mut source = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("open the backup {}", backup.display()))?;
    for attempt in 0..50 {
        let mut destination = main.lock_handle().await?;
        let mut from = source.lock_handle().await?;
        let destination_db = destination.as_raw_handle().as_ptr();
        let source_db = from.as_raw_handle().as_ptr();
        // SAFETY: both handles are open connections locked for our exclusive use for the
        // duration of this block; the backup object is finished before they are released.
        let (code, message) = unsafe {
            let backup = ffi::sqlite3_backup_init(
                destination_db,
                c"main".as_ptr(),
                source_db,
                c"main".as_ptr(),
            );
            if backup.is_null() {
                let message = std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(destination_db));
                (ffi::SQLITE_ERROR, message.to_string_lossy().into_owned())
            } else {
                let step = ffi::sqlite3_backup_step(backup, -1);
                ffi::sqlite3_backup_finish(backup);
                let message = std::ffi::CStr::from_ptr(ffi::sqlite3_errstr(step));
                (step, message.to_string_lossy().into_owned())
            }
        };
        drop(from);
        drop(destination);
        match code {
            ffi::SQLITE_DONE => {
                source.close().await?;
                return Ok(());
            }
            ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED if attempt < 49 => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            _ => bail!(
                "restore {} with the SQLite backup API: {message}",
                backup.display()
            ),
        }
    }
    unreachable!("the loop returns or fails on its last attempt")
}

/// Whether `name` is a backup file of exactly `label`: `<label>-<timestamp>.dump|sqlite`,
/// the timestamp as [`Files::new`] writes it. A label that merely starts the name (another
/// database `qa_p-2` beside `qa_p`) is another target's.
pub fn is_backup_of(name: &str, label: &str) -> bool {
    let Some(rest) = name.strip_prefix(label).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let Some(stamp) = rest
        .strip_suffix(".dump")
        .or_else(|| rest.strip_suffix(".sqlite"))
    else {
        return false;
    };
    // 20261201T101010.123Z
    let bytes = stamp.as_bytes();
    bytes.len() == 20
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[8] == b'T'
        && bytes[9..15].iter().all(u8::is_ascii_digit)
        && bytes[15] == b'.'
        && bytes[16..19].iter().all(u8::is_ascii_digit)
        && bytes[19] == b'Z'
}

/// Removes all but the newest `keep` backups of `label` in `dir`, with their checksums and
/// reports; returns what it removed.
pub fn prune(dir: &Path, label: &str, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_backup_of(&p.file_name().unwrap_or_default().to_string_lossy(), label))
        .collect();
    backups.sort();
    let mut removed = Vec::new();
    let excess = backups.len().saturating_sub(keep);
    for backup in backups.into_iter().take(excess) {
        let stem = backup.with_extension("");
        let mut sum = backup.clone().into_os_string();
        sum.push(".sha256");
        let mut report = stem.into_os_string();
        report.push(".report.json");
        for path in [backup, PathBuf::from(sum), PathBuf::from(report)] {
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("remove {}", path.display()))?;
                removed.push(path);
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::{is_backup_of, pick_tool, prune};
    use std::path::PathBuf;

    #[test]
    fn the_tool_of_the_servers_own_major_is_picked_else_the_oldest_newer_one() {
        let found = vec![
            (PathBuf::from("/usr/bin/pg_dump"), 18),
            (PathBuf::from("/usr/lib/postgresql/17/bin/pg_dump"), 17),
            (PathBuf::from("/usr/lib/postgresql/15/bin/pg_dump"), 15),
        ];
        let pick = |major| pick_tool(&found, major).map(|p| p.display().to_string());
        assert_eq!(
            pick(15).as_deref(),
            Some("/usr/lib/postgresql/15/bin/pg_dump")
        );
        assert_eq!(
            pick(16).as_deref(),
            Some("/usr/lib/postgresql/17/bin/pg_dump")
        );
        assert_eq!(pick(18).as_deref(), Some("/usr/bin/pg_dump"));
        assert_eq!(pick(19), None);
    }

    #[test]
    fn a_backup_is_this_targets_only_when_its_name_is_the_label_and_a_timestamp() {
        assert!(is_backup_of("qa_p-20261201T101010.123Z.dump", "qa_p"));
        assert!(is_backup_of(
            "shop.1a2b3c4d-20261201T101010.123Z.sqlite",
            "shop.1a2b3c4d"
        ));
        // Another database whose name starts with this one's.
        assert!(!is_backup_of("qa_p-2-20261201T101010.123Z.dump", "qa_p"));
        assert!(!is_backup_of("qa_p_old-20261201T101010.123Z.dump", "qa_p"));
        assert!(!is_backup_of(
            "qa_p-20261201T101010.123Z.report.json",
            "qa_p"
        ));
        assert!(!is_backup_of("qa_p-notes.dump", "qa_p"));
    }

    #[test]
    fn pruning_keeps_the_newest_and_never_touches_another_targets_backups() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "qa_p-20261201T100000.000Z.dump",
            "qa_p-20261201T110000.000Z.dump",
            "qa_p-20261201T120000.000Z.dump",
            "qa_p-2-20261201T090000.000Z.dump",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::write(dir.path().join("qa_p-20261201T100000.000Z.dump.sha256"), "").unwrap();
        let removed = prune(dir.path(), "qa_p", 2).unwrap();
        let removed: Vec<String> = removed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            removed,
            [
                "qa_p-20261201T100000.000Z.dump",
                "qa_p-20261201T100000.000Z.dump.sha256"
            ]
        );
        assert!(dir.path().join("qa_p-2-20261201T090000.000Z.dump").exists());
        assert!(dir.path().join("qa_p-20261201T120000.000Z.dump").exists());
    }
}
