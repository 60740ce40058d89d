//! The fault-injection suite: `app migrate` (the demo's command line over a scratch copy
//! of its migrations, in a process of its own) with one fault injected at one point of a
//! run, for every fault and every point, on PostgreSQL and SQLite.
//!
//! Faults: SIGKILL, SIGTERM, SIGINT, the backup disk full, the backup folder read-only,
//! the connection terminated by the server, the server restarted. Points: before and
//! after the backup, inside a migration, before verify, during the rollback (the last
//! migration of that scenario fails, so that there is one). After the faulted run the
//! database must be exactly as before it (schema and every row) or fully migrated and
//! verified — a SIGKILL alone may leave it between, for the next run — and after the next
//! run, without faults, one of the two for every cell, with no row lost. The matrix
//! (point × fault → after the faulted run / after the next) is printed and written to
//! `target/tenantgate/fault-matrix-<backend>.txt`.
//!
//! PostgreSQL runs on one local-binaries cluster (the server-restart fault restarts it),
//! with a database per cell cloned from a prepared template; SQLite on a copied file.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tenantgate::Backend;
use tenantgate::db::Scope;
use tenantgate::live::{Outcome, Target, fault};
use tenantgate_harness::provision::{LocalCluster, find_bindir};
use tenantgate_tests::Scratch;
use tenantgate_tests::live::{applied_versions, prepare, scratch_source, state};

const FAULTS: [&str; 7] = [
    "sigkill",
    "sigterm",
    "sigint",
    "disk-full",
    "read-only",
    "disconnect",
    "server-restart",
];

/// The scenario of a point: the rollback point needs a run that fails.
#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    /// Migrations 0004–0008 apply; 0008 is slow (the point inside a migration is in it).
    Migrates,
    /// 0004–0007 apply, then 0008 fails: the run rolls back.
    Fails,
}

fn scenario(point: &str) -> Scenario {
    if point == "migrate::in-rollback" {
        Scenario::Fails
    } else {
        Scenario::Migrates
    }
}

/// A scratch copy of the demo with its 0008: slow and harmless (the schema stays the
/// snapshot's, so verify checks drift too), or failing after a change.
fn scratch(backend: Backend, scenario: Scenario) -> Scratch {
    let scratch = Scratch::new().unwrap();
    let up = match (backend, scenario) {
        (Backend::Postgres, Scenario::Migrates) => {
            "UPDATE customers SET email = email WHERE false;\nSELECT pg_sleep(1.2);\n"
        }
        (Backend::Postgres, Scenario::Fails) => {
            "ALTER TABLE customers ADD COLUMN scratch_points BIGINT;\nSELECT pg_sleep(0.2);\nSELECT 1 / 0;\n"
        }
        (Backend::Sqlite, Scenario::Migrates) => {
            "UPDATE customers SET email = email WHERE 0;\nWITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) SELECT count(*) FROM n;\n"
        }
        (Backend::Sqlite, Scenario::Fails) => {
            "ALTER TABLE customers ADD COLUMN scratch_points BIGINT;\nINSERT INTO no_such_table VALUES (1);\n"
        }
    };
    scratch
        .add_migration(backend, "0008", "fault_scenario", up, "SELECT 1;\n")
        .unwrap();
    scratch
}

/// Where a cell's database comes from.
enum Server {
    Postgres {
        cluster: LocalCluster,
        /// postgres://…/<database>, with `{db}` for the database.
        url: String,
    },
    Sqlite {
        template: PathBuf,
    },
}

impl Server {
    async fn cell(&self, name: &str, dir: &Path) -> String {
        match self {
            Server::Postgres { url, .. } => {
                let mut admin = Target::new(&url.replace("{db}", "postgres"))
                    .unwrap()
                    .connect(false)
                    .await
                    .unwrap();
                admin
                    .execute(&format!("CREATE DATABASE {name} TEMPLATE fault_template"))
                    .await
                    .unwrap();
                admin.close().await;
                url.replace("{db}", name)
            }
            Server::Sqlite { template } => {
                let file = dir.join(format!("{name}.db"));
                std::fs::copy(template, &file).unwrap();
                format!("sqlite:{}", file.display())
            }
        }
    }
}

/// The state of a cell's database after a run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    AsBefore,
    Migrated,
    Between,
}

impl State {
    fn letter(self) -> &'static str {
        match self {
            State::AsBefore => "B",
            State::Migrated => "M",
            State::Between => "X",
        }
    }
}

struct Cell {
    point: &'static str,
    fault: &'static str,
    first: State,
    second: State,
    rows_lost: i64,
    problems: Vec<String>,
}

async fn counts(url: &str) -> BTreeMap<String, i64> {
    let mut conn = Target::new(url).unwrap().connect(false).await.unwrap();
    let counts = conn
        .row_counts(&Scope::CurrentSchema, Some("_sqlx_migrations"))
        .await
        .unwrap();
    conn.close().await;
    counts
}

async fn classify(url: &str, before: &str, scratch: &Scratch, backend: Backend) -> State {
    if state(url).await.unwrap() == before {
        return State::AsBefore;
    }
    let versions = applied_versions(url).await.unwrap_or_default();
    if versions == [1, 2, 3, 4, 5, 6, 7, 8] {
        let source = scratch_source(scratch, backend).await.unwrap();
        let report = tenantgate::live::verify_database(
            &source,
            &app::TENANTGATE.config().unwrap(),
            &Target::new(url).unwrap(),
        )
        .await;
        if report.outcome == Outcome::UpToDate {
            return State::Migrated;
        }
    }
    State::Between
}

/// Runs `scratch_app migrate` with `failpoints`; returns its exit code and its output.
async fn migrate(
    scratch: &Scratch,
    url: &str,
    backups: &Path,
    failpoints: Option<&str>,
    pause: &Path,
    mut restart: Option<(&mut Server, &'static str)>,
) -> (Option<i32>, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_scratch_app"));
    command
        .args(["migrate", "--database-url", url, "--backup-dir"])
        .arg(backups)
        .env("TENANTGATE_SCRATCH", scratch.dir.path())
        .env("TENANTGATE_FAULT_PAUSE", pause)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match failpoints {
        Some(failpoints) => command.env("FAILPOINTS", failpoints),
        None => command.env_remove("FAILPOINTS"),
    };
    let child = command.spawn().unwrap();
    if let Some((Server::Postgres { cluster, url: base }, point)) = restart.as_mut() {
        // The server restarts while the run is at the point: paused there, or (inside a
        // migration) in the migration's statement.
        let started = Instant::now();
        loop {
            let reached = if *point == "migrate::in-migration" {
                let mut conn = Target::new(&base.replace("{db}", "postgres"))
                    .unwrap()
                    .connect(false)
                    .await
                    .unwrap();
                let sleeping = conn
                    .count("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(1.2)%' AND pid <> pg_backend_pid()")
                    .await
                    .unwrap();
                conn.close().await;
                sleeping > 0
            } else {
                pause.exists()
            };
            if reached {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the run never reached {point}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster.restart().await.unwrap();
        let _ = std::fs::remove_file(pause);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the run hung for two minutes")
        .unwrap();
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The fault's FAILPOINTS action at `point`: signals and disconnects inside a migration
/// or a rollback land a moment after the point, while the statement or restore runs.
fn action(point: &str, fault: &str) -> Option<String> {
    let delay = match point {
        "migrate::in-migration" => "@400",
        "migrate::in-rollback" => "@30",
        _ => "",
    };
    let action = match fault {
        "sigkill" | "sigterm" | "sigint" | "disconnect" => format!("{fault}{delay}"),
        "disk-full" | "read-only" => fault.to_string(),
        // The test restarts the server; inside a migration it watches for the statement.
        "server-restart" if point == "migrate::in-migration" => return None,
        "server-restart" => "pause".to_string(),
        _ => unreachable!(),
    };
    Some(format!("{point}=return({action})"))
}

/// PostgreSQL cells run this many at a time: each has its own database, process and
/// backup folder, and waits on its migration's sleep most of its time. The server-restart
/// cells restart the one server, so they run alone, after the others; SQLite's cells
/// compute (the slow migration is a query), so they run one by one.
const POSTGRES_CELLS_AT_ONCE: usize = 3;

async fn matrix(backend: Backend, mut server: Server, dir: &Path) -> Vec<Cell> {
    use futures_util::StreamExt;
    let scratches = [
        (Scenario::Migrates, scratch(backend, Scenario::Migrates)),
        (Scenario::Fails, scratch(backend, Scenario::Fails)),
    ];
    let scratch_of = |point: &str| {
        &scratches
            .iter()
            .find(|(s, _)| *s == scenario(point))
            .unwrap()
            .1
    };
    let mut planned = Vec::new();
    for point in fault::POINTS {
        for fault in FAULTS {
            if backend == Backend::Sqlite && matches!(fault, "disconnect" | "server-restart") {
                continue;
            }
            planned.push((planned.len() + 1, point, fault));
        }
    }
    let (alone, side_by_side): (Vec<_>, Vec<_>) = planned
        .into_iter()
        .partition(|(_, _, fault)| *fault == "server-restart");
    let at_once = match backend {
        Backend::Postgres => POSTGRES_CELLS_AT_ONCE,
        Backend::Sqlite => 1,
    };
    let mut cells: Vec<(usize, Cell)> = {
        let server = &server;
        futures_util::stream::iter(side_by_side.into_iter().map(
            |(number, point, fault)| async move {
                let name = format!("cell_{number}");
                let url = server.cell(&name, dir).await;
                let cell = run_cell(
                    &url,
                    &name,
                    point,
                    fault,
                    scratch_of(point),
                    backend,
                    dir,
                    None,
                )
                .await;
                (number, cell)
            },
        ))
        .buffer_unordered(at_once)
        .collect()
        .await
    };
    for (number, point, fault) in alone {
        let name = format!("cell_{number}");
        let url = server.cell(&name, dir).await;
        let cell = run_cell(
            &url,
            &name,
            point,
            fault,
            scratch_of(point),
            backend,
            dir,
            Some(&mut server),
        )
        .await;
        cells.push((number, cell));
    }
    cells.sort_by_key(|(number, _)| *number);
    if let Server::Postgres { mut cluster, .. } = server {
        cluster.stop();
    }
    cells.into_iter().map(|(_, cell)| cell).collect()
}

/// One cell: the faulted run, then the next run without faults, and what each left.
#[allow(clippy::too_many_arguments)]
async fn run_cell(
    url: &str,
    name: &str,
    point: &'static str,
    fault: &'static str,
    scratch: &Scratch,
    backend: Backend,
    dir: &Path,
    restart: Option<&mut Server>,
) -> Cell {
    let backups = dir.join(name);
    let before = state(url).await.unwrap();
    let before_counts = counts(url).await;
    let pause = dir.join(format!("{name}.pause"));
    let failpoints = action(point, fault);
    let restart = restart.map(|server| (server, point));
    let (code, first_output) = migrate(
        scratch,
        url,
        &backups,
        failpoints.as_deref(),
        &pause,
        restart,
    )
    .await;
    let first = classify(url, &before, scratch, backend).await;
    let marker_left = std::fs::read_dir(&backups).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".migrating.json"))
    });
    let (_, second_output) = migrate(scratch, url, &backups, None, &pause, None).await;
    let second = classify(url, &before, scratch, backend).await;
    let after_counts = counts(url).await;
    let rows_lost = before_counts
        .iter()
        .map(|(table, n)| (n - after_counts.get(table).copied().unwrap_or(0)).max(0))
        .sum();
    let mut problems = Vec::new();
    let allowed = |state: State| match scenario(point) {
        Scenario::Migrates => state != State::Between,
        Scenario::Fails => state == State::AsBefore,
    };
    if fault != "sigkill" && !allowed(first) {
        problems.push(format!("after the faulted run: {first:?}"));
    }
    if !allowed(second) {
        problems.push(format!("after the next run: {second:?}"));
    }
    if rows_lost > 0 {
        problems.push(format!("{rows_lost} rows lost"));
    }
    if matches!(fault, "sigterm" | "sigint") && code == Some(0) {
        problems.push("a run asked to stop exited 0".to_string());
    }
    if marker_left
        && !(second_output.contains("did not finish") || second_output.contains("was killed"))
    {
        problems.push("the next run did not report the unfinished one".to_string());
    }
    if !problems.is_empty() {
        problems.push(format!(
            "faulted run (exit {code:?}):\n{first_output}\nnext run:\n{second_output}"
        ));
    }
    Cell {
        point,
        fault,
        first,
        second,
        rows_lost,
        problems,
    }
}

fn render(backend: Backend, cells: &[Cell]) -> String {
    let faults: Vec<&str> = FAULTS
        .iter()
        .copied()
        .filter(|f| cells.iter().any(|c| c.fault == *f))
        .collect();
    let mut out = format!(
        "fault matrix, {backend}: after the faulted run / after the next run (B: as before, M: migrated and verified, X: between)\n{:<24}",
        "point"
    );
    for fault in &faults {
        let _ = write!(out, "{fault:>15}");
    }
    out.push('\n');
    for point in fault::POINTS {
        let _ = write!(out, "{point:<24}");
        for fault in &faults {
            let text = cells
                .iter()
                .find(|c| c.point == point && c.fault == *fault)
                .map(|c| {
                    format!(
                        "{}/{}{}",
                        c.first.letter(),
                        c.second.letter(),
                        if c.problems.is_empty() { "" } else { " FAIL" }
                    )
                })
                .unwrap_or_default();
            let _ = write!(out, "{text:>15}");
        }
        out.push('\n');
    }
    let lost: i64 = cells.iter().map(|c| c.rows_lost).sum();
    let failed = cells.iter().filter(|c| !c.problems.is_empty()).count();
    let _ = writeln!(
        out,
        "{} faults injected, {failed} cells outside the two allowed states, {lost} rows lost",
        cells.len()
    );
    if backend == Backend::Sqlite {
        out.push_str("disconnect, server-restart: not applicable to SQLite (a file opened in the process: no connection to lose, no server)\n");
    }
    out
}

fn report(backend: Backend, cells: &[Cell]) {
    let text = render(backend, cells);
    eprintln!("{text}");
    let dir = tenantgate_harness::workspace::root().join("target/tenantgate");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("fault-matrix-{backend}.txt")), &text);
    let failures: Vec<String> = cells
        .iter()
        .filter(|c| !c.problems.is_empty())
        .map(|c| format!("{} × {}: {}", c.point, c.fault, c.problems.join("; ")))
        .collect();
    assert!(failures.is_empty(), "{text}\n{}", failures.join("\n\n"));
    assert_eq!(
        cells.len(),
        fault::POINTS.len() * if backend == Backend::Postgres { 7 } else { 5 }
    );
}

#[tokio::test]
async fn postgres_every_fault_at_every_point_ends_as_before_or_migrated() {
    let bindir = find_bindir().expect(
        "the PostgreSQL fault matrix restarts a server of its own: install the PostgreSQL server binaries (apt-get install postgresql), or set TENANTGATE_PG_BINDIR",
    );
    let cluster = LocalCluster::start(&bindir).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server_url, _) = cluster.url.rsplit_once('/').unwrap();
    let url = format!("{server_url}/{{db}}");
    {
        let mut admin = Target::new(&cluster.url)
            .unwrap()
            .connect(false)
            .await
            .unwrap();
        admin
            .execute("CREATE DATABASE fault_template")
            .await
            .unwrap();
        admin.close().await;
    }
    prepare(&url.replace("{db}", "fault_template"), 3, dir.path())
        .await
        .unwrap();
    let cells = matrix(
        Backend::Postgres,
        Server::Postgres { cluster, url },
        dir.path(),
    )
    .await;
    report(Backend::Postgres, &cells);
}

#[tokio::test]
async fn sqlite_every_fault_at_every_point_ends_as_before_or_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.db");
    prepare(&format!("sqlite:{}", template.display()), 3, dir.path())
        .await
        .unwrap();
    let cells = matrix(Backend::Sqlite, Server::Sqlite { template }, dir.path()).await;
    report(Backend::Sqlite, &cells);
}
