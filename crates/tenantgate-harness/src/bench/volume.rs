//! Section `volume`: the rehearsal with generated rows (`migrate-test --rows N`) on each
//! backend, each migration's time and, on PostgreSQL, the strongest table lock it held
//! and for how long, sampled from `pg_locks` by a second session.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use super::{Context, Results};
use crate::provision::{Janitor, PgOptions};
use crate::rehearsal::{self, Options, Progress};
use tenantgate::Backend;

/// How often the lock sampler looks.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

use tenantgate::live::apply::LOCK_MODES;

/// The strongest table lock any session of a throwaway database holds, as a rank: 0 for
/// none, else 1 + its index in `LOCK_MODES` ($1). Catalog relations (OIDs below 16384)
/// are left out.
const STRONGEST_LOCK: &str = "
SELECT coalesce(max(array_position($1::text[], l.mode::text)), 0)::int4
FROM pg_locks l JOIN pg_database d ON d.oid = l.database
WHERE l.locktype = 'relation' AND l.granted AND l.relation::int8 >= 16384
  AND starts_with(d.datname, 'tenantgate_') AND l.pid <> pg_backend_pid()";

#[derive(Clone, Debug, Serialize)]
pub struct VolumeRun {
    pub backend: String,
    pub rows: u64,
    pub passed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// Generating the rows (preparation, not rehearsal).
    pub generate_seconds: f64,
    /// The rehearsal proper: migrations, seed, checks, snapshot.
    pub rehearsal_seconds: f64,
    pub migrations: Vec<VolumeStep>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VolumeStep {
    pub file: String,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strongest_lock: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_held_seconds: Option<f64>,
}

impl VolumeRun {
    pub fn render(&self) -> String {
        let mut out = format!(
            "volume: {} at {} rows per table: rehearsal {:.1} s (+ {:.1} s generating rows){}\n",
            self.backend,
            self.rows,
            self.rehearsal_seconds,
            self.generate_seconds,
            if self.passed { "" } else { ", FAILED" }
        );
        for step in &self.migrations {
            out.push_str(&format!("  {:<58} {:>9.2} s", step.file, step.seconds));
            if let (Some(lock), Some(held)) = (&step.strongest_lock, step.lock_held_seconds) {
                out.push_str(&format!("   {lock} held {held:.2} s"));
            }
            out.push('\n');
        }
        for failure in &self.failures {
            out.push_str(&format!("  FAIL {failure}\n"));
        }
        out
    }
}

pub async fn run(context: &Context<'_>, results: &mut Results) -> anyhow::Result<()> {
    for &rows in &context.bench.rows {
        for backend in Backend::ALL {
            context.say(&format!(
                "volume: rehearsing {backend} at {rows} rows per table"
            ));
            let run = rehearse(context, backend, rows).await?;
            context.say(&format!(
                "volume: {backend} at {rows} rows: rehearsal {:.1} s, generation {:.1} s",
                run.rehearsal_seconds, run.generate_seconds
            ));
            let limit = match rows {
                100_000 => Some(60.0),
                1_000_000 => Some(300.0),
                _ => None,
            };
            if let Some(limit) = limit {
                results.target(
                    format!(
                        "{backend}: tenancy rehearsal at {rows} rows ≤ {}",
                        super::duration_text(limit * 1e3)
                    ),
                    format!(
                        "{} (+ {} generating the rows)",
                        super::duration_text(run.rehearsal_seconds * 1e3),
                        super::duration_text(run.generate_seconds * 1e3)
                    ),
                    run.passed && run.rehearsal_seconds <= limit,
                );
            }
            results.volume.push(run);
        }
    }
    Ok(())
}

async fn rehearse(context: &Context<'_>, backend: Backend, rows: u64) -> anyhow::Result<VolumeRun> {
    let janitor = Janitor::new();
    let pg = PgOptions {
        image: context.image.clone(),
        ..PgOptions::on_server(&context.server.admin_url)
    };
    let options = Options {
        progress: Progress::Quiet,
        rows,
        rows_seed: 1,
        reversibility: false,
        // The bench times the migrations at volume; a limit would cut the measurement.
        statement_timeout: Some(Duration::ZERO),
        ..Options::default()
    };
    let monitor = match backend {
        Backend::Postgres => Some(LockMonitor::start(&context.server.admin_url).await?),
        Backend::Sqlite => None,
    };
    let report = rehearsal::rehearse(backend, &context.app, &pg, &janitor, options).await;
    let samples = match monitor {
        Some(monitor) => monitor.stop().await?,
        None => Vec::new(),
    };
    let leftovers = janitor.finish(false).await;
    anyhow::ensure!(
        leftovers.is_empty(),
        "cleanup failed: {}",
        leftovers.join("; ")
    );
    let phase = |name: &str| {
        report
            .phases
            .iter()
            .find(|(phase, _)| *phase == name)
            .map_or(0.0, |(_, d)| d.as_secs_f64())
    };
    let generate_seconds = phase("generate");
    let total: f64 = report.phases.iter().map(|(_, d)| d.as_secs_f64()).sum();
    let migrations = report
        .steps
        .iter()
        .filter(|step| {
            context
                .config()
                .fixtures
                .as_ref()
                .is_some_and(|f| step.version > f.seed_at_version)
        })
        .map(|step| {
            let held = strongest_held(&samples, step.started, step.duration);
            VolumeStep {
                file: step.file.clone(),
                seconds: step.duration.as_secs_f64(),
                strongest_lock: held.map(|(rank, _)| LOCK_MODES[rank as usize - 1].to_string()),
                lock_held_seconds: held.map(|(_, held)| held.as_secs_f64()),
            }
        })
        .collect();
    Ok(VolumeRun {
        backend: backend.to_string(),
        rows,
        passed: report.passed(),
        failures: crate::report::failures(std::slice::from_ref(&report))
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_string)
            .collect(),
        generate_seconds,
        rehearsal_seconds: total - generate_seconds,
        migrations,
    })
}

/// The strongest lock rank sampled while a migration ran, and for how long it was seen:
/// from its first sample to its last, plus one sampling interval, within the migration.
fn strongest_held(
    samples: &[(Instant, i32)],
    started: Instant,
    duration: Duration,
) -> Option<(i32, Duration)> {
    let ended = started + duration;
    let window: Vec<&(Instant, i32)> = samples
        .iter()
        .filter(|(at, _)| *at >= started && *at <= ended)
        .collect();
    let strongest = window.iter().map(|(_, rank)| *rank).max()?;
    if strongest == 0 {
        return None;
    }
    let first = window.iter().find(|(_, rank)| *rank == strongest)?.0;
    let last = window.iter().rev().find(|(_, rank)| *rank == strongest)?.0;
    Some((strongest, (last - first + SAMPLE_EVERY).min(duration)))
}

/// A second session that samples the strongest table lock every [`SAMPLE_EVERY`].
struct LockMonitor {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<(Instant, i32)>>>,
}

impl LockMonitor {
    async fn start(admin_url: &str) -> anyhow::Result<LockMonitor> {
        let mut conn = PgConnection::connect(admin_url)
            .await
            .context("connect the lock sampler")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                let rank: i32 = sqlx::query_scalar(STRONGEST_LOCK)
                    .bind(&LOCK_MODES[..])
                    .fetch_one(&mut conn)
                    .await
                    .context("sample pg_locks")?;
                samples.push((Instant::now(), rank));
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            let _ = conn.close().await;
            Ok(samples)
        });
        Ok(LockMonitor { stop, task })
    }

    async fn stop(self) -> anyhow::Result<Vec<(Instant, i32)>> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.context("the lock sampler stopped")?
    }
}
