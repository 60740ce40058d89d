//! The live runner: what `app migrate` and `app verify` do to a production database.
//!
//! One run over one target (a database, or one tenant schema) is a fixed sequence:
//! **validate** (nothing is written) → **back up** → **apply** under the migration lock →
//! **verify** → on failure **roll back** (restore the backup, or revert with the down
//! migrations when no backup was taken) and check that the database equals its state before.
//! `--dry-run` replaces backup/apply/verify with a rehearsal in a transaction that is rolled
//! back. `fanout` runs the sequence over many tenant schemas in parallel.

pub mod apply;
pub mod backup;
pub mod fanout;
pub mod fault;
pub mod report;
pub mod runner_lock;
pub mod target;
pub mod validate;
pub mod verify;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::migrate::{Migration, Migrator};

use crate::config::Config;
use crate::db::{Conn, Scope};
use crate::{App, Backend};
pub use apply::Timeouts;
use backup::{BackupRequest, Counts, Files};
use report::{Check, Step};
pub use report::{Outcome, Report, Status};
use runner_lock::RunnerLock;
pub use target::Target;

/// The migrations a run applies, and the schema they should produce.
pub struct Source<'a> {
    pub backend: Backend,
    pub migrator: &'a Migrator,
    /// The insta snapshot of the schema after every migration (drift detection).
    pub snapshot: Option<&'a str>,
    /// Where the snapshot came from, for messages.
    pub snapshot_name: String,
    /// The app and version whose build this is, for reports.
    pub app_name: String,
    pub app_version: String,
}

impl<'a> Source<'a> {
    /// The migrations and snapshot `app` embeds for `backend`.
    pub fn of(app: &App<'a>, backend: Backend) -> Result<Source<'a>, crate::Error> {
        let embedded = app
            .embedded(backend)
            .ok_or(crate::Error::BackendNotEmbedded(backend))?;
        Ok(Source {
            backend,
            migrator: embedded.migrator,
            snapshot: embedded.snapshot,
            snapshot_name: format!("embedded in {} {} ({backend}.snap)", app.name, app.version),
            app_name: app.name.to_string(),
            app_version: app.version.to_string(),
        })
    }
}

impl Source<'_> {
    pub fn ups(&self) -> impl Iterator<Item = &Migration> {
        self.migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
    }

    fn down_of(&self, version: i64) -> Option<&Migration> {
        self.migrator
            .iter()
            .find(|m| m.version == version && m.migration_type.is_down_migration())
    }

    /// The file a version came from, as migration folders name it.
    pub fn file_of(&self, version: i64) -> String {
        match self.ups().find(|m| m.version == version) {
            Some(m) => format!("{version:04}_{}.up.sql", m.description.replace(' ', "_")),
            None => format!("{version:04} (not in this build)"),
        }
    }

    /// Tables whose row counts the given migrations declare they change: in the file,
    /// `-- tenantgate:moves-data(table, …): reason`, or in the configuration's
    /// `moves-data` acknowledgements.
    pub fn declared_moves(&self, config: &Config, migrations: &[&Migration]) -> BTreeSet<String> {
        let mut tables = BTreeSet::new();
        for migration in migrations {
            let stem = self.file_of(migration.version);
            let stem = stem.trim_end_matches(".up.sql");
            for ack in config.acknowledged(
                crate::config::Acknowledgement::MOVES_DATA,
                self.backend,
                migration.version,
                stem,
            ) {
                tables.extend(ack.tables.iter().cloned());
            }
            tables.extend(moves_data_in(migration.sql.as_str()));
        }
        tables
    }
}

/// The schemas besides the current one that hold the app's tables: those of the
/// snapshot's qualified tables and of the tables the configuration names.
pub fn app_schemas(source: &Source<'_>, config: &Config) -> Vec<String> {
    let mut schemas = BTreeSet::new();
    if let Some(snapshot) = source.snapshot {
        for line in verify::snapshot_body(snapshot).lines() {
            if let Some((schema, _)) = line.strip_prefix("table ").and_then(|t| t.split_once('.')) {
                schemas.insert(schema.trim().to_string());
            }
        }
    }
    let named = std::iter::once(&config.tenancy.tenants_table)
        .chain(config.global_tables.iter().map(|g| &g.name))
        .chain(config.tables.iter().map(|t| &t.name));
    for name in named {
        if let Some((schema, _)) = name.split_once('.') {
            schemas.insert(schema.to_string());
        }
    }
    schemas.into_iter().collect()
}

/// The tables a migration's SQL declares it changes the row counts of:
/// `-- tenantgate:moves-data(table, …): reason`.
pub fn moves_data_in(sql: &str) -> BTreeSet<String> {
    let mut tables = BTreeSet::new();
    for line in sql.lines() {
        if let Some(rest) = line.trim().strip_prefix("-- tenantgate:moves-data(")
            && let Some((list, _reason)) = rest.split_once(')')
        {
            tables.extend(list.split(',').map(|t| t.trim().to_string()));
        }
    }
    tables
}

/// How a run behaves; the flags of `app migrate`.
#[derive(Clone, Debug)]
pub struct Options {
    pub dry_run: bool,
    pub backup: bool,
    pub backup_dir: PathBuf,
    pub verify_restore: bool,
    /// Keep this many backups per target; older ones are removed after a new one is taken.
    pub keep: Option<usize>,
    pub rollback: bool,
    /// Apply up to this version (included); the newest when `None`.
    pub target: Option<i64>,
    pub timeouts: Timeouts,
    /// How long to wait for another runner's migration lock.
    pub wait_for_lock: Duration,
    /// Where pg_dump and pg_restore are.
    pub pg_bin: Option<PathBuf>,
    /// Where the JSON report goes; beside the backups when `None`.
    pub report: Option<PathBuf>,
    /// Write the JSON report also when the run changed nothing (up to date, refused).
    pub report_unchanged: bool,
    /// Set on SIGINT or SIGTERM: the run stops before the next migration and rolls back.
    pub interrupted: Arc<AtomicBool>,
    /// The PostgreSQL backend pid of the connection while it applies a migration (0 when
    /// it is not): whoever handles the signal cancels that statement with it.
    pub applying_backend: Arc<std::sync::atomic::AtomicI32>,
    /// A dump that already holds this target (a fan-out takes one for all its schemas):
    /// the run takes no backup of its own and restores its part of this one on failure.
    pub shared_backup: Option<Arc<backup::SharedBackup>>,
    /// The target's schema text before the run, when a fan-out read it with many others in
    /// one pass over the catalogs (after its shared backup, before this run): the run then
    /// does not read it again. A change in between makes a rollback's comparison fail,
    /// never pass.
    pub before_schema: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            dry_run: false,
            backup: true,
            backup_dir: PathBuf::from("backups"),
            verify_restore: false,
            keep: None,
            rollback: true,
            target: None,
            timeouts: Timeouts::default(),
            wait_for_lock: Duration::from_secs(60),
            pg_bin: None,
            report: None,
            report_unchanged: true,
            interrupted: Arc::new(AtomicBool::new(false)),
            applying_backend: Arc::new(std::sync::atomic::AtomicI32::new(0)),
            shared_backup: None,
            before_schema: None,
        }
    }
}

/// Written while a run is under way and removed when it ends: a run that finds one knows
/// the last run died (killed, machine lost) and says so.
#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    pid: u32,
    started_at: String,
    backup: Option<String>,
    /// The migration being applied, and whether it runs outside a transaction (then a
    /// killed run may have left it half-applied).
    #[serde(default)]
    applying: Option<(String, bool)>,
    /// Set while the run rolls back: what the next run needs to finish that rollback if
    /// this one is killed.
    #[serde(default)]
    rolling_back: Option<RollingBack>,
}

/// A rollback under way: from which version to which, with which backup, and the row
/// counts on either side (the next run restores only a database nobody changed since).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct RollingBack {
    backup: String,
    from: Option<i64>,
    to: Option<i64>,
    failed_counts: Counts,
    before_counts: Counts,
}

fn marker_path(dir: &Path, label: &str) -> PathBuf {
    dir.join(format!("{label}.migrating.json"))
}

/// Runs the whole sequence on one target. Failures are reported, not returned: the only
/// `Err` is a report that could not be written.
pub async fn migrate(
    source: &Source<'_>,
    config: &Config,
    target: &Target,
    options: &Options,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Report {
    let mut conn = None;
    let report = migrate_reusing(&mut conn, source, config, target, options, progress).await;
    if let Some(conn) = conn {
        conn.close().await;
    }
    report
}

/// [`migrate`] on the connection `conn` holds, when it is one to the target's database
/// that [`Target::take_over`] can hand to this target, else on a new one; the connection
/// is left in `conn` for the next run. A fan-out's worker runs schema after schema on one
/// connection: a new server process per schema read every catalog it touched from disk
/// into its caches again, and parsed and planned every statement anew.
pub async fn migrate_reusing(
    conn: &mut Option<Conn>,
    source: &Source<'_>,
    config: &Config,
    target: &Target,
    options: &Options,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Report {
    let started = Instant::now();
    let mut report = Report::new("app migrate", target, source);
    let files = Files::new(&options.backup_dir, &target.label());
    let reused = match conn.take() {
        Some(mut open) => match target.take_over(&mut open).await {
            Ok(()) => Some(open),
            Err(_) => {
                open.close().await;
                None
            }
        },
        None => None,
    };
    let conn = match reused {
        Some(open) => conn.insert(open),
        None => match connect_or_refuse(target, !options.dry_run, &mut report, started).await {
            Some(open) => conn.insert(open),
            None => return report,
        },
    };
    let lock = match RunnerLock::acquire(conn, target, options.wait_for_lock, progress).await {
        Ok(lock) => lock,
        Err(error) => {
            refuse(
                &mut report,
                started,
                Check::fail("lock", format!("{error:#}")),
            );
            return report;
        }
    };
    let scope = target.live_scope(conn, source, config).await;
    let mut run = Run {
        source,
        config,
        target,
        options,
        files: &files,
        conn: &mut *conn,
        report: &mut report,
        progress,
        scope,
        marker: marker_path(&options.backup_dir, &target.label()),
        marker_data: Marker {
            pid: std::process::id(),
            started_at: String::new(),
            backup: None,
            applying: None,
            rolling_back: None,
        },
        wrote: false,
    };
    run.marker_data.started_at = run.report.started_at.clone();
    let result = run.run().await;
    let wrote = run.wrote;
    let rolling_back = run.marker_data.rolling_back.is_some();
    if let Err(error) = result {
        report.error.get_or_insert_with(|| format!("{error:#}"));
        if report.outcome == Outcome::Running {
            // Before the first write nothing changed; after it, only the rollback's own
            // checks can fail this way, and the database is not known to be restored.
            report.outcome = if wrote {
                Outcome::Failed
            } else {
                Outcome::Refused
            };
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    let changed = !matches!(
        report.outcome,
        Outcome::UpToDate | Outcome::Refused | Outcome::DryRun
    );
    if options.report.is_some() || (!options.dry_run && (changed || options.report_unchanged)) {
        let path = options.report.clone().unwrap_or_else(|| files.report());
        report.report_path = Some(path.display().to_string());
        if let Err(error) =
            std::fs::create_dir_all(&options.backup_dir).and_then(|()| report.write_json(&path))
        {
            report.report_path = None;
            progress(&format!(
                "warning: could not write the report {}: {error} (the verdict below stands)",
                path.display()
            ));
        }
    }
    // A refused run changed nothing: a marker it found still describes the database.
    let validated = report
        .step("validate")
        .is_some_and(|s| s.status != Status::Fail);
    // A rollback that did not finish keeps its marker: the next run finishes it.
    if !options.dry_run && validated && !(report.outcome == Outcome::Failed && rolling_back) {
        let _ = std::fs::remove_file(marker_path(&options.backup_dir, &target.label()));
    }
    lock.release(conn).await;
    report
}

/// Connects, or records the refusal in `report`.
async fn connect_or_refuse(
    target: &Target,
    create: bool,
    report: &mut Report,
    started: Instant,
) -> Option<Conn> {
    match target.connect(create).await {
        Ok(conn) => Some(conn),
        Err(error) => {
            refuse(
                report,
                started,
                Check::fail("connection", format!("{error:#}")),
            );
            None
        }
    }
}

fn refuse(report: &mut Report, started: Instant, check: Check) {
    report.error = Some(check.detail.clone());
    report.steps.push(Step::from_checks(
        "validate",
        started.elapsed().as_secs_f64(),
        vec![check],
    ));
    report.outcome = Outcome::Refused;
    report.seconds = started.elapsed().as_secs_f64();
}

fn first_failure(step: &Step) -> Option<String> {
    step.checks
        .iter()
        .find(|c| c.status == Status::Fail)
        .map(|c| {
            format!(
                "{}: {}",
                c.name,
                c.detail.lines().next().unwrap_or_default()
            )
        })
}

/// One run under the migration lock, as its steps: validate → (verify when up to date |
/// dry run | back up → apply → verify → roll back on failure). Each step records itself
/// in the report; the value carries what the later steps need of the earlier ones.
struct Run<'r, 'a> {
    source: &'r Source<'a>,
    config: &'r Config,
    target: &'r Target,
    options: &'r Options,
    files: &'r Files,
    conn: &'r mut Conn,
    report: &'r mut Report,
    progress: &'r mut (dyn FnMut(&str) + Send),
    /// The schemas the run reads.
    scope: Scope,
    /// The marker file, and what it says while the run is under way.
    marker: PathBuf,
    marker_data: Marker,
    /// Whether the run has written to the target (from the first migration on).
    wrote: bool,
}

/// What a rollback must return the target to.
struct Before {
    counts: Counts,
    schema: String,
}

/// What the apply step did.
struct Applied<'m> {
    migrations: Vec<&'m Migration>,
    /// Why it stopped before the end, when it did.
    error: Option<String>,
}

impl<'r> Run<'r, '_> {
    /// The sequence. Before the first write an error refuses the run (nothing changed);
    /// from the first write on, every failure, error or interruption goes through the
    /// rollback, so the run ends migrated and verified or as it was, and says which.
    async fn run(&mut self) -> anyhow::Result<()> {
        let Some(pending) = self.validate().await? else {
            return Ok(());
        };
        if pending.is_empty() {
            return self.verify_up_to_date().await;
        }
        if self.options.dry_run {
            return self.dry_run(&pending).await;
        }
        let Some(before) = self.back_up().await? else {
            return Ok(());
        };
        if self.interrupted() {
            self.report.error = Some(self.interruption());
            self.report.outcome = Outcome::Refused;
            return Ok(());
        }
        let applied = self.apply(&pending).await;
        let mut failure = match &applied.error {
            Some(error) => Some(error.clone()),
            None => match self.verify(&applied, &before).await {
                Ok(failure) => failure,
                Err(error) => Some(format!("verify could not finish: {error:#}")),
            },
        };
        if failure.is_none() && self.interrupted() {
            failure = Some(self.interruption());
        }
        match failure {
            None => {
                self.report.outcome = Outcome::Migrated;
                self.report.error = None;
                self.prune();
                Ok(())
            }
            Some(failure) => self.roll_back(failure, &applied, &before).await,
        }
    }

    fn interrupted(&self) -> bool {
        self.options.interrupted.load(Ordering::SeqCst)
    }

    fn interruption(&self) -> String {
        "interrupted (SIGINT or SIGTERM): the run was asked to stop".to_string()
    }

    /// `--keep N`, once the run has verified: the newest N backups of this target stay
    /// (this run's among them); an older one is removed only if its name is exactly this
    /// target's label and a timestamp.
    fn prune(&mut self) {
        let (Some(keep), true, None) = (
            self.options.keep,
            self.options.backup,
            &self.options.shared_backup,
        ) else {
            return;
        };
        match backup::prune(&self.options.backup_dir, &self.target.label(), keep.max(1)) {
            Ok(removed) if !removed.is_empty() => (self.progress)(&format!(
                "--keep {keep}: removed {} files of older backups of {}",
                removed.len(),
                self.target.label()
            )),
            Ok(_) => {}
            Err(error) => (self.progress)(&format!(
                "warning: --keep {keep}: older backups not pruned: {error:#}"
            )),
        }
    }

    /// The fault the fault-injection suite configured at `point` (nothing in an app's
    /// build): signals and disk faults take effect by themselves; a disconnect is done here.
    async fn inject(&mut self, point: &str) {
        let fault::Injected::Disconnect { after_ms } = fault::at(point) else {
            return;
        };
        let Conn::Postgres(pg) = &mut *self.conn else {
            return;
        };
        if after_ms == 0 {
            let _ = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
                .execute(&mut *pg)
                .await;
            return;
        }
        let Ok(pid) = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(&mut *pg)
            .await
        else {
            return;
        };
        let url = self.target.url.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            if let Ok(mut side) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await {
                let _ = sqlx::query("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .execute(&mut side)
                    .await;
            }
        });
    }

    /// A connection the server ended (terminated, restarted) is opened again, with the
    /// session settings and the migration lock, before verify and rollback need it.
    async fn reconnect_if_lost(&mut self) -> anyhow::Result<()> {
        if self.conn.execute("SELECT 1").await.is_ok() {
            return Ok(());
        }
        (self.progress)("the database connection was lost: connecting again");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conn = loop {
            match self.target.connect(false).await {
                Ok(conn) => break conn,
                Err(error) if Instant::now() >= deadline => {
                    return Err(error).context("connect again after the connection was lost");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        apply::session_settings(&mut conn, &self.options.timeouts).await?;
        RunnerLock::acquire(
            &mut conn,
            self.target,
            self.options.wait_for_lock,
            self.progress,
        )
        .await
        .context("take the migration lock again")?;
        let old = std::mem::replace(self.conn, conn);
        old.close().await;
        Ok(())
    }

    /// Records in the marker what a next run needs to finish this rollback if this run is
    /// killed during it.
    async fn note_rollback(&mut self, before: &Before) {
        let Some(info) = &self.report.backup else {
            return;
        };
        let from = validate::read_applied(self.conn, &self.source.migrator.table_name)
            .await
            .ok()
            .flatten()
            .and_then(|a| a.last().map(|a| a.version));
        let Ok(failed_counts) = backup::row_counts(self.conn).await else {
            return;
        };
        self.marker_data.rolling_back = Some(RollingBack {
            backup: info.path.clone(),
            from,
            to: self.report.from_version,
            failed_counts,
            before_counts: before.counts.clone(),
        });
        self.note_marker();
    }

    /// The marker is advisory once the run is under way: a backup folder that stops
    /// taking writes must not stop a run between two states.
    fn note_marker(&mut self) {
        if let Err(error) = self.write_marker() {
            (self.progress)(&format!(
                "warning: the run marker could not be updated ({error:#}); the run goes on"
            ));
        }
    }

    /// Nothing is written before every check passed; `None` when the run is refused,
    /// else the pending migrations.
    async fn validate(&mut self) -> anyhow::Result<Option<Vec<&'r Migration>>> {
        let step_started = Instant::now();
        apply::session_settings(self.conn, &self.options.timeouts).await?;
        let mut checks = vec![Check::pass("connection", server_version(self.conn).await?)];
        let killed_in_rollback = read_marker(&self.marker).and_then(|m| m.rolling_back);
        let previous = match killed_in_rollback {
            Some(rolling_back) => Some(self.finish_rollback(rolling_back).await),
            None => previous_run(&self.marker),
        };
        if let Some(check) = previous {
            (self.progress)(&format!("note: {}", check.detail));
            checks.push(check);
        }
        let applied = validate::read_applied(self.conn, &self.source.migrator.table_name)
            .await
            .context("read the migrations table")?;
        let source: &'r Source<'_> = self.source;
        let plan = validate::plan(source, applied.as_deref(), self.options.target);
        checks.extend(plan.checks.iter().cloned());
        self.report.from_version = plan.current;
        self.report.to_version = plan.current;
        let pending = plan.pending.clone();
        if !self.options.dry_run && !pending.is_empty() {
            checks.push(if let Some(shared) = &self.options.shared_backup {
                // The fan-out took it before any schema was migrated.
                Check::pass(
                    "backup space",
                    format!("backed up already, in {}", shared.info.path),
                )
            } else if self.options.backup {
                backup_room(self.conn, &self.options.backup_dir).await
            } else {
                Check::skip("backup space", "--no-backup: no backup will be taken")
            });
        }
        let step = Step::from_checks("validate", step_started.elapsed().as_secs_f64(), checks);
        let valid = step.status != Status::Fail;
        self.report.error = first_failure(&step);
        self.report.steps.push(step);
        if !valid {
            self.report.outcome = Outcome::Refused;
            return Ok(None);
        }
        Ok(Some(pending))
    }

    /// A previous run was killed while it rolled back: finish that rollback when the
    /// database is exactly as that run left it (its version and every row count), say it
    /// had finished when the database is at the version it was rolling back to, and refuse
    /// otherwise: someone changed the database since, and restoring would lose that.
    async fn finish_rollback(&mut self, rolling_back: RollingBack) -> Check {
        let current =
            match validate::read_applied(self.conn, &self.source.migrator.table_name).await {
                Ok(applied) => applied.and_then(|a| a.last().map(|a| a.version)),
                Err(error) => {
                    return Check::fail(
                        "previous run",
                        format!("read the migrations table: {error:#}"),
                    );
                }
            };
        let killed = format!(
            "the previous run was killed while rolling back from {} to {} with {}",
            report::version_text(rolling_back.from),
            report::version_text(rolling_back.to),
            rolling_back.backup
        );
        if current == rolling_back.to && current != rolling_back.from {
            return Check::pass(
                "previous run",
                format!(
                    "{killed}; its rollback had finished (the database is at {})",
                    report::version_text(current)
                ),
            );
        }
        let counts = backup::row_counts(self.conn).await.unwrap_or_default();
        if current != rolling_back.from || counts != rolling_back.failed_counts {
            return Check::fail(
                "previous run",
                format!(
                    "{killed}, and the database changed since (it is at {}, with other row counts): restoring that backup would lose the change; \
                     restore it by hand if that is right, then delete {}",
                    report::version_text(current),
                    self.marker.display()
                ),
            );
        }
        if !Path::new(&rolling_back.backup).is_file() {
            return Check::fail(
                "previous run",
                format!(
                    "{killed}, and that backup is gone: restore the database from another backup, then delete {}",
                    self.marker.display()
                ),
            );
        }
        let started = Instant::now();
        (self.progress)("finishing the rollback the previous run began");
        let restored = backup::restore(
            self.conn,
            self.target,
            Path::new(&rolling_back.backup),
            self.options.pg_bin.as_deref(),
        )
        .await;
        let after = backup::row_counts(self.conn).await.unwrap_or_default();
        let check = match restored {
            Ok(()) if after == rolling_back.before_counts => Check::pass(
                "previous run",
                format!(
                    "{killed}; this run finished that rollback: every table has its rows of before that run"
                ),
            ),
            Ok(()) => Check::fail(
                "previous run",
                format!(
                    "{killed}; this run restored that backup, but the row counts differ from those it recorded"
                ),
            ),
            Err(error) => Check::fail(
                "previous run",
                format!("{killed}; finishing that rollback failed: {error:#}"),
            ),
        };
        self.report.steps.push(Step {
            step: "recover",
            status: check.status,
            seconds: started.elapsed().as_secs_f64(),
            detail: check.detail.clone(),
            checks: Vec::new(),
        });
        check
    }

    /// Nothing is pending: the database is verified as it is.
    async fn verify_up_to_date(&mut self) -> anyhow::Result<()> {
        let step_started = Instant::now();
        let verified = verify::verify(
            self.conn,
            self.source,
            self.config,
            self.options.target,
            &self.scope,
            false,
        )
        .await?;
        self.report.schema_text = Some(verified.schema_text);
        let step = Step::from_checks(
            "verify",
            step_started.elapsed().as_secs_f64(),
            verified.checks,
        );
        self.report.outcome = if step.status == Status::Fail {
            self.report.error = first_failure(&step);
            Outcome::Failed
        } else {
            Outcome::UpToDate
        };
        self.report.steps.push(step);
        Ok(())
    }

    /// `--dry-run`: the pending migrations in one transaction that is rolled back.
    async fn dry_run(&mut self, pending: &[&Migration]) -> anyhow::Result<()> {
        let step_started = Instant::now();
        let runs = apply::dry_run(self.conn, self.source, pending, self.progress).await?;
        let failed = runs.iter().find(|r| r.status == Status::Fail);
        let detail = match failed {
            Some(run) => run.error.clone().unwrap_or_default(),
            None => format!(
                "{} rehearsed and rolled back; {} not rehearsable",
                runs.iter().filter(|r| r.status == Status::Pass).count(),
                runs.iter().filter(|r| r.status == Status::Skip).count()
            ),
        };
        self.report.steps.push(Step {
            step: "dry-run",
            status: if failed.is_some() {
                Status::Fail
            } else {
                Status::Pass
            },
            seconds: step_started.elapsed().as_secs_f64(),
            detail: detail.clone(),
            checks: Vec::new(),
        });
        self.report.outcome = if failed.is_some() {
            self.report.error = Some(detail);
            Outcome::Refused
        } else {
            Outcome::DryRun
        };
        self.report.to_version = runs
            .iter()
            .filter(|r| r.status == Status::Pass)
            .map(|r| r.version)
            .max()
            .or(self.report.from_version);
        self.report.migrations = runs;
        Ok(())
    }

    /// Backs up (or records that `--no-backup` was asked for, or uses the fan-out's
    /// shared dump) and remembers the state a rollback must return to. `None` when the
    /// backup failed: nothing was migrated.
    async fn back_up(&mut self) -> anyhow::Result<Option<Before>> {
        self.inject("migrate::before-backup").await;
        std::fs::create_dir_all(&self.options.backup_dir).with_context(|| {
            format!(
                "create {} (choose another with --backup-dir)",
                self.options.backup_dir.display()
            )
        })?;
        self.write_marker()?;
        let counts = match (&self.options.shared_backup, self.options.backup) {
            (Some(shared), true) => {
                let schema = self.target.schema.clone().unwrap_or_default();
                let counts = match shared.counts.get(&schema) {
                    Some(counts) => counts.clone(),
                    None => backup::row_counts(self.conn).await?,
                };
                self.report.steps.push(Step {
                    step: "backup",
                    status: Status::Pass,
                    seconds: 0.0,
                    detail: format!(
                        "{} (one dump of every schema of this run, taken before it started; {})",
                        shared.info.path,
                        shared.info.verified_by.join("; ")
                    ),
                    checks: Vec::new(),
                });
                self.marker_data.backup = Some(shared.info.path.clone());
                self.write_marker()?;
                self.report.backup = Some(shared.info.clone());
                counts
            }
            (None, true) => {
                let step_started = Instant::now();
                (self.progress)("backing up");
                let request = BackupRequest {
                    target: self.target,
                    files: self.files,
                    pg_bin: self.options.pg_bin.as_deref(),
                    verify_restore: self.options.verify_restore,
                };
                match backup::backup(self.conn, &request).await {
                    Ok((info, counts)) => {
                        self.report.steps.push(Step {
                            step: "backup",
                            status: Status::Pass,
                            seconds: step_started.elapsed().as_secs_f64(),
                            detail: format!(
                                "{} ({} bytes; {})",
                                info.path,
                                info.bytes,
                                info.verified_by.join("; ")
                            ),
                            checks: Vec::new(),
                        });
                        self.marker_data.backup = Some(info.path.clone());
                        self.write_marker()?;
                        self.report.backup = Some(info);
                        counts
                    }
                    Err(error) => {
                        let detail = format!("{error:#}");
                        self.report.steps.push(Step {
                            step: "backup",
                            status: Status::Fail,
                            seconds: step_started.elapsed().as_secs_f64(),
                            detail: detail.clone(),
                            checks: Vec::new(),
                        });
                        self.report.error = Some(format!("backup failed: {detail}"));
                        self.report.outcome = Outcome::Refused;
                        return Ok(None);
                    }
                }
            }
            (_, false) => {
                self.report.steps.push(Step {
                    step: "backup",
                    status: Status::Skip,
                    seconds: 0.0,
                    detail: "--no-backup: a rollback reverts with the down migrations".to_string(),
                    checks: Vec::new(),
                });
                backup::row_counts(self.conn).await?
            }
        };
        let schema = match &self.options.before_schema {
            Some(text) => text.clone(),
            None => verify::read_schema(self.conn, self.source, &self.scope)
                .await?
                .render(),
        };
        self.inject("migrate::after-backup").await;
        Ok(Some(Before { counts, schema }))
    }

    /// Applies the pending migrations one at a time; stops at the first failure or at an
    /// interruption.
    async fn apply<'m>(&mut self, pending: &[&'m Migration]) -> Applied<'m> {
        let step_started = Instant::now();
        let mut runs = Vec::new();
        let mut interrupted = false;
        let mut broke: Option<String> = None;
        let backend_pid = match &mut *self.conn {
            Conn::Postgres(pg) => sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut *pg)
                .await
                .ok(),
            Conn::Sqlite(_) => None,
        };
        for migration in pending {
            if self.interrupted() {
                interrupted = true;
                break;
            }
            self.marker_data.applying =
                Some((self.source.file_of(migration.version), migration.no_tx));
            self.note_marker();
            self.wrote = true;
            if Some(migration.version) == pending.last().map(|m| m.version) {
                self.inject("migrate::in-migration").await;
            }
            if let Some(pid) = backend_pid {
                self.options.applying_backend.store(pid, Ordering::SeqCst);
            }
            let result = apply::apply(
                self.conn,
                self.source,
                std::slice::from_ref(migration),
                &self.options.timeouts,
                self.progress,
            )
            .await;
            self.options.applying_backend.store(0, Ordering::SeqCst);
            match result {
                Ok(mut run) => {
                    let failed = run.iter().any(|r| r.status == Status::Fail);
                    runs.append(&mut run);
                    if failed {
                        break;
                    }
                }
                Err(error) => {
                    broke = Some(format!(
                        "{}: {error:#}",
                        self.source.file_of(migration.version)
                    ));
                    break;
                }
            }
            if self.interrupted() && runs.len() < pending.len() {
                interrupted = true;
                break;
            }
        }
        if broke.is_none() && runs.iter().all(|r| r.status != Status::Fail) {
            self.marker_data.applying = None;
            self.note_marker();
        }
        let error = match runs.iter().find(|r| r.status == Status::Fail) {
            Some(run) => Some(run.error.clone().unwrap_or_default()),
            None if broke.is_some() => broke,
            None if interrupted => Some(format!(
                "{} before all migrations were applied",
                self.interruption()
            )),
            None => None,
        };
        self.report.steps.push(Step {
            step: "apply",
            status: if error.is_some() {
                Status::Fail
            } else {
                Status::Pass
            },
            seconds: step_started.elapsed().as_secs_f64(),
            detail: error
                .clone()
                .unwrap_or_else(|| format!("{} migrations applied", runs.len())),
            checks: Vec::new(),
        });
        let migrations: Vec<&Migration> = pending
            .iter()
            .copied()
            .filter(|m| {
                runs.iter()
                    .any(|r| r.version == m.version && r.status == Status::Pass)
            })
            .collect();
        self.report.to_version = migrations
            .last()
            .map(|m| m.version)
            .or(self.report.from_version);
        self.report.migrations = runs;
        Applied { migrations, error }
    }

    /// Checks the migrated database; the first failure, when one check failed.
    async fn verify(
        &mut self,
        applied: &Applied<'_>,
        before: &Before,
    ) -> anyhow::Result<Option<String>> {
        self.inject("migrate::before-verify").await;
        self.reconnect_if_lost().await?;
        let step_started = Instant::now();
        (self.progress)("verifying");
        let verified = verify::verify(
            self.conn,
            self.source,
            self.config,
            self.options.target,
            &self.scope,
            true,
        )
        .await?;
        self.report.schema_text = Some(verified.schema_text);
        let mut checks = verified.checks;
        let after = backup::row_counts(self.conn).await?;
        checks.push(verify::row_counts(
            &before.counts,
            &after,
            &self.source.declared_moves(self.config, &applied.migrations),
            &self.source.migrator.table_name,
        ));
        let step = Step::from_checks("verify", step_started.elapsed().as_secs_f64(), checks);
        let failure = first_failure(&step);
        self.report.steps.push(step);
        Ok(failure)
    }

    /// Puts the target back as it was (the backup, or the down migrations without one),
    /// then checks that the schema and every row count equal the state before the run.
    async fn roll_back(
        &mut self,
        failure: String,
        applied: &Applied<'_>,
        before: &Before,
    ) -> anyhow::Result<()> {
        self.report.error = Some(failure);
        if !self.options.rollback {
            self.report.outcome = Outcome::Failed;
            self.report.steps.push(Step {
                step: "rollback",
                status: Status::Skip,
                seconds: 0.0,
                detail: "--no-rollback: the database is left as the failure left it".to_string(),
                checks: Vec::new(),
            });
            return Ok(());
        }
        let step_started = Instant::now();
        (self.progress)("rolling back");
        if let Err(error) = self.reconnect_if_lost().await {
            self.report.outcome = Outcome::Failed;
            self.report.steps.push(Step {
                step: "rollback",
                status: Status::Fail,
                seconds: step_started.elapsed().as_secs_f64(),
                detail: format!("the database cannot be reached to roll back: {error:#}"),
                checks: Vec::new(),
            });
            return Ok(());
        }
        self.note_rollback(before).await;
        self.inject("migrate::in-rollback").await;
        let reverted = match self.report.backup.clone() {
            // The restore is one transaction: when the connection was lost during it
            // (terminated, the server restarted), it is tried again on a new one.
            Some(info) => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let restored = backup::restore(
                        self.conn,
                        self.target,
                        Path::new(&info.path),
                        self.options.pg_bin.as_deref(),
                    )
                    .await
                    .map(|()| format!("restored {}", info.path));
                    match restored {
                        Err(_) if attempt < 3 && self.conn.execute("SELECT 1").await.is_err() => {
                            if self.reconnect_if_lost().await.is_err() {
                                break restored;
                            }
                        }
                        other => break other,
                    }
                }
            }
            None => revert(self.conn, self.source, &applied.migrations).await,
        };
        // The restore runs on connections of its own: the run's may have been lost meanwhile.
        let reconnected = self.reconnect_if_lost().await;
        let mut checks = Vec::new();
        match reverted {
            Ok(how) => {
                checks.push(Check::pass("restore", how));
                if let Err(error) = reconnected {
                    checks.push(Check::fail(
                        "schema",
                        format!("the restore ran, but the database cannot be reached to check it: {error:#}"),
                    ));
                }
                match verify::read_schema(self.conn, self.source, &self.scope).await {
                    Ok(schema) => {
                        let after_schema = schema.render();
                        self.report.schema_text = Some(after_schema.clone());
                        checks.push(if after_schema == before.schema {
                            Check::pass("schema", "equals the schema before the run")
                        } else {
                            verify::drift(&before.schema, &after_schema, self.source)
                        });
                    }
                    Err(error) => checks.push(Check::fail(
                        "schema",
                        format!("could not be read after the restore: {error:#}"),
                    )),
                }
                checks.push(match backup::row_counts(self.conn).await {
                    Ok(after) => match backup::compare_counts(
                        &before.counts,
                        &after,
                        "before the run",
                        "after the rollback",
                    ) {
                        Ok(()) => Check::pass(
                            "row counts",
                            format!("{} tables have their rows of before the run", after.len()),
                        ),
                        Err(error) => Check::fail("row counts", format!("{error:#}")),
                    },
                    Err(error) => Check::fail(
                        "row counts",
                        format!("could not be read after the restore: {error:#}"),
                    ),
                });
            }
            Err(error) => checks.push(Check::fail("restore", format!("{error:#}"))),
        }
        let step = Step::from_checks("rollback", step_started.elapsed().as_secs_f64(), checks);
        self.report.outcome = if step.status == Status::Pass {
            Outcome::RolledBack
        } else {
            Outcome::Failed
        };
        self.report.steps.push(step);
        if let Ok(applied) =
            validate::read_applied(self.conn, &self.source.migrator.table_name).await
        {
            self.report.to_version = applied.and_then(|a| a.last().map(|a| a.version));
        }
        Ok(())
    }

    fn write_marker(&self) -> anyhow::Result<()> {
        write_marker(&self.marker, &self.marker_data)
    }
}

/// What the marker of an unfinished run says, as a check: a run killed inside a
/// migration outside a transaction refuses; one killed inside a transactional one goes on.
fn read_marker(marker: &Path) -> Option<Marker> {
    serde_json::from_str(&std::fs::read_to_string(marker).ok()?).ok()
}

fn previous_run(marker: &Path) -> Option<Check> {
    let text = std::fs::read_to_string(marker).ok()?;
    let previous: Option<Marker> = serde_json::from_str(&text).ok();
    Some(match previous {
        Some(Marker {
            applying: Some((file, true)),
            pid,
            started_at,
            backup,
            rolling_back: None,
        }) => Check::fail(
            "previous run",
            format!(
                "the run started at {started_at} by process {pid} was killed while applying {file}, which runs \
                 outside a transaction and may be half-applied; restore its backup ({}) or finish {file} by hand, \
                 then delete {}",
                backup.as_deref().unwrap_or("none was taken"),
                marker.display()
            ),
        ),
        Some(m) => Check::pass(
            "previous run",
            format!(
                "the run started at {} by process {} did not finish (killed?){}; its backup: {}. \
                 Its migration ran in a transaction, which the database rolled back: continuing from the last applied one",
                m.started_at,
                m.pid,
                m.applying
                    .map(|(file, _)| format!(" while applying {file}"))
                    .unwrap_or_default(),
                m.backup.as_deref().unwrap_or("none")
            ),
        ),
        None => Check::pass(
            "previous run",
            format!("{} is left from an unfinished run", marker.display()),
        ),
    })
}

/// A number below `bound` that differs between calls (retry jitter, scratch names).
fn random(bound: u64) -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    std::collections::hash_map::RandomState::new().hash_one(nanos) % bound
}

fn write_marker(path: &Path, marker: &Marker) -> anyhow::Result<()> {
    fault::writable()
        .and_then(|()| std::fs::write(path, serde_json::to_string(marker)?))
        .with_context(|| format!("write {}", path.display()))
}

async fn server_version(conn: &mut Conn) -> anyhow::Result<String> {
    Ok(match conn {
        Conn::Postgres(_) => format!(
            "PostgreSQL {}",
            conn.texts("SHOW server_version").await?.join("")
        ),
        Conn::Sqlite(_) => format!(
            "SQLite {}",
            conn.texts("SELECT sqlite_version()").await?.join("")
        ),
    })
}

async fn backup_room(conn: &mut Conn, dir: &Path) -> Check {
    let needed = match validate::database_bytes(conn).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return Check::fail(
                "backup space",
                format!("could not size the database: {error:#}"),
            );
        }
    };
    match validate::free_bytes(dir) {
        // A custom-format dump is compressed; the database's size is a generous bound.
        Some(free) if free >= needed + needed / 5 => Check::pass(
            "backup space",
            format!(
                "{} needed at most, {} free in {}",
                megabytes(needed),
                megabytes(free),
                dir.display()
            ),
        ),
        Some(free) => Check::fail(
            "backup space",
            format!(
                "the backup needs up to {}, but {} has {} free; free space, choose --backup-dir elsewhere, or pass --no-backup",
                megabytes(needed),
                dir.display(),
                megabytes(free)
            ),
        ),
        None => Check::fail(
            "backup space",
            format!("cannot read the free space of {}", dir.display()),
        ),
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// Reverts the migrations of this run, newest first, with their down migrations.
async fn revert(
    conn: &mut Conn,
    source: &Source<'_>,
    applied: &[&Migration],
) -> anyhow::Result<String> {
    let table = source.migrator.table_name.as_ref();
    for migration in applied.iter().rev() {
        let down = source.down_of(migration.version).with_context(|| {
            format!(
                "{} has no down migration and no backup was taken: restore the database by hand",
                source.file_of(migration.version)
            )
        })?;
        conn.revert(table, down)
            .await
            .with_context(|| format!("revert {}", source.file_of(migration.version)))?;
    }
    Ok(format!(
        "reverted {} migrations with their down migrations",
        applied.len()
    ))
}

/// `app verify`: the checks alone, on a database the runner does not change.
pub async fn verify_database(source: &Source<'_>, config: &Config, target: &Target) -> Report {
    let started = Instant::now();
    let mut report = Report::new("app verify", target, source);
    let Some(mut conn) = connect_or_refuse(target, false, &mut report, started).await else {
        return report;
    };
    let scope = target.live_scope(&mut conn, source, config).await;
    match verify::verify(&mut conn, source, config, None, &scope, true).await {
        Ok(verified) => {
            let step =
                Step::from_checks("verify", started.elapsed().as_secs_f64(), verified.checks);
            report.error = first_failure(&step);
            report.outcome = if step.status == Status::Fail {
                Outcome::Failed
            } else {
                Outcome::UpToDate
            };
            report.from_version = verified.version;
            report.to_version = verified.version;
            report.steps.push(step);
        }
        Err(error) => {
            report.error = Some(format!("{error:#}"));
            report.outcome = Outcome::Failed;
        }
    }
    conn.close().await;
    report.seconds = started.elapsed().as_secs_f64();
    report
}
