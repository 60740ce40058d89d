//! One backend's rehearsal, the heart of `cargo xtask migrate-test`: provision a fresh
//! database, apply the migrations one at a time, seed the fixture at the configured
//! version, apply the rest, run the post-migration checks, and assert the schema snapshot.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::migrate::{Migrate, MigrateError, Migration};
use sqlx::postgres::{PgDatabaseError, PgErrorPosition};

use app::Backend;

use crate::checks::{self, CheckOutcome, Failure};
use crate::config::Config;
use crate::db::Conn;
use crate::isolation;
use crate::migration_set::MigrationSet;
use crate::provision::{self, Janitor, PgOptions};
use crate::schema::Schema;

/// What a rehearsal did and found, for the report.
#[derive(Debug)]
pub struct BackendReport {
    pub backend: Backend,
    pub provider: Option<String>,
    /// "embedded in app" or the folder read from disk.
    pub source: String,
    pub migrations_total: usize,
    pub steps: Vec<Step>,
    pub checks: Vec<CheckOutcome>,
    pub phases: Vec<(&'static str, Duration)>,
    /// How many behavioural isolation cases ran.
    pub isolation_cases: usize,
    /// How many intermediate migration steps the static isolation rules ran after.
    pub isolation_steps_checked: usize,
    /// An error that stopped the rehearsal before its checks could run.
    pub fatal: Option<Failure>,
    /// Lines shown beside the table: new migrations, acknowledged lint findings,
    /// migrations marked irreversible.
    pub notes: Vec<String>,
    /// Lint findings on the new migrations, for `::error` annotations and the summary.
    pub lint_findings: Vec<crate::lint::Finding>,
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
}

/// How a rehearsal runs beyond the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub progress: Progress,
    /// Generated rows per table, added to the fixture at the seed version (`--rows N`).
    pub rows: u64,
    /// Seed of the row generator: the same seed gives the same rows.
    pub rows_seed: u64,
    /// Reverse every migration (up, down, compare, up again).
    pub reversibility: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            progress: Progress::Quiet,
            rows: 0,
            rows_seed: 1,
            reversibility: true,
        }
    }
}

/// Rehearses the migrations of `backend`; never returns early without a report.
pub async fn rehearse(
    backend: Backend,
    config: &Config,
    pg: &PgOptions,
    janitor: &Janitor,
    options: Options,
) -> BackendReport {
    let mut report = BackendReport {
        backend,
        provider: None,
        source: String::new(),
        migrations_total: 0,
        steps: Vec::new(),
        checks: Vec::new(),
        phases: Vec::new(),
        isolation_steps_checked: 0,
        isolation_cases: 0,
        fatal: None,
        notes: Vec::new(),
        lint_findings: Vec::new(),
    };
    // The file checks (integrity, parity, lint) need no database: they run on a blocking
    // thread while the database is provisioned and the migrations rehearsed.
    let owned_config = config.clone();
    let file_checks =
        tokio::task::spawn_blocking(move || crate::static_checks::run(&owned_config, backend));
    if let Err(failure) = run(&mut report, config, pg, janitor, options).await {
        report.fatal = Some(failure);
    }
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
    config: &Config,
    pg: &PgOptions,
    janitor: &Janitor,
    options: Options,
) -> Result<(), Failure> {
    let progress = options.progress;
    let backend = report.backend;
    let set = MigrationSet::load(backend, config.migrations_dir(backend))
        .await
        .map_err(|error| Failure::new(format!("{error:#}")))?;
    report.source = if set.embedded {
        "embedded in app".to_string()
    } else {
        crate::display_path(&set.dir)
    };
    report.migrations_total = set.ups().count();
    if !set.ups().any(|m| m.version == config.seed_at_version) {
        return Err(Failure::new(format!(
            "fixtures.seed_at_version = {} in {}, but {} has no migration with that version",
            config.seed_at_version,
            crate::display_path(&config.path),
            crate::display_path(&set.dir)
        )));
    }

    let phase = Instant::now();
    let database = match backend {
        Backend::Postgres => provision::postgres(pg, janitor).await,
        Backend::Sqlite => provision::sqlite(janitor),
    }
    .map_err(|error| Failure::new(format!("provision: {error:#}")))?;
    report.provider = Some(database.provider.to_string());
    progress.say(
        backend,
        &format!(
            "database ready from {} in {:.2} s",
            database.provider,
            database.startup.as_secs_f64()
        ),
    );
    let mut conn = Conn::connect(backend, &database.url)
        .await
        .map_err(|error| Failure::new(format!("{error:#}")))?;
    report.phases.push(("provision", phase.elapsed()));

    let result = rehearse_on(report, config, &set, &mut conn, &database.url, options).await;
    progress.say(
        backend,
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
    conn.close().await;
    result
}

async fn rehearse_on(
    report: &mut BackendReport,
    config: &Config,
    set: &MigrationSet,
    conn: &mut Conn,
    url: &str,
    options: Options,
) -> Result<(), Failure> {
    let table_name = set.migrator.table_name.to_string();
    ensure_migrations_table(conn, &table_name)
        .await
        .map_err(|error| Failure::new(format!("create the migrations table: {error}")))?;

    let phase = Instant::now();
    let mut seed_time = Duration::ZERO;
    let mut generate_time = Duration::ZERO;
    let mut created_by: BTreeMap<String, String> = BTreeMap::new();
    let mut known_tables = table_names(conn).await?;
    let mut seeded: Option<BTreeMap<String, i64>> = None;
    // Static isolation failures after intermediate steps: the app may be deployed between
    // a migration that opens a gap and the one that closes it.
    let mut step_failures: Vec<(String, &'static str, Failure)> = Vec::new();
    let mut reversibility = crate::reversibility::Pass::default();
    for migration in set.ups() {
        let file = set.file(migration.version, true);
        let before = if options.reversibility {
            let started = Instant::now();
            let state = crate::reversibility::State::read(conn, &table_name).await?;
            reversibility.time += started.elapsed();
            Some(state)
        } else {
            None
        };
        let started = Instant::now();
        let duration = apply(conn, &table_name, migration)
            .await
            .map_err(|error| apply_failure(&file, migration, error))?;
        report.steps.push(Step {
            version: migration.version,
            file: file.clone(),
            started,
            duration,
        });
        if let Some(before) = before {
            let started = Instant::now();
            let reversed = reversibility.reverse(conn, set, migration, &before).await;
            reversibility.time += started.elapsed();
            if let Err(fatal) = reversed {
                // Keep what the pass found (the schema diff says why the up failed again).
                report.checks.push(reversibility.outcome());
                return Err(fatal);
            }
        }
        let tables = table_names(conn).await?;
        for table in tables.iter().filter(|t| !known_tables.contains(*t)) {
            created_by.insert(table.clone(), file.clone());
        }
        known_tables = tables;
        let is_last = set
            .ups()
            .last()
            .is_some_and(|m| m.version == migration.version);
        if migration.version >= config.tenancy.isolated_from_version && !is_last {
            let schema = Schema::read(conn, &table_name).await.map_err(|error| {
                Failure::new(format!("introspect the schema after {file}: {error:#}"))
            })?;
            for outcome in checks::static_isolation_rules(conn, config, &schema, &created_by).await
            {
                for failure in outcome.failures {
                    step_failures.push((file.clone(), outcome.name, failure));
                }
            }
            report.isolation_steps_checked += 1;
        }
        if migration.version == config.seed_at_version {
            let started = Instant::now();
            seed(conn, config).await?;
            if options.rows > 0 {
                let generating = Instant::now();
                let schema = Schema::read(conn, &table_name).await.map_err(|error| {
                    Failure::new(format!(
                        "introspect the schema at the seed version: {error:#}"
                    ))
                })?;
                let tables =
                    crate::volume::generate(conn, config, &schema, options.rows, options.rows_seed)
                        .await?;
                generate_time = generating.elapsed();
                report.notes.push(format!(
                    "volume: {} generated rows in each of {} tables (seed {}) in {:.2} s",
                    options.rows,
                    tables.len(),
                    options.rows_seed,
                    generate_time.as_secs_f64()
                ));
            }
            seeded = Some(row_counts(conn, &table_name).await?);
            seed_time = started.elapsed().saturating_sub(generate_time);
        }
    }
    report.phases.push((
        "migrate",
        phase
            .elapsed()
            .saturating_sub(seed_time)
            .saturating_sub(generate_time)
            .saturating_sub(reversibility.time),
    ));
    if options.rows > 0 {
        report.phases.push(("generate", generate_time));
    }
    if options.reversibility {
        report.phases.push(("reversibility", reversibility.time));
        report.notes.extend(reversibility.notes.clone());
        report.checks.push(reversibility.outcome());
    }

    let phase = Instant::now();
    let schema = Schema::read(conn, &table_name)
        .await
        .map_err(|error| Failure::new(format!("introspect the schema: {error:#}")))?;
    let context = checks::Context {
        config,
        schema: &schema,
        seeded: seeded
            .as_ref()
            .expect("the seed version was checked to exist"),
        created_by: &created_by,
        seed_file: crate::display_path(&config.seed_file),
        after_seed: set
            .ups()
            .filter(|m| m.version > config.seed_at_version)
            .map(|m| set.file(m.version, true))
            .collect(),
    };
    let final_checks = checks::run_all(conn, &context).await;
    let between =
        isolation_between_steps(&final_checks, step_failures, report.isolation_steps_checked);
    report.checks.extend(final_checks);
    report.checks.push(between);
    report
        .phases
        .push(("seed+checks", phase.elapsed() + seed_time));

    let phase = Instant::now();
    let text = schema.render();
    let snapshot = crate::snapshot::assert_schema(&config.snapshot_dir, report.backend, &text);
    let snapshot_file = config.snapshot_dir.join(format!("{}.snap", report.backend));
    report.checks.push(CheckOutcome {
        name: "schema-snapshot",
        checked: 1,
        failures: match snapshot {
            Ok(()) => Vec::new(),
            Err(message) => vec![Failure::in_file(
                crate::display_path(&snapshot_file),
                format!(
                    "the {} schema differs from {} ({}; diff above)\nfix: if the change is intended, accept it with `cargo insta review` or `cargo xtask migrate-test --accept` and commit the snapshot",
                    report.backend,
                    crate::display_path(&snapshot_file),
                    message.lines().next().unwrap_or_default()
                ),
            )],
        },
    });
    report.phases.push(("snapshot", phase.elapsed()));

    // Last, because it adds tenants and rows: the behavioural isolation cases. They
    // compare every row a tenant sees, so at `--rows` volume they would measure the
    // comparison, not the migrations; the policies they test do not depend on volume, and
    // the default run covers them.
    if options.rows > 0 {
        report.notes.push(format!(
            "isolation cases: not run at --rows {} (they test the policies, not the volume; run without --rows for them)",
            options.rows
        ));
        return Ok(());
    }
    let phase = Instant::now();
    let behaviour =
        isolation::run_behaviour(conn, url, config, &schema, &config.tenancy.app_role).await;
    report.isolation_cases = behaviour.cases;
    report.checks.push(CheckOutcome {
        name: "isolation-behaviour",
        checked: behaviour.cases,
        failures: behaviour.failures,
    });
    report.phases.push(("isolation", phase.elapsed()));
    Ok(())
}

/// The static-rule failures seen after an intermediate migration that the final schema
/// no longer has: a later migration closed the gap, but not before a deploy could land.
fn isolation_between_steps(
    final_checks: &[CheckOutcome],
    step_failures: Vec<(String, &'static str, Failure)>,
    steps_checked: usize,
) -> CheckOutcome {
    let in_final = |rule: &str, message: &str| {
        final_checks
            .iter()
            .any(|c| c.name == rule && c.failures.iter().any(|f| f.message == message))
    };
    let mut failures: Vec<Failure> = Vec::new();
    for (file, rule, failure) in step_failures {
        if in_final(rule, &failure.message) {
            continue;
        }
        let (problem, fix) = failure
            .message
            .split_once("\nfix: ")
            .unwrap_or((failure.message.as_str(), ""));
        let message = format!(
            "after {file}, {rule}: {problem} (a later migration closes this, but the app can be deployed between the two)\nfix (in {file} itself): {fix}"
        );
        if failures.iter().any(|f| f.message == message) {
            continue;
        }
        failures.push(Failure::in_file(file, message));
    }
    CheckOutcome {
        name: "isolation-steps",
        checked: steps_checked,
        failures,
    }
}

async fn ensure_migrations_table(conn: &mut Conn, table_name: &str) -> Result<(), MigrateError> {
    match conn {
        Conn::Postgres(c) => c.ensure_migrations_table(table_name).await,
        Conn::Sqlite(c) => c.ensure_migrations_table(table_name).await,
    }
}

pub(crate) async fn apply(
    conn: &mut Conn,
    table_name: &str,
    migration: &Migration,
) -> Result<Duration, MigrateError> {
    match conn {
        Conn::Postgres(c) => c.apply(table_name, migration).await,
        Conn::Sqlite(c) => c.apply(table_name, migration).await,
    }
}

/// Names the file and, where the database gives a position, the line.
pub(crate) fn apply_failure(file: &str, migration: &Migration, error: MigrateError) -> Failure {
    let database_error = match &error {
        MigrateError::ExecuteMigration(sqlx::Error::Database(db), _)
        | MigrateError::Execute(sqlx::Error::Database(db)) => Some(db),
        _ => None,
    };
    let line = database_error
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
        .and_then(|pg| match pg.position() {
            Some(PgErrorPosition::Original(position)) => Some(position),
            _ => None,
        })
        .map(|position| {
            let sql = migration.sql.as_str();
            let byte = sql
                .char_indices()
                .nth(position.saturating_sub(1))
                .map_or(sql.len(), |(i, _)| i);
            sql[..byte].matches('\n').count() as u32 + 1
        });
    let message = match database_error {
        Some(db) => db.message().to_string(),
        None => error.to_string(),
    };
    let mut failure = Failure::in_file(
        file.to_string(),
        format!(
            "{file}{}: migration failed: {message}",
            line.map(|l| format!(":{l}")).unwrap_or_default()
        ),
    );
    failure.line = line;
    failure
}

pub(crate) async fn table_names(conn: &mut Conn) -> Result<Vec<String>, Failure> {
    let sql = match conn {
        Conn::Postgres(_) => {
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1"
        }
        Conn::Sqlite(_) => {
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1"
        }
    };
    conn.texts(sql)
        .await
        .map_err(|error| Failure::new(format!("list tables: {error:#}")))
}

/// After the fixture's explicit ids, PostgreSQL identity sequences must move past them.
pub const REALIGN_SEQUENCES: &str = "
DO $$
DECLARE r record;
BEGIN
    FOR r IN
        SELECT c.relname, a.attname, pg_get_serial_sequence(format('%I', c.relname), a.attname) AS seq
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
    LOOP
        IF r.seq IS NOT NULL THEN
            EXECUTE format('SELECT setval(%L, coalesce((SELECT max(%I) FROM %I), 0) + 1, false)', r.seq, r.attname, r.relname);
        END IF;
    END LOOP;
END
$$";

/// Loads the fixture.
async fn seed(conn: &mut Conn, config: &Config) -> Result<(), Failure> {
    let file = crate::display_path(&config.seed_file);
    let sql = std::fs::read_to_string(&config.seed_file)
        .with_context(|| format!("read the fixture {file}"))
        .map_err(|error| Failure::new(format!("{error:#}")))?;
    let wrapped = format!("BEGIN;\n{sql}\n;COMMIT;");
    conn.execute(&wrapped).await.map_err(|error| {
        Failure::in_file(
            file.clone(),
            format!(
                "load the fixture {file} at version {}: {error}",
                config.seed_at_version
            ),
        )
    })?;
    if conn.backend() == Backend::Postgres {
        conn.execute(REALIGN_SEQUENCES).await.map_err(|error| {
            Failure::new(format!(
                "realign identity sequences after the fixture: {error}"
            ))
        })?;
    }
    Ok(())
}

/// The row count of every table but the migrations table.
pub(crate) async fn row_counts(
    conn: &mut Conn,
    migrations_table: &str,
) -> Result<BTreeMap<String, i64>, Failure> {
    let mut counts = BTreeMap::new();
    for table in table_names(conn).await? {
        if table == migrations_table {
            continue;
        }
        let count = conn
            .count(&format!(
                "SELECT count(*) FROM {}",
                crate::db::quote(&table)
            ))
            .await
            .map_err(|error| Failure::new(format!("count the rows of `{table}`: {error:#}")))?;
        counts.insert(table, count);
    }
    Ok(counts)
}

/// Whether to print a line as each long step ends (the CLI does; tests do not).
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    Quiet,
    Lines,
}

impl Progress {
    fn say(self, backend: Backend, message: &str) {
        if let Progress::Lines = self {
            eprintln!("  {backend:8}  {message}");
        }
    }
}

/// Rehearses every backend asked for, concurrently: while PostgreSQL starts, SQLite runs.
pub async fn rehearse_all(
    backends: &[Backend],
    config: &Config,
    pg: &PgOptions,
    janitor: &Janitor,
    options: Options,
) -> Vec<BackendReport> {
    let wants = |backend| backends.contains(&backend);
    let (postgres, sqlite) = tokio::join!(
        async {
            if wants(Backend::Postgres) {
                Some(rehearse(Backend::Postgres, config, pg, janitor, options).await)
            } else {
                None
            }
        },
        async {
            if wants(Backend::Sqlite) {
                Some(rehearse(Backend::Sqlite, config, pg, janitor, options).await)
            } else {
                None
            }
        },
    );
    postgres.into_iter().chain(sqlite).collect()
}
