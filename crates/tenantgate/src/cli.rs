//! The command line an app's binary runs (`tenantgate::cli::main(&APP)` is the whole of
//! its `main`): operators use it to apply, verify and inspect the migrations it embeds.
//! A test binary drives the same command line over scratch migrations by handing it
//! another [`App`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::config::parse_duration;
use crate::live::fanout::{Fanout, Progress};
use crate::live::{Options, Source, Target, Timeouts};
use crate::status::State;
use crate::{App, Backend};

#[derive(Parser)]
#[command(about = "Applies and checks the database migrations this binary embeds (Tenantgate)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the pending migrations embedded in this binary, safely: validate, back up,
    /// apply under a lock with timeouts, verify, and roll back on failure.
    Migrate(MigrateArgs),
    /// Verify a database without changing it: version, drift from the embedded schema,
    /// tenancy rules, foreign keys. Exits 1 on any failure.
    Verify {
        /// Database to verify: postgres://… or sqlite:path.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// A PostgreSQL schema to verify instead of the connection's default one.
        #[arg(long)]
        schema: Option<String>,
        /// Output: a table and verdict, or the JSON report.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Also write the JSON report to this file.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Show applied and pending migrations, and checksum mismatches; exits 1 on a mismatch.
    Status {
        /// Database to inspect: postgres://… or sqlite:path.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// List the migrations this binary embeds, with their checksums.
    Migrations,
    /// Check that this binary is the one a release manifest describes (its sha256, its
    /// migrations' checksums, its schema snapshots, and that every gate passed).
    VerifyManifest {
        /// The manifest written by `cargo xtask release` (app.manifest.json).
        manifest: std::path::PathBuf,
        /// The binary to check [default: this one].
        #[arg(long)]
        binary: Option<std::path::PathBuf>,
    },
}

/// How a report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// Database to migrate: postgres://… or sqlite:path.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Rehearse: apply the pending migrations in a transaction, report, and roll it back.
    #[arg(long)]
    dry_run: bool,
    /// Do not back up first (a failed run is then reverted with the down migrations).
    #[arg(long)]
    no_backup: bool,
    /// Where backups, their sha256 files and the JSON reports are written.
    #[arg(long, default_value = "backups")]
    backup_dir: PathBuf,
    /// Also restore the backup into a scratch database (or open it) and compare row counts.
    #[arg(long)]
    verify_restore: bool,
    /// Once the run has verified, keep only the newest N backups of this database (or
    /// schema), this run's among them (at least 1).
    #[arg(long, value_parser = parse_keep)]
    keep: Option<usize>,
    /// Leave a failed run's database as the failure left it (no automatic rollback).
    #[arg(long)]
    no_rollback: bool,
    /// Apply up to this version (included) instead of every pending migration.
    #[arg(long)]
    target: Option<i64>,
    /// PostgreSQL lock_timeout of every migration statement (e.g. 5s, 500ms; 0: none).
    #[arg(long, default_value = "5s", value_parser = parse_pg_timeout)]
    lock_timeout: Duration,
    /// PostgreSQL statement_timeout of every migration statement (0: none).
    #[arg(long, default_value = "0", value_parser = parse_pg_timeout)]
    statement_timeout: Duration,
    /// How often a migration that hit lock_timeout is retried, with backoff.
    #[arg(long, default_value_t = 3)]
    lock_retries: u32,
    /// How long to wait for another runner's migration lock before giving up.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    wait_for_lock: Duration,
    /// Folder holding pg_dump and pg_restore [default: PATH, then /usr/lib/postgresql/*/bin].
    #[arg(long)]
    pg_bin: Option<PathBuf>,
    /// Write the JSON report here [default: beside the backup].
    #[arg(long)]
    report: Option<PathBuf>,
    /// Output: a table and verdict, or the JSON report.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Migrate every PostgreSQL schema whose name matches this LIKE pattern (e.g. tenant_%).
    #[arg(long)]
    tenant_schemas: Option<String>,
    /// With --tenant-schemas: how many schemas are migrated at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// With --tenant-schemas: start no further schema after the first failure.
    #[arg(long)]
    fail_fast: bool,
    /// With --tenant-schemas: at most N schemas in one backup dump (fewer when the server's lock table needs); migrating starts as soon as the first dump is taken.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    schemas_per_dump: Option<u32>,
}

/// SIGINT and SIGTERM, listened for from the moment this is made (not from a task's first
/// poll, which a signal arriving early would beat).
struct StopSignals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Resolves on the next SIGINT or SIGTERM; false if neither can be listened for.
    async fn next(&mut self) -> bool {
        async fn one(signal: Option<&mut tokio::signal::unix::Signal>) -> bool {
            match signal {
                Some(signal) => signal.recv().await.is_some(),
                None => std::future::pending().await,
            }
        }
        if self.interrupt.is_none() && self.terminate.is_none() {
            return false;
        }
        tokio::select! {
            received = one(self.interrupt.as_mut()) => received,
            received = one(self.terminate.as_mut()) => received,
        }
    }
}

/// Cancels the statement PostgreSQL backend `pid` runs, from a second connection.
async fn cancel_backend(url: &str, pid: i32) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
        let _ = sqlx::query("SELECT pg_cancel_backend($1)")
            .bind(pid)
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}

/// `--keep N`: N ≥ 1, since the backup a run takes is its way back.
fn parse_keep(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err(
            "--keep 0 would delete the backup this run takes, its only way back; keep at least 1"
                .to_string(),
        ),
        Ok(keep) => Ok(keep),
        Err(_) => Err(format!("`{text}` is not a number of backups")),
    }
}

/// The longest timeout PostgreSQL takes: its timeouts are milliseconds in an `int`.
const PG_TIMEOUT_MAX: Duration = Duration::from_millis(i32::MAX as u64);

/// A PostgreSQL timeout: whole milliseconds, 0 for none, at most about 24.8 days.
fn parse_pg_timeout(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Ok(duration);
    }
    if duration < Duration::from_millis(1) {
        return Err(format!(
            "`{text}` is below PostgreSQL's 1 ms resolution and would become 0, which means no timeout at all; write 1ms or more, or 0 for none"
        ));
    }
    if duration > PG_TIMEOUT_MAX {
        return Err(format!(
            "`{text}` is longer than PostgreSQL's largest timeout ({} days); write less, or 0 for none",
            PG_TIMEOUT_MAX.as_secs() / 86_400
        ));
    }
    Ok(duration)
}

/// Parses the command line and runs it over what `app` embeds: the whole of an app's `main`.
pub fn main(app: &App<'_>) -> ExitCode {
    let command = Cli::command()
        .name(app.name.to_string())
        .bin_name(app.name.to_string())
        .version(app.version.to_string());
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let config = match app.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.command.run(app, &config)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    async fn run(self, app: &App<'_>, config: &Config) -> anyhow::Result<ExitCode> {
        match self {
            Command::Migrate(args) => args.run(app, config).await,
            Command::Verify {
                database_url,
                schema,
                format,
                report,
            } => {
                let mut target = Target::new(&database_url)?;
                if let Some(schema) = schema {
                    target = target.in_schema(&schema);
                }
                let source = Source::of(app, target.backend)?;
                let result = crate::live::verify_database(&source, config, &target).await;
                if let Some(path) = &report {
                    result
                        .write_json(path)
                        .with_context(|| format!("write the report {}", path.display()))?;
                }
                match format {
                    Format::Human => print!("{}", result.render()),
                    Format::Json => println!("{}", serde_json::to_string_pretty(&result)?),
                }
                Ok(exit(result.outcome.ok()))
            }
            Command::Status { database_url } => print_status(app, &database_url).await,
            Command::Migrations => {
                for backend in app.backends() {
                    let migrator = app.embedded(backend).expect("embedded").migrator;
                    for migration in migrator.iter() {
                        let kind = if migration.migration_type.is_up_migration() {
                            "up"
                        } else {
                            "down"
                        };
                        println!(
                            "{backend}\t{:04}\t{kind}\t{}\t{}",
                            migration.version,
                            migration.description,
                            hex(&migration.checksum)
                        );
                    }
                }
                Ok(std::process::ExitCode::SUCCESS)
            }
            Command::VerifyManifest { manifest, binary } => verify_manifest(app, &manifest, binary),
        }
    }
}

fn verify_manifest(
    app: &App<'_>,
    path: &std::path::Path,
    binary: Option<std::path::PathBuf>,
) -> anyhow::Result<std::process::ExitCode> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the manifest {}", path.display()))?;
    let manifest: crate::manifest::Manifest = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a release manifest written by `cargo xtask release`",
            path.display()
        )
    })?;
    let binary = match binary {
        Some(binary) => binary,
        None => std::env::current_exe().context("locate this binary")?,
    };
    let findings = crate::manifest::verify(app, &manifest, &binary);
    for finding in &findings {
        println!(
            "{:4}  {:16}  {}",
            if finding.ok { "ok" } else { "FAIL" },
            finding.check,
            finding.detail
        );
    }
    let failed: Vec<&str> = findings.iter().filter(|f| !f.ok).map(|f| f.check).collect();
    if failed.is_empty() {
        println!(
            "verify-manifest: PASS — {} is {} {} at {}, as released",
            binary.display(),
            manifest.app.name,
            manifest.app.version,
            &manifest.git.commit[..manifest.git.commit.len().min(12)]
        );
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        println!(
            "verify-manifest: FAIL — {} does not match {} ({}); do not deploy it",
            binary.display(),
            path.display(),
            failed.join(", ")
        );
        Ok(std::process::ExitCode::FAILURE)
    }
}

async fn print_status(app: &App<'_>, database_url: &str) -> anyhow::Result<ExitCode> {
    let rows = crate::status::status(app, database_url)
        .await
        .context("read the migrations table")?;
    let mut mismatches = 0;
    println!("{:>7}  {:<40}  state", "version", "migration");
    for row in &rows {
        let state = match row.state {
            State::Applied => "applied",
            State::Pending => "pending",
            State::ChecksumMismatch => {
                "CHECKSUM MISMATCH: the database ran a different build of this migration"
            }
            State::Unknown => {
                "UNKNOWN: applied by a build that embeds a migration this one does not"
            }
            State::Dirty => "DIRTY: recorded as failed; repair the database before migrating",
        };
        if !matches!(row.state, State::Applied | State::Pending) {
            mismatches += 1;
        }
        println!("{:>7}  {:<40}  {state}", row.version, row.description);
    }
    let applied = rows.iter().filter(|r| r.state == State::Applied).count();
    let pending = rows.iter().filter(|r| r.state == State::Pending).count();
    println!("{applied} applied, {pending} pending, {mismatches} mismatched");
    Ok(if mismatches == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

fn hex(bytes: &[u8]) -> String {
    crate::manifest::hex(bytes)
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

impl MigrateArgs {
    async fn run(self, app: &App<'_>, config: &Config) -> anyhow::Result<ExitCode> {
        let target = Target::new(&self.database_url)?;
        let source = Source::of(app, target.backend)?;
        let source = &source;
        let options = Options {
            dry_run: self.dry_run,
            backup: !self.no_backup,
            backup_dir: self.backup_dir.clone(),
            verify_restore: self.verify_restore,
            keep: self.keep,
            rollback: !self.no_rollback,
            target: self.target,
            timeouts: Timeouts {
                lock_timeout: self.lock_timeout,
                statement_timeout: self.statement_timeout,
                lock_retries: self.lock_retries,
            },
            wait_for_lock: self.wait_for_lock,
            pg_bin: self.pg_bin.clone(),
            report: self.report.clone(),
            ..Options::default()
        };
        // SIGINT or SIGTERM (what systemd and Kubernetes send): cancel the statement being
        // applied, stop before the next migration, roll back, report. Another signal does
        // not cut the rollback short: a run killed mid-rollback is what must never happen.
        let interrupted = Arc::clone(&options.interrupted);
        let applying = Arc::clone(&options.applying_backend);
        let url = target.url.clone();
        let mut signals = StopSignals::listen();
        tokio::spawn(async move {
            let mut first = true;
            while signals.next().await {
                interrupted.store(true, Ordering::SeqCst);
                if first {
                    eprintln!(
                        "interrupted: cancelling the migration being applied, then rolling back"
                    );
                    first = false;
                } else {
                    eprintln!(
                        "interrupted again: still rolling back; the run ends as soon as the database is as it was"
                    );
                }
                let pid = applying.load(Ordering::SeqCst);
                if pid != 0 {
                    cancel_backend(&url, pid).await;
                }
            }
        });
        let interrupted = Arc::clone(&options.interrupted);
        let ok = match &self.tenant_schemas {
            Some(pattern) => {
                if target.backend != Backend::Postgres {
                    anyhow::bail!(
                        "--tenant-schemas needs a PostgreSQL database: SQLite has no schemas"
                    );
                }
                let fanout = Fanout {
                    pattern: pattern.clone(),
                    jobs: usize::from(self.jobs),
                    fail_fast: self.fail_fast,
                    schemas_per_dump: self.schemas_per_dump.map(|n| n as usize),
                };
                let progress: Progress =
                    Arc::new(std::sync::Mutex::new(|line: &str| eprintln!("{line}")));
                let result = crate::live::fanout::migrate_schemas(
                    source, config, &target, &options, &fanout, progress,
                )
                .await;
                if !self.dry_run || self.report.is_some() {
                    let path = crate::live::fanout::summary_path(&options, &target);
                    std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))
                        .and_then(|()| result.write_json(&path))
                        .with_context(|| format!("write the report {}", path.display()))?;
                    eprintln!("report: {}", path.display());
                }
                match self.format {
                    Format::Human => print!("{}", result.render()),
                    Format::Json => println!("{}", serde_json::to_string_pretty(&result)?),
                }
                result.ok()
            }
            None => {
                let mut progress = |line: &str| eprintln!("{line}");
                let result =
                    crate::live::migrate(source, config, &target, &options, &mut progress).await;
                match self.format {
                    Format::Human => {
                        print!("{}", result.render());
                        if let Some(path) = &result.report_path {
                            println!("report: {path}");
                        }
                    }
                    Format::Json => println!("{}", serde_json::to_string_pretty(&result)?),
                }
                result.outcome.ok()
            }
        };
        if interrupted.load(Ordering::SeqCst) {
            return Ok(ExitCode::from(130));
        }
        Ok(exit(ok))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_duration, parse_pg_timeout};

    #[test]
    fn durations_parse_and_absurd_ones_are_refused_without_a_panic() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert!(
            parse_duration("99999999999999999999h")
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            parse_duration("5 weeks")
                .unwrap_err()
                .contains("unknown unit")
        );
    }

    #[test]
    fn a_postgres_timeout_below_a_millisecond_is_not_silently_none() {
        assert!(parse_pg_timeout("0.5ms").unwrap_err().contains("1 ms"));
        assert_eq!(parse_pg_timeout("0"), Ok(Duration::ZERO));
        assert_eq!(parse_pg_timeout("1ms"), Ok(Duration::from_millis(1)));
        assert!(parse_pg_timeout("30days").is_err());
        assert!(parse_pg_timeout("600h").unwrap_err().contains("largest"));
    }
}
