//! One backend's rehearsal, the heart of `cargo xtask migrate-test`, as named steps over
//! one context value ([`Rehearsal`]): provision a fresh database, then for every
//! migration apply it, reverse it (down, compare, up again), note the tables it created,
//! run the static isolation rules on the schema it leaves, and load the fixture at its
//! version; then the post-migration checks, the schema snapshot, and the behavioural
//! isolation cases.

pub(crate) mod errors;
mod halves;
pub mod reversibility;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tenantgate::api::TenantApi;
use tenantgate::checks::{CheckOutcome, Failure};
use tenantgate::config::Config;
use tenantgate::db::{Conn, Scope};
use tenantgate::schema::Schema;
use tenantgate::{App, Backend};

use crate::checks;
use crate::isolation;
use crate::migration_set::MigrationSet;
use crate::provision::{self, Janitor, PgOptions};
pub use errors::sql_failure;

/// The app whose migrations are rehearsed: its configuration, the migrations its build
/// embeds (`None`: the configured folders, read from disk), its data-access API.
pub struct AppUnderTest<'a> {
    pub config: Config,
    pub embedded: Option<&'a App<'a>>,
    pub api: Option<&'a dyn TenantApi>,
}

impl<'a> AppUnderTest<'a> {
    /// The configuration's own folders, read from disk, with no API.
    pub fn from_config(config: Config) -> AppUnderTest<'static> {
        AppUnderTest {
            config,
            embedded: None,
            api: None,
        }
    }
}

/// What a rehearsal did and found, for the report.
#[derive(Debug)]
pub struct BackendReport {
    pub backend: Backend,
    /// With `migrate-test --pg-versions`: the PostgreSQL major this report is of.
    pub pg_major: Option<u32>,
    pub provider: Option<String>,
    /// "embedded in the app" or the folder read from disk.
    pub source: String,
    pub migrations_total: usize,
    pub steps: Vec<Step>,
    pub checks: Vec<CheckOutcome>,
    /// The time of each phase; on PostgreSQL the reversal pass runs beside the others, so
    /// they add up to more than [`BackendReport::took`].
    pub phases: Vec<(&'static str, Duration)>,
    /// The rehearsal's wall time, from provisioning to the last case.
    pub took: Duration,
    /// How many behavioural isolation cases ran.
    pub isolation_cases: usize,
    /// How many intermediate migration steps the static isolation rules ran after.
    pub isolation_steps_checked: usize,
    /// An error that stopped the rehearsal before its checks could run.
    pub fatal: Option<Failure>,
    /// Lines shown beside the table: what did not apply and why, new migrations,
    /// acknowledged findings, irreversible migrations, how the data was made.
    pub notes: Vec<String>,
    /// Lint findings on the new migrations, for `::error` annotations and the summary.
    pub lint_findings: Vec<crate::lint::Finding>,
    /// With [`Options::defer_snapshot`]: the schema text the snapshot check is to judge.
    /// Its place among the checks holds a failure until [`BackendReport::check_snapshot`]
    /// puts the outcome there, so a snapshot never checked cannot pass.
    pub deferred_snapshot: Option<String>,
}

#[derive(Debug)]
pub struct Step {
    pub version: i64,
    pub file: String,
    /// When the migration started: `cargo xtask bench` lines its lock samples up with it.
    pub started: Instant,
    pub duration: Duration,
}

impl BackendReport {
    /// The backend as reports name it: `postgres 18` when the run covers several majors.
    pub fn name(&self) -> String {
        match self.pg_major {
            Some(major) => format!("{} {major}", self.backend),
            None => self.backend.to_string(),
        }
    }

    fn new(backend: Backend) -> BackendReport {
        BackendReport {
            backend,
            pg_major: None,
            provider: None,
            source: String::new(),
            migrations_total: 0,
            steps: Vec::new(),
            checks: Vec::new(),
            phases: Vec::new(),
            took: Duration::ZERO,
            isolation_steps_checked: 0,
            isolation_cases: 0,
            fatal: None,
            notes: Vec::new(),
            lint_findings: Vec::new(),
            deferred_snapshot: None,
        }
    }

    /// Holds the snapshot check's place with a failure until
    /// [`BackendReport::check_snapshot`] judges `text` there.
    fn hold_snapshot(&mut self, text: String) {
        let mut held = CheckOutcome::new("schema-snapshot");
        held.failures.push(Failure::new(
            "the schema snapshot was left to be checked after the other majors' and was not",
        ));
        self.checks.push(held);
        self.deferred_snapshot = Some(text);
    }

    /// Checks the held snapshot ([`Options::defer_snapshot`]) against `config`'s, in the
    /// place its check holds.
    pub fn check_snapshot(&mut self, config: &Config) {
        let Some(text) = self.deferred_snapshot.take() else {
            return;
        };
        let phase = Instant::now();
        let outcome = crate::snapshot::check(config, self.backend, &text);
        match self.checks.iter_mut().find(|c| c.name == "schema-snapshot") {
            Some(held) => *held = outcome,
            None => self.checks.push(outcome),
        }
        self.phases.push(("snapshot", phase.elapsed()));
    }

    pub fn passed(&self) -> bool {
        self.fatal.is_none() && self.checks.iter().all(CheckOutcome::passed)
    }

    pub fn failures(&self) -> impl Iterator<Item = (&str, &Failure)> {
        self.fatal
            .iter()
            .map(|failure| ("rehearsal", failure))
            .chain(
                self.checks
                    .iter()
                    .flat_map(|check| check.failures.iter().map(move |f| (check.name, f))),
            )
    }

    pub fn check(&self, name: &str) -> Option<&CheckOutcome> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// How a rehearsal runs beyond the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub progress: Progress,
    /// Generated rows per table, added at the fixture's version (`--rows N`).
    pub rows: u64,
    /// Seed of the row generator: the same seed gives the same rows.
    pub rows_seed: u64,
    /// Reverse every migration (up, down, compare, up again).
    pub reversibility: bool,
    /// How long one statement may run (`--statement-timeout`); the configuration's
    /// `statement_timeout` when `None`.
    pub statement_timeout: Option<Duration>,
    /// With `migrate-test --pg-versions`: the PostgreSQL major this rehearsal runs on, for
    /// its report and its progress lines.
    pub pg_major: Option<u32>,
    /// Leave the snapshot to the caller ([`BackendReport::deferred_snapshot`]): rehearsals
    /// of several majors at once share one snapshot file, checked in the majors' order.
    pub defer_snapshot: bool,
}

impl Options {
    pub fn statement_timeout(&self, config: &Config) -> Duration {
        self.statement_timeout
            .unwrap_or(config.migrations.statement_timeout)
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            progress: Progress::Quiet,
            rows: 0,
            rows_seed: 1,
            reversibility: true,
            statement_timeout: None,
            pg_major: None,
            defer_snapshot: false,
        }
    }
}

/// `300 s` as `5 min`.
fn humantime(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds >= 60.0 && seconds % 60.0 == 0.0 {
        format!("{} min", seconds / 60.0)
    } else {
        format!("{seconds} s")
    }
}

/// Whether to print a line as each long step ends (the CLI does; tests do not).
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    Quiet,
    Lines,
}

impl Progress {
    /// A line about the rehearsal named `name` ([`BackendReport::name`]).
    fn say(self, name: &str, message: &str) {
        if let Progress::Lines = self {
            eprintln!("  {name:8}  {message}");
        }
    }
}

/// Rehearses every backend asked for, concurrently: while PostgreSQL starts, SQLite runs.
pub async fn rehearse_all(
    backends: &[Backend],
    app: &AppUnderTest<'_>,
    pg: &PgOptions,
    janitor: &Janitor,
    options: Options,
) -> Vec<BackendReport> {
    let wants = |backend| backends.contains(&backend);
    let (postgres, sqlite) = tokio::join!(
        async {
            if wants(Backend::Postgres) {
                Some(rehearse(Backend::Postgres, app, pg, janitor, options).await)
            } else {
                None
            }
        },
        async {
            if wants(Backend::Sqlite) {
                Some(rehearse(Backend::Sqlite, app, pg, janitor, options).await)
            } else {
                None
            }
        },
    );
    postgres.into_iter().chain(sqlite).collect()
}

/// Rehearses the migrations of `backend`; never returns early without a report.
pub async fn rehearse(
    backend: Backend,
    app: &AppUnderTest<'_>,
    pg: &PgOptions,
    janitor: &Janitor,
    options: Options,
) -> BackendReport {
    let mut report = BackendReport::new(backend);
    if backend == Backend::Postgres {
        report.pg_major = options.pg_major;
    }
    // The file checks (integrity, parity, lint) need no database: they run on a blocking
    // thread while the database is provisioned and the migrations rehearsed.
    let config = app.config.clone();
    let file_checks =
        tokio::task::spawn_blocking(move || crate::static_checks::run(&config, backend));
    let started = Instant::now();
    if let Err(failure) = run(&mut report, app, pg, janitor, options).await {
        report.fatal = Some(failure);
    }
    report.took = started.elapsed();
    match file_checks.await {
        Ok(file_checks) => {
            report.checks.splice(0..0, file_checks.outcomes);
            report.notes.splice(0..0, file_checks.notes);
            report.lint_findings = file_checks.findings;
        }
        Err(error) => {
            report.fatal.get_or_insert_with(|| {
                Failure::new(format!(
                    "the file checks (integrity, parity, lint) stopped: {error}"
                ))
            });
        }
    }
    report
}

async fn run(
    report: &mut BackendReport,
    app: &AppUnderTest<'_>,
    pg: &PgOptions,
    janitor: &Janitor,
    options: Options,
) -> Result<(), Failure> {
    let backend = report.backend;
    let config = &app.config;
    let set = MigrationSet::load(config, backend, app.embedded)
        .await
        .map_err(|error| Failure::new(format!("{error:#}")))?;
    report.source = if set.embedded {
        "embedded in the app".to_string()
    } else {
        crate::display_path(&set.dir)
    };
    report.migrations_total = set.ups().count();
    check_versions(config, &set, options)?;

    let phase = Instant::now();
    let database = match backend {
        Backend::Postgres => provision::postgres(pg, janitor).await,
        Backend::Sqlite => provision::sqlite(janitor),
    }
    .map_err(|error| Failure::new(format!("provision: {error:#}")))?;
    report.provider = Some(database.provider.to_string());
    if let Some(note) = &database.note {
        report.notes.push(format!("provider: {note}"));
    }
    options.progress.say(
        &report.name(),
        &format!(
            "database ready from {} in {:.2} s",
            database.provider,
            database.startup.as_secs_f64()
        ),
    );
    let split = match split(config, &set, options) {
        Ok(split) => split,
        Err(why) => {
            report.notes.push(format!(
                "rehearsed on one database, not on two at once: {why}"
            ));
            None
        }
    };
    // The second database is made while the first is opened.
    let make_second = async {
        let Some(split) = split else {
            return Ok(None);
        };
        let url = provision::another_postgres_database(pg, &database, janitor)
            .await
            .map_err(|error| (split, Failure::new(format!("{error:#}"))))?;
        let (conn, writes) = open(backend, &url, config, options)
            .await
            .map_err(|failure| (split, failure))?;
        Ok(Some(Second {
            split,
            conn,
            url,
            writes,
        }))
    };
    let (first, second) = tokio::join!(open(backend, &database.url, config, options), make_second);
    let (conn, writes) = first?;
    let second = second.unwrap_or_else(|(split, failure)| {
        report.notes.push(format!(
            "rehearsed on one database: a second one {} could not be made: {}",
            split.purpose(),
            failure.problem
        ));
        None
    });
    report.phases.push(("provision", phase.elapsed()));

    let mut rehearsal = Rehearsal::new(
        app,
        &set,
        (conn, database.url.clone(), writes),
        options,
        report,
    );
    rehearsal.second = second;
    let result = rehearsal.run().await;
    if let Some(conn) = rehearsal.conn.take() {
        conn.close().await;
    }
    let report = rehearsal.report;
    options.progress.say(
        &report.name(),
        &format!(
            "{} of {} migrations applied, {} checks run{}",
            report.steps.len(),
            report.migrations_total,
            report.checks.len(),
            if result.is_err() {
                ", stopped by a failure"
            } else {
                ""
            }
        ),
    );
    result
}

/// Resolves once `flag` is raised; never when its sender is gone first.
async fn raised(mut flag: tokio::sync::watch::Receiver<bool>) {
    if flag.wait_for(|raised| *raised).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What a rehearsal's SQLite database does not need: its writes surviving a crash of the
/// machine (the PostgreSQL servers run with `fsync` off likewise). A transaction still
/// rolls back; the app's own migration PRAGMAs, set after these, win over them. About a
/// sixth of the SQLite rehearsal's processor time (a 300 migration history).
const THROWAWAY_PRAGMAS: [(&str, &str); 2] = [("synchronous", "OFF"), ("journal_mode", "MEMORY")];

/// A connection for the rehearsal: the app's migration PRAGMAs (SQLite), the statement
/// timeout (PostgreSQL), and on SQLite the tracking of the tables it writes.
async fn open(
    backend: Backend,
    url: &str,
    config: &Config,
    options: Options,
) -> Result<(Conn, Option<tenantgate::db::Writes>), Failure> {
    let pragmas: Vec<(String, String)> = THROWAWAY_PRAGMAS
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .chain(config.sqlite.migration_pragmas.iter().cloned())
        .collect();
    let mut conn = Conn::connect_with_pragmas(backend, url, &pragmas)
        .await
        .map_err(|error| Failure::new(format!("{error:#}")))?;
    let timeout = options.statement_timeout(config);
    if backend == Backend::Postgres && !timeout.is_zero() {
        conn.execute(&format!("SET statement_timeout = {}", timeout.as_millis()))
            .await
            .map_err(|error| Failure::new(format!("set the statement timeout: {error}")))?;
    }
    let writes = conn
        .track_writes()
        .await
        .map_err(|error| Failure::new(format!("{error:#}")))?;
    Ok((conn, writes))
}

/// How a PostgreSQL history uses a second database of its server, beside the first
/// ([`halves`]): the first rehearses the history up to `at` and applies the rest plainly;
/// the second applies it up to there and rehearses the rest (at 0, all of it: the reversal
/// pass).
#[derive(Clone, Copy, Debug)]
struct Split {
    at: usize,
}

impl Split {
    /// What the second database is for, as a note says it.
    fn purpose(self) -> &'static str {
        match self.at {
            0 => "for the reversal pass",
            _ => "for the history's second half",
        }
    }
}

/// The second database of a [`Split`] history, and its connection.
struct Second {
    split: Split,
    conn: Conn,
    url: String,
    writes: Option<tenantgate::db::Writes>,
}

/// How a PostgreSQL history is split over two databases, `None` for one rehearsed on one
/// database as a matter of course (SQLite, no reversal, `--rows`, nothing to reverse), or
/// why it is not split.
fn split(config: &Config, set: &MigrationSet, options: Options) -> Result<Option<Split>, String> {
    let migrations: Vec<&sqlx::migrate::Migration> = set.ups().collect();
    let reversed: Vec<bool> = migrations
        .iter()
        .map(|m| !config.in_baseline(m.version))
        .collect();
    let to_reverse = reversed.iter().filter(|r| **r).count();
    if set.backend != Backend::Postgres
        || !options.reversibility
        || options.rows > 0
        || to_reverse == 0
    {
        return Ok(None);
    }
    let long = to_reverse >= halves::SAYS_WHY_FROM;
    let texts = halves::texts(&migrations, |v| set.down_of(v), |v, up| set.file(v, up));
    if let Some(why) = halves::server_wide(texts.iter().map(|(sql, file)| (*sql, file.clone()))) {
        // A short history loses a fraction of a second to it: not worth a note.
        return if long { Err(why) } else { Ok(None) };
    }
    let final_cost = halves::final_cost(migrations.iter().map(|m| m.sql.as_str()), |table| {
        config.is_global(table)
    });
    Ok(Some(Split {
        at: halves::split_at(&reversed, final_cost),
    }))
}

/// The versions the configuration names exist among the migrations.
fn check_versions(config: &Config, set: &MigrationSet, options: Options) -> Result<(), Failure> {
    let config_file = crate::display_path(&config.path);
    let versions: BTreeSet<i64> = set.ups().map(|m| m.version).collect();
    if let Some(fixtures) = &config.fixtures
        && !versions.contains(&fixtures.seed_at_version)
    {
        return Err(Failure::new(format!(
            "fixtures.seed_at_version = {} in {config_file}, but {} has no migration with that version",
            fixtures.seed_at_version,
            crate::display_path(&set.dir)
        ))
        .fix(format!(
            "set it to the version the fixture's rows belong after (one of {})",
            versions.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
        ))
        .in_file(config_file.clone()));
    }
    let newest = versions.iter().next_back().copied().unwrap_or(0);
    if config.tenancy.isolated_from_version > newest {
        return Err(Failure::new(format!(
            "tenancy.isolated_from_version = {} in {config_file}, but the newest migration of {} is {newest}: the isolation rules would never run after a step",
            config.tenancy.isolated_from_version,
            crate::display_path(&set.dir)
        ))
        .fix("set it to the first version after which the isolation rules must hold (the migration that finishes tenancy), or remove it to check every step")
        .in_file(config_file.clone()));
    }
    if options.rows > 0 && config.fixtures.is_none() {
        return Err(Failure::new(format!(
            "--rows {} needs a version to generate the rows at, and {config_file} has no [fixtures]",
            options.rows
        ))
        .fix("add `[fixtures]` with `seed_at_version = <version>` (a `seed` file is optional)")
        .in_file(config_file));
    }
    Ok(())
}

/// Row counts right after the fixture, and which tables had no tenant column yet (their
/// rows predate tenancy and must end up with the default tenant).
pub struct Seeded {
    pub counts: BTreeMap<String, i64>,
    pub before_tenancy: BTreeSet<String>,
    pub version: i64,
}

/// What the post-migration checks read from the final database ([`Rehearsal::final_reads`]).
struct FinalReads {
    schema: Schema,
    /// The checks' outcomes, before the steps' findings complete them.
    checks: Vec<CheckOutcome>,
    notes: Vec<String>,
    took: Duration,
}

/// The behavioural isolation cases' findings and time, or why they did not run.
enum Behaviour {
    Ran(isolation::BehaviourReport, Duration),
    NotRun(String),
}

/// The static-rule failures seen after an intermediate migration.
struct StepFailure {
    file: String,
    rule: &'static str,
    failure: Failure,
}

/// One rehearsal under way: the database, the migrations, and what the steps found so far.
struct Rehearsal<'r, 'a> {
    app: &'r AppUnderTest<'a>,
    config: &'r Config,
    set: &'r MigrationSet,
    /// The open connection (taken to close it).
    conn: Option<Conn>,
    url: String,
    options: Options,
    report: &'r mut BackendReport,
    /// Which migration file created each table.
    created_by: BTreeMap<String, String>,
    known_tables: Vec<String>,
    seeded: Option<Seeded>,
    step_failures: Vec<StepFailure>,
    /// The migrations the static rules ran after, in order.
    checked_steps: Vec<String>,
    /// Foreign keys left pointing at a table that does not exist, after a step (SQLite).
    dangling: Vec<Failure>,
    /// The `[[global_tables]]` and `[[tables]]` names that existed after some migration.
    declared_seen: BTreeSet<String>,
    /// `[[functions]]` entries that named a function after some checked migration.
    functions_seen: BTreeSet<String>,
    reversibility: reversibility::Pass,
    seed_time: Duration,
    generate_time: Duration,
    /// A second database of the server and what it is for ([`Split`]), taken when the
    /// migrations are applied.
    second: Option<Second>,
    /// With a second database of the server, a lock for each migration (by its index in
    /// the history) that writes what the whole server shares ([`halves::shares_server`]),
    /// held while a database applies, reverses and reads it: the two never run such a
    /// migration at once (both would create the same role unless it existed, and one
    /// would fail for it). Others are not locked: the first database's plain applies
    /// overtake the second's rehearsal.
    exclusive: Option<std::sync::Arc<[Option<tokio::sync::Mutex<()>>]>>,
    /// The pass stopped on a failure that its outcome explains (a migration that did not
    /// apply again after its down).
    outcome_due: bool,
    /// The last schema read after a step that was not reversed, with its marks, so that
    /// the next such read reads again only the tables that changed.
    last_read: Option<(Schema, tenantgate::schema::Marks)>,
}

impl<'r, 'a> Rehearsal<'r, 'a> {
    /// A rehearsal that has done nothing yet, on `conn` (to the database at `url`, its
    /// writes tracked by `writes` on SQLite).
    fn new(
        app: &'r AppUnderTest<'a>,
        set: &'r MigrationSet,
        (conn, url, writes): (Conn, String, Option<tenantgate::db::Writes>),
        options: Options,
        report: &'r mut BackendReport,
    ) -> Rehearsal<'r, 'a> {
        Rehearsal {
            app,
            config: &app.config,
            set,
            conn: Some(conn),
            url,
            options,
            report,
            created_by: BTreeMap::new(),
            known_tables: Vec::new(),
            seeded: None,
            step_failures: Vec::new(),
            checked_steps: Vec::new(),
            dangling: Vec::new(),
            declared_seen: BTreeSet::new(),
            functions_seen: BTreeSet::new(),
            reversibility: reversibility::Pass {
                writes,
                ..reversibility::Pass::default()
            },
            seed_time: Duration::ZERO,
            generate_time: Duration::ZERO,
            second: None,
            exclusive: None,
            outcome_due: false,
            last_read: None,
        }
    }

    fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("the connection is open until the end")
    }

    fn backend(&self) -> Backend {
        self.report.backend
    }

    async fn run(&mut self) -> Result<(), Failure> {
        let table = self.set.table().to_string();
        self.conn()
            .ensure_migrations_table(&table)
            .await
            .map_err(|error| {
                Failure::new(format!("create the migrations table `{table}`: {error}"))
            })?;
        self.known_tables = self.tables().await?;
        if let Some(second) = self.second.take() {
            return self.rehearse_split(second).await;
        }
        self.apply_all().await?;
        self.reconnect_for_checks().await?;
        let mut reads = self.final_reads().await?;
        self.final_checks(&mut reads);
        self.snapshot(&reads.schema);
        let behaviour = self.isolation_cases(&reads.schema).await;
        self.record_behaviour(behaviour);
        Ok(())
    }

    async fn tables(&mut self) -> Result<Vec<String>, Failure> {
        self.conn()
            .tables(&Scope::Database)
            .await
            .map_err(|error| Failure::new(format!("{error:#}")))
    }

    async fn schema(&mut self, after: &str) -> Result<Schema, Failure> {
        let table = self.set.table().to_string();
        Schema::read(self.conn(), &table, &Scope::Database)
            .await
            .map_err(|error| Failure::new(format!("introspect the schema {after}: {error:#}")))
    }

    /// The schema after `file`, a step that was not reversed: only the tables that changed
    /// since the last such read are read again ([`Schema::read_changed`]); a whole read
    /// after every step made a long history four times slower without the reversals
    /// than with them.
    async fn schema_changed(
        &mut self,
        file: &str,
    ) -> Result<(Schema, tenantgate::schema::Marks), Failure> {
        let table = self.set.table().to_string();
        let last = self.last_read.take();
        let known = last.as_ref().map(|(schema, marks)| (schema, marks));
        Schema::read_changed(self.conn(), &table, known)
            .await
            .map_err(|error| Failure::new(format!("introspect the schema after {file}: {error:#}")))
    }

    /// Every migration in order: apply, reverse, note its tables, check the step, seed.
    async fn apply_all(&mut self) -> Result<(), Failure> {
        let phase = Instant::now();
        let migrations: Vec<sqlx::migrate::Migration> = self.set.ups().cloned().collect();
        self.note_baseline(&migrations);
        if let Err(fatal) = self.apply_range(&migrations, 0, true).await {
            self.close_failed_pass();
            return Err(fatal);
        }
        self.report.phases.push((
            "migrate",
            phase
                .elapsed()
                .saturating_sub(self.seed_time)
                .saturating_sub(self.generate_time)
                .saturating_sub(self.reversibility.time),
        ));
        if self.options.rows > 0 {
            self.report.phases.push(("generate", self.generate_time));
        }
        self.close_pass();
        Ok(())
    }

    /// The baseline's migrations, which are applied but not judged.
    fn note_baseline(&mut self, migrations: &[sqlx::migrate::Migration]) {
        let baseline: Vec<i64> = migrations
            .iter()
            .map(|m| m.version)
            .filter(|v| self.config.in_baseline(*v))
            .collect();
        if let (Some(first), Some(end)) = (baseline.first(), baseline.last()) {
            let range = if first == end {
                format!("{first:04} is")
            } else {
                format!("{} migrations, {first:04}–{end:04}, are", baseline.len())
            };
            self.report.notes.push(format!(
                "baseline: {range} adopted history: not linted, not reversed, the steps between them not checked"
            ));
        }
    }

    /// A history stopped by a failure: what the reversal pass found about the migrations
    /// before it still counts (an outcome only with a failure: the pass did not finish).
    fn close_failed_pass(&mut self) {
        if self.options.reversibility
            && (self.outcome_due || !self.reversibility.failures.is_empty())
        {
            self.report.checks.push(self.reversibility.outcome());
        }
    }

    /// The reversal pass's time, notes and outcome, after every migration applied.
    fn close_pass(&mut self) {
        if self.options.reversibility {
            self.report
                .phases
                .push(("reversibility", self.reversibility.time));
            self.report.notes.extend(self.reversibility.notes.clone());
            self.report.checks.push(self.reversibility.outcome());
        } else {
            self.report
                .notes
                .push("reversibility: not checked (--no-reversibility)".to_string());
        }
    }

    /// `migrations` (from index `from` of the history) in order on this rehearsal's
    /// database: rehearsed, or with `rehearse` false only applied (their tables noted, the
    /// fixture loaded at its version).
    async fn apply_range(
        &mut self,
        migrations: &[sqlx::migrate::Migration],
        from: usize,
        rehearse: bool,
    ) -> Result<(), Failure> {
        // The database as it is now, when it was read after the last step and nothing has
        // changed it since: the state before the next migration, read once per step, not
        // once before and once after.
        let mut current: Option<reversibility::State> = None;
        for (index, migration) in migrations.iter().enumerate() {
            let file = self.set.file(migration.version, true);
            let seeds = self
                .config
                .fixtures
                .as_ref()
                .is_some_and(|f| f.seed_at_version == migration.version);
            let exclusive = self.exclusive.clone();
            let _running = match exclusive
                .as_deref()
                .and_then(|locks| locks[from + index].as_ref())
            {
                Some(lock) => Some(lock.lock().await),
                None => None,
            };
            if !rehearse {
                self.apply(migration, &file).await?;
                self.note_tables(&file).await?;
                self.dangling_foreign_keys(&file).await;
                if seeds {
                    self.seed(migration.version).await?;
                }
                continue;
            }
            let reverse = self.options.reversibility && !self.config.in_baseline(migration.version);
            let before = match (reverse, current.take()) {
                (true, Some(state)) => Some(state),
                (true, None) => Some(self.state(None).await?),
                (false, _) => None,
            };
            self.apply(migration, &file).await?;
            if let Some(before) = &before {
                let started = Instant::now();
                let table = self.set.table().to_string();
                let conn = self.conn.as_mut().expect("open");
                let reversed = self
                    .reversibility
                    .reverse(conn, self.set, self.config, &table, migration, before)
                    .await;
                self.reversibility.time += started.elapsed();
                if let Err(fatal) = reversed {
                    // Keep what the pass found (the schema diff says why the up failed again).
                    self.outcome_due = true;
                    return Err(fatal);
                }
            }
            self.note_tables(&file).await?;
            self.dangling_foreign_keys(&file).await;
            let checked = self.checks_step(migration.version);
            // Read once for both: the rules of this step, and the next reversal's "before"
            // (unless the fixture changes the rows in between).
            let after = if self.options.reversibility && !seeds {
                Some(self.state(before.as_ref()).await?)
            } else {
                None
            };
            if checked {
                match &after {
                    Some(state) => self.check_step(&file, &state.read).await,
                    None => {
                        let (schema, marks) = self.schema_changed(&file).await?;
                        self.check_step(&file, &schema).await;
                        self.last_read = Some((schema, marks));
                    }
                }
            }
            current = after;
            if seeds {
                self.seed(migration.version).await?;
            }
        }
        Ok(())
    }

    /// [`Split`]: this database rehearses the history up to `at`, applies the rest plainly
    /// and goes on to the final checks, the snapshot and the cases, while `second` (a
    /// database on the same server) applies the history up to `at` and rehearses the rest
    /// ([`halves`]). The second's findings are merged before the final checks' outcomes
    /// are completed with them. A failure that stops either rehearsal stops the history
    /// there, as on one database.
    async fn rehearse_split(&mut self, second: Second) -> Result<(), Failure> {
        let migrations: Vec<sqlx::migrate::Migration> = self.set.ups().cloned().collect();
        self.note_baseline(&migrations);
        let at = second.split.at;
        let mut report = self.second_report();
        let mut other = self
            .on_the_second_database((second.conn, second.url, second.writes), &mut report)
            .await?;
        let shares_server = |version: i64, sql: &str| {
            halves::shares_server(sql)
                || self
                    .set
                    .down_of(version)
                    .is_some_and(|down| halves::shares_server(down.sql.as_str()))
        };
        let locks: std::sync::Arc<[Option<tokio::sync::Mutex<()>>]> = migrations
            .iter()
            .map(|m| shares_server(m.version, m.sql.as_str()).then(|| tokio::sync::Mutex::new(())))
            .collect();
        self.exclusive = Some(std::sync::Arc::clone(&locks));
        other.exclusive = Some(locks);
        let started = Instant::now();
        // A failure of either part ends the other's work, which is then moot: the
        // second's, once the first's part failed; the first's plain applies, final
        // checks and cases, once the second's did (the first's own part goes on: a
        // failure there is earlier in the history, and it is the one reported).
        let (first_failed, first_stopped) = tokio::sync::watch::channel(false);
        let (second_failed, second_stopped) = tokio::sync::watch::channel(false);
        let (main, rehearsed) = tokio::join!(
            async {
                if let Err(fatal) = self.apply_range(&migrations[..at], 0, true).await {
                    first_failed.send_replace(true);
                    return Err((true, fatal));
                }
                let rest = async {
                    let stopped = |fatal| (false, fatal);
                    let applied = self.apply_range(&migrations[at..], at, false).await;
                    let done = started.elapsed();
                    applied.map_err(stopped)?;
                    self.reconnect_for_checks().await.map_err(stopped)?;
                    let reads = self.final_reads().await.map_err(stopped)?;
                    let behaviour = self.isolation_cases(&reads.schema).await;
                    Ok((done, reads, behaviour))
                };
                tokio::select! {
                    rest = rest => rest,
                    () = raised(second_stopped) => {
                        Err((false, Failure::new("stopped: the second database's part failed")))
                    }
                }
            },
            async {
                let part = async {
                    other.apply_range(&migrations[..at], 0, false).await?;
                    other.apply_range(&migrations[at..], at, true).await
                };
                let result = tokio::select! {
                    result = part => result,
                    () = raised(first_stopped) => {
                        Err(Failure::new("stopped: the first database's part failed"))
                    }
                };
                if result.is_err() {
                    second_failed.send_replace(true);
                }
                (result, started.elapsed())
            },
        );
        self.exclusive = None;
        let (rehearsed, other_took) = rehearsed;
        if let Some(conn) = other.conn.take() {
            conn.close().await;
        }
        let (first, last) = (
            migrations[0].version,
            migrations[migrations.len() - 1].version,
        );
        let main = match main {
            // The history stops where this database's part failed; the other's is moot,
            // and was stopped.
            Err((true, fatal)) => {
                let reached = other.report.steps.last().map(|step| step.version);
                if let Some(reached) = reached.filter(|reached| *reached < last) {
                    self.report.notes.push(format!(
                        "reversibility: the second database stopped after {reached:04} once the first's part had failed; the migrations after the failure were not rehearsed"
                    ));
                }
                self.close_failed_pass();
                return Err(fatal);
            }
            Err((false, fatal)) => Err(fatal),
            Ok(main) => Ok(main),
        };
        let own_reversals = self.reversibility.time;
        self.absorb(&mut other);
        drop(other);
        self.report.notes.append(&mut report.notes);
        self.report.isolation_steps_checked += report.isolation_steps_checked;
        let from = migrations.get(at).map_or(i64::MAX, |m| m.version);
        if let Err(fatal) = rehearsed {
            // The history stops where the second's rehearsal did; from `at` on, the
            // steps are the second's.
            self.report.steps.retain(|s| s.version < from);
            self.report
                .steps
                .extend(report.steps.into_iter().filter(|s| s.version >= from));
            self.close_failed_pass();
            return Err(fatal);
        }
        let (done, mut reads, behaviour) = match main {
            Ok(main) => main,
            Err(fatal) => {
                self.close_pass();
                return Err(fatal);
            }
        };
        // The history's time: this database's plain work (its migrations less its own
        // reversals and the fixture), and the reversal pass's share, the rest: its own
        // reversals and the time the second database took beyond its migrations.
        let migrate = done
            .saturating_sub(own_reversals)
            .saturating_sub(self.seed_time);
        self.reversibility.time = other_took.saturating_sub(done) + own_reversals;
        self.report.phases.push(("migrate", migrate));
        self.close_pass();
        self.report.notes.push(match at {
            0 => "reversibility: rehearsed on a second database of the server, beside the final checks and the cases on the first".to_string(),
            _ => {
                let before = migrations[at - 1].version;
                format!(
                    "reversibility: rehearsed in two halves at once, on two databases of the server: {first:04}–{before:04} on the first, which then applied {from:04}–{last:04} and ran the final checks and the cases; {from:04}–{last:04} on the second after it applied {first:04}–{before:04}"
                )
            }
        });
        self.final_checks(&mut reads);
        self.snapshot(&reads.schema);
        self.record_behaviour(behaviour);
        Ok(())
    }

    /// An empty report for this history's rehearsal on a second database of the server,
    /// named as this one's.
    fn second_report(&self) -> BackendReport {
        let mut report = BackendReport::new(self.backend());
        report.pg_major = self.report.pg_major;
        report
    }

    /// The same history's rehearsal on a second database of the server (`conn`, to the
    /// database at `url`), reporting into `report`: its migrations table made, the
    /// tables this one found noted.
    async fn on_the_second_database<'s>(
        &self,
        (conn, url, writes): (Conn, String, Option<tenantgate::db::Writes>),
        report: &'s mut BackendReport,
    ) -> Result<Rehearsal<'s, 'a>, Failure>
    where
        'r: 's,
    {
        let mut second = Rehearsal::new(
            self.app,
            self.set,
            (conn, url, writes),
            self.options,
            report,
        );
        second.known_tables = self.known_tables.clone();
        let table = self.set.table().to_string();
        second
            .conn()
            .ensure_migrations_table(&table)
            .await
            .map_err(|error| {
                Failure::new(format!(
                    "create the migrations table `{table}` in the second database: {error}"
                ))
            })?;
        Ok(second)
    }

    /// What `other`, a rehearsal of the same history on another database, found: its
    /// reversals and their notes, the static rules after its steps, the declared tables
    /// and functions it saw.
    fn absorb(&mut self, other: &mut Rehearsal<'_, '_>) {
        let pass = &mut other.reversibility;
        self.reversibility.judged += pass.judged;
        self.reversibility.failures.append(&mut pass.failures);
        self.reversibility.notes.append(&mut pass.notes);
        self.reversibility
            .unused_acknowledgements
            .append(&mut pass.unused_acknowledgements);
        self.step_failures.append(&mut other.step_failures);
        self.checked_steps.append(&mut other.checked_steps);
        self.dangling.append(&mut other.dangling);
        self.declared_seen.append(&mut other.declared_seen);
        self.functions_seen.append(&mut other.functions_seen);
        self.outcome_due |= other.outcome_due;
    }

    /// The schema text and the row count of every table, as a reversal compares them.
    /// The database's state; `previous`, read on this connection, spares re-digesting
    /// the tables nothing has written to since.
    async fn state(
        &mut self,
        previous: Option<&reversibility::State>,
    ) -> Result<reversibility::State, Failure> {
        let started = Instant::now();
        let table = self.set.table().to_string();
        let writes = self.reversibility.writes.clone();
        let state =
            reversibility::State::read(self.conn(), &table, previous, writes.as_ref()).await;
        self.reversibility.time += started.elapsed();
        state
    }

    /// Applies one migration, timed, under the statement timeout (PostgreSQL's
    /// `statement_timeout`; on SQLite an interrupt when it expires), saying every ten
    /// seconds that it still runs.
    async fn apply(
        &mut self,
        migration: &sqlx::migrate::Migration,
        file: &str,
    ) -> Result<(), Failure> {
        let table = self.set.table().to_string();
        let started = Instant::now();
        let timeout = self.options.statement_timeout(self.config);
        let (progress, name) = (self.options.progress, self.report.name());
        let interrupter = self.conn().sqlite_interrupter().await;
        let expired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = match interrupter {
            Some(interrupter) if !timeout.is_zero() => {
                let expired = std::sync::Arc::clone(&expired);
                Some(tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    expired.store(true, std::sync::atomic::Ordering::SeqCst);
                    // SAFETY: the watchdog is aborted before the apply returns, and the
                    // connection outlives the apply.
                    unsafe { interrupter.interrupt() };
                }))
            }
            _ => None,
        };
        let applied = {
            let writes = self.reversibility.writes.clone();
            let apply = self
                .conn
                .as_mut()
                .expect("the connection is open until the end")
                .apply_tracked(&table, migration, true, writes.as_ref());
            tokio::pin!(apply);
            let mut heartbeat = tokio::time::interval_at(
                tokio::time::Instant::now() + Duration::from_secs(10),
                Duration::from_secs(10),
            );
            loop {
                tokio::select! {
                    result = &mut apply => break result,
                    _ = heartbeat.tick() => progress.say(
                        &name,
                        &format!("{file} still running after {:.0} s", started.elapsed().as_secs_f64()),
                    ),
                }
            }
        };
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        let duration = applied.map_err(|error| {
            let mut failure = errors::apply_failure(file, migration.sql.as_str(), error);
            let timed_out = expired.load(std::sync::atomic::Ordering::SeqCst)
                || failure.problem.contains("(57014)");
            if timed_out && !timeout.is_zero() {
                failure.problem = format!(
                    "{file} ran longer than the statement timeout ({}) and was cancelled: {}",
                    humantime(timeout),
                    failure.problem
                );
                failure.fix = Some(format!(
                    "make it faster (batches, NOT VALID then VALIDATE, CONCURRENTLY), or raise `statement_timeout` under [migrations] in {} or pass --statement-timeout",
                    crate::display_path(&self.config.path)
                ));
            }
            failure
        })?;
        self.report.steps.push(Step {
            version: migration.version,
            file: file.to_string(),
            started,
            duration,
        });
        Ok(())
    }

    /// SQLite keeps a foreign key whose parent table no longer exists (PostgreSQL drops it
    /// with the table, or refuses): every insert into the child then fails until a later
    /// migration brings the parent back, and the app can be deployed in between.
    async fn dangling_foreign_keys(&mut self, file: &str) {
        if self.backend() != Backend::Sqlite {
            return;
        }
        let sql = "SELECT m.name || ' (' || p.\"from\" || ') → ' || p.\"table\" FROM sqlite_master m \
                   JOIN pragma_foreign_key_list(m.name) p \
                   WHERE m.type = 'table' AND lower(p.\"table\") NOT IN (SELECT lower(name) FROM sqlite_master WHERE type = 'table') \
                   ORDER BY 1";
        let Ok(dangling) = self.conn().texts(sql).await else {
            return;
        };
        for reference in dangling {
            let (child, parent) = reference.split_once(" → ").unwrap_or((&reference, ""));
            let table = child.split(" (").next().unwrap_or(child).to_string();
            self.dangling.push(
                Failure::new(format!(
                    "after {file}, the foreign key of `{child}` references `{parent}`, which does not exist: every insert into `{table}` fails until a migration creates `{parent}` again"
                ))
                .fix(format!("rebuild `{table}` (or create `{parent}`) in {file} itself, so that no deployed version has the dangling reference"))
                .in_file(file.to_string())
                .about(table),
            );
        }
    }

    /// Notes which migration created each new table, and which declared tables exist.
    async fn note_tables(&mut self, file: &str) -> Result<(), Failure> {
        let tables = self.tables().await?;
        for table in tables.iter().filter(|t| !self.known_tables.contains(*t)) {
            self.created_by.insert(table.clone(), file.to_string());
        }
        let declared = self
            .config
            .global_tables
            .iter()
            .map(|g| &g.name)
            .chain(self.config.tables.iter().map(|t| &t.name));
        for name in declared {
            if tables
                .iter()
                .any(|t| tenantgate::config::same_table(t, name))
            {
                self.declared_seen.insert(name.clone());
            }
        }
        self.known_tables = tables;
        Ok(())
    }

    /// The static isolation rules after an intermediate migration: the app may be
    /// deployed between a migration that opens a gap and the one that closes it.
    fn checks_step(&self, version: i64) -> bool {
        version >= self.config.tenancy.isolated_from_version && !self.config.in_baseline(version)
    }

    async fn check_step(&mut self, file: &str, schema: &Schema) {
        self.note_functions(schema);
        self.checked_steps.push(file.to_string());
        let created_by = self.created_by.clone();
        let config = self.config;
        let outcomes =
            checks::static_isolation_rules(self.conn(), config, schema, &created_by).await;
        for outcome in outcomes {
            for failure in outcome.failures {
                self.step_failures.push(StepFailure {
                    file: file.to_string(),
                    rule: outcome.name,
                    failure,
                });
            }
        }
        self.report.isolation_steps_checked += 1;
    }

    /// Loads the fixture (and `--rows` generated rows) after the migration of `version`.
    async fn seed(&mut self, version: i64) -> Result<(), Failure> {
        let started = Instant::now();
        let fixtures = self
            .config
            .fixtures
            .as_ref()
            .expect("seeding at the fixture's version");
        if let Some(seed) = &fixtures.seed {
            let file = crate::display_path(seed);
            let sql = std::fs::read_to_string(seed).map_err(|error| {
                Failure::new(format!("read the fixture {file}: {error}")).in_file(file.clone())
            })?;
            let wrapped = format!("BEGIN;\n{sql}\n;COMMIT;");
            if let Err(error) = self.conn().execute(&wrapped).await {
                let _ = self.conn().execute("ROLLBACK").await;
                let mut failure = sql_failure(&file, &wrapped, &error, 1);
                failure.problem =
                    format!("load the fixture at version {version}: {}", failure.problem);
                return Err(failure);
            }
            self.conn().realign_sequences().await.map_err(|error| {
                Failure::new(format!(
                    "realign identity sequences after the fixture: {error}"
                ))
            })?;
        }
        if self.options.rows > 0 {
            let generating = Instant::now();
            let schema = self.schema("at the fixture's version").await?;
            let config = self.config;
            let (rows, seed) = (self.options.rows, self.options.rows_seed);
            let tables = crate::volume::generate(self.conn(), config, &schema, rows, seed).await?;
            self.generate_time = generating.elapsed();
            self.report.notes.push(format!(
                "volume: {rows} generated rows in each of {} tables (seed {seed}) in {:.2} s",
                tables.len(),
                self.generate_time.as_secs_f64()
            ));
        }
        let table = self.set.table().to_string();
        let counts = self
            .conn()
            .row_counts(&Scope::Database, Some(&table))
            .await
            .map_err(|error| Failure::new(format!("{error:#}")))?;
        let schema = self.schema("at the fixture's version").await?;
        let before_tenancy = schema
            .tables
            .iter()
            .filter(|(name, table)| {
                !self.config.is_global(name)
                    && self.config.owner_of(name).is_none()
                    && table.column(self.config.tenant_column(name)).is_none()
            })
            .map(|(name, _)| name.clone())
            .collect();
        self.seeded = Some(Seeded {
            counts,
            before_tenancy,
            version,
        });
        self.seed_time = started.elapsed().saturating_sub(self.generate_time);
        Ok(())
    }

    /// The migrations ran with the app's migration PRAGMAs (SQLite); the checks and the
    /// cases run as the app runs, with foreign keys enforced.
    async fn reconnect_for_checks(&mut self) -> Result<(), Failure> {
        if self.backend() == Backend::Sqlite && !self.config.sqlite.migration_pragmas.is_empty() {
            if let Some(conn) = self.conn.take() {
                conn.close().await;
            }
            self.conn = Some(
                Conn::connect(Backend::Sqlite, &self.url)
                    .await
                    .map_err(|error| Failure::new(format!("{error:#}")))?,
            );
        }
        Ok(())
    }

    /// The post-migration checks' work on the database: the final schema, and the checks
    /// run on it, before the steps' findings complete them ([`Rehearsal::final_checks`]).
    async fn final_reads(&mut self) -> Result<FinalReads, Failure> {
        let phase = Instant::now();
        let schema = self.schema("after the last migration").await?;
        self.note_functions(&schema);
        let after_seed: Vec<(String, String)> = match &self.seeded {
            Some(seeded) => self
                .set
                .ups()
                .filter(|m| m.version > seeded.version)
                .map(|m| (self.set.file(m.version, true), m.sql.as_str().to_string()))
                .collect(),
            None => Vec::new(),
        };
        let moved = self.declared_moves();
        let context = checks::Context {
            config: self.config,
            schema: &schema,
            seeded: self.seeded.as_ref(),
            created_by: &self.created_by,
            after_seed: after_seed.iter().map(|(file, _)| file.clone()).collect(),
            moved: &moved,
        };
        let conn = self.conn.as_mut().expect("open");
        let (checks, notes) = checks::run_all(conn, &context).await;
        Ok(FinalReads {
            schema,
            checks,
            notes,
            took: phase.elapsed(),
        })
    }

    /// The post-migration checks on the final schema ([`Rehearsal::final_reads`], which
    /// took `took`), with what the steps found: the step failures the final schema no
    /// longer has, the file that brought in each failure it has.
    fn final_checks(&mut self, reads: &mut FinalReads) {
        let phase = Instant::now();
        self.report.notes.append(&mut reads.notes);
        let mut final_checks = std::mem::take(&mut reads.checks);
        self.undeclared_tables(&mut final_checks);
        self.undeclared_functions(&mut final_checks);
        self.name_the_step(&mut final_checks);
        let between = self.between_steps(&final_checks);
        self.report.checks.extend(final_checks);
        self.report.checks.push(between);
        if self.backend() == Backend::Sqlite {
            self.report.checks.push(CheckOutcome {
                name: "foreign-key-targets",
                checked: self.report.steps.len(),
                failures: std::mem::take(&mut self.dangling),
            });
        }
        self.report
            .phases
            .push(("seed+checks", reads.took + phase.elapsed() + self.seed_time));
    }

    /// Tables whose row counts the migrations after the fixture declare they change, in
    /// their files or in the configuration's acknowledgements.
    fn declared_moves(&self) -> BTreeMap<String, String> {
        let mut moved = BTreeMap::new();
        let Some(seeded) = &self.seeded else {
            return moved;
        };
        for migration in self.set.ups().filter(|m| m.version > seeded.version) {
            let file = self.set.file(migration.version, true);
            for table in tenantgate::live::moves_data_in(migration.sql.as_str()) {
                moved.insert(table, file.clone());
            }
            let stem = self.set.stem(migration.version);
            for ack in self.config.acknowledged(
                tenantgate::config::Acknowledgement::MOVES_DATA,
                self.backend(),
                migration.version,
                &stem,
            ) {
                for table in &ack.tables {
                    moved.insert(
                        table.clone(),
                        format!("{file} (acknowledged: {})", ack.reason),
                    );
                }
            }
        }
        moved
    }

    /// Which `[[functions]]` entries name a function of `schema`.
    fn note_functions(&mut self, schema: &Schema) {
        for declared in &self.config.functions {
            if schema.objects.functions.keys().any(|s| declared.names(s)) {
                self.functions_seen.insert(declared.name.clone());
            }
        }
    }

    /// `[[functions]]` entries that name a function no checked migration made.
    fn undeclared_functions(&self, final_checks: &mut [CheckOutcome]) {
        let config_file = crate::display_path(&self.config.path);
        let missing: Vec<Failure> = self
            .config
            .functions
            .iter()
            .filter(|f| !self.functions_seen.contains(&f.name))
            .map(|f| {
                Failure::new(format!(
                    "[[functions]] names `{}`, but no such function exists after any migration",
                    f.name
                ))
                .fix(format!(
                    "remove the entry from {config_file} or correct its name (`name` or `name(argument types)`, schema-qualified outside public)"
                ))
                .in_file(config_file.clone())
            })
            .collect();
        if let Some(outcome) = final_checks
            .iter_mut()
            .find(|c| c.name == "function-search-path")
        {
            outcome.checked += missing.len();
            outcome.failures.extend(missing);
        }
    }

    /// `[[global_tables]]` and `[[tables]]` entries that name a table no migration made.
    fn undeclared_tables(&self, final_checks: &mut [CheckOutcome]) {
        let config_file = crate::display_path(&self.config.path);
        let missing: Vec<Failure> = self
            .config
            .global_tables
            .iter()
            .map(|g| (&g.name, "[[global_tables]]"))
            .chain(self.config.tables.iter().map(|t| (&t.name, "[[tables]]")))
            .filter(|(name, _)| !self.declared_seen.contains(*name))
            .map(|(name, section)| {
                Failure::new(format!(
                    "{section} names `{name}`, but no such table exists after any migration"
                ))
                .fix(format!(
                    "remove the entry from {config_file} or correct its name"
                ))
                .in_file(config_file.clone())
            })
            .collect();
        if let Some(outcome) = final_checks.iter_mut().find(|c| c.name == "global-tables") {
            outcome.checked += missing.len();
            outcome.failures.extend(missing);
        }
    }

    /// A static-rule failure of the final schema that appeared after a later migration
    /// than the first one checked is that migration's doing (an index, a foreign key, a
    /// policy it added to an older table): the failure names its file, not the file that
    /// created the table.
    fn name_the_step(&self, final_checks: &mut [CheckOutcome]) {
        let failed_after = |file: &str, rule: &str, problem: &str| {
            self.step_failures
                .iter()
                .any(|s| s.file == file && s.rule == rule && s.failure.problem == problem)
        };
        for outcome in final_checks
            .iter_mut()
            .filter(|c| tenantgate::rules::RULES.contains(&c.name))
        {
            for failure in &mut outcome.failures {
                let since = self
                    .checked_steps
                    .iter()
                    .rposition(|file| !failed_after(file, outcome.name, &failure.problem))
                    .map_or(0, |i| i + 1);
                if since > 0 && since < self.checked_steps.len() {
                    failure.file = Some(self.checked_steps[since].clone());
                    failure.line = None;
                }
            }
        }
    }

    /// The static-rule failures seen after an intermediate migration that the final
    /// schema no longer has: a later migration closed the gap, but not before a deploy
    /// could land between the two.
    fn between_steps(&mut self, final_checks: &[CheckOutcome]) -> CheckOutcome {
        let in_final = |rule: &str, problem: &str| {
            final_checks
                .iter()
                .any(|c| c.name == rule && c.failures.iter().any(|f| f.problem == problem))
        };
        let mut outcome = CheckOutcome::new("isolation-steps");
        outcome.checked = self.report.isolation_steps_checked;
        for step in std::mem::take(&mut self.step_failures) {
            if in_final(step.rule, &step.failure.problem) {
                continue;
            }
            let problem = format!(
                "after {}, {}: {} (a later migration closes this, but the app can be deployed between the two)",
                step.file, step.rule, step.failure.problem
            );
            if outcome.failures.iter().any(|f| f.problem == problem) {
                continue;
            }
            let mut failure = Failure::new(problem).in_file(step.file.clone());
            failure.fix = step
                .failure
                .fix
                .map(|fix| format!("in {} itself: {fix}", step.file));
            failure.object = step.failure.object;
            outcome.failures.push(failure);
        }
        outcome
    }

    /// The schema snapshot's check: now, or, with [`Options::defer_snapshot`], by the
    /// caller.
    fn snapshot(&mut self, schema: &Schema) {
        self.report.hold_snapshot(schema.render());
        if !self.options.defer_snapshot {
            self.report.check_snapshot(self.config);
        }
    }

    /// Last, because it adds tenants and rows: the behavioural isolation cases. They
    /// compare every row a tenant sees, so at `--rows` volume they would measure the
    /// comparison, not the migrations; the policies they test do not depend on volume.
    async fn isolation_cases(&mut self, schema: &Schema) -> Behaviour {
        if self.options.rows > 0 {
            return Behaviour::NotRun(format!(
                "isolation cases: not run at --rows {} (they test the policies, not the volume; run without --rows for them)",
                self.options.rows
            ));
        }
        let phase = Instant::now();
        let input = isolation::BehaviourInput {
            url: &self.url,
            config: self.config,
            schema,
            api: self.app.api,
        };
        let conn = self.conn.as_mut().expect("open");
        let behaviour = isolation::run_behaviour(conn, &input).await;
        Behaviour::Ran(behaviour, phase.elapsed())
    }

    /// The cases' outcome, notes and time in the report.
    fn record_behaviour(&mut self, behaviour: Behaviour) {
        match behaviour {
            Behaviour::NotRun(note) => self.report.notes.push(note),
            Behaviour::Ran(behaviour, took) => {
                self.report.isolation_cases = behaviour.cases;
                self.report.notes.extend(behaviour.notes);
                self.report.checks.push(CheckOutcome {
                    name: "isolation-behaviour",
                    checked: behaviour.cases,
                    failures: behaviour.failures,
                });
                self.report.phases.push(("isolation", took));
            }
        }
    }
}
