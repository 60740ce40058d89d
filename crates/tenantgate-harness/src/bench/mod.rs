//! `cargo xtask bench`: the harness's speed, measured side by side in one run, printed as a
//! table and written as JSON under `target/tenantgate/`.
//!
//! Seven sections, each comparing the harness with the plain way of doing the same thing on
//! the same server in the same run, so that the ratios hold on a noisy machine:
//! - `provisioning`: a testcontainers container, an ephemeral local-binaries cluster, and
//!   `CREATE DATABASE` on a running server, each from start to accepting connections;
//! - `apply`: every migration on a fresh database, by `sqlx migrate run` (sqlx-cli,
//!   installed under `target/tools` when missing) and by the harness;
//! - `template`: a fresh, migrated database per test, cloned from a template against
//!   migrated anew;
//! - `end-to-end`: warm `cargo xtask migrate-test` against the sum of its raw parts
//!   (provision + apply + introspect, both backends);
//! - `volume`: the rehearsal at generated volume, each migration's time and, on
//!   PostgreSQL, how long it held its strongest lock;
//! - `tenants`: `app migrate --tenant-schemas` over many schemas, with nothing pending and
//!   with one trivial migration, one job against several;
//! - `history`: `migrate-test` of the app's migrations plus 300 generated ones, both
//!   backends, both passes, with each pass's cost per migration.
//!
//! Every database, container and file the bench creates is removed when it ends, also on
//! failure and Ctrl-C.

mod apply;
mod end_to_end;
mod history;
mod provisioning;
mod server;
mod tenants;
mod volume;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use crate::provision::{self, Janitor, PgOptions, PgProviderChoice};
pub use server::BenchServer;

/// What to measure (the flags of `cargo xtask bench`).
#[derive(clap::Args, Clone, Debug)]
pub struct Bench {
    /// Runs of each measurement; medians and spreads are over these.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Sections to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Section>,
    /// Generated rows per large table in the volume section, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000, 1_000_000])]
    pub rows: Vec<u64>,
    /// Tenant schema counts in the tenants section, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100usize, 1_000])]
    pub schemas: Vec<usize>,
    /// Generated migrations after the app's own in the history section.
    #[arg(long, default_value_t = 300)]
    pub history: usize,
    /// The xtask whose `migrate-test --config` the history section times [default: this
    /// one]. (The tests hand it theirs: a test binary is no xtask.)
    #[arg(long, hide = true)]
    pub xtask: Option<PathBuf>,
    /// Parallel jobs of the `--jobs N` tenant runs [default: 2 per core].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Only these `--jobs` values in the tenants section, comma-separated [default: 1 and
    /// `--jobs`].
    #[arg(long, value_delimiter = ',')]
    pub tenant_jobs: Vec<usize>,
    /// PostgreSQL image for testcontainers [env: TENANTGATE_PG_IMAGE, default: postgres:15].
    #[arg(long)]
    pub pg_image: Option<String>,
    /// Where the JSON goes [default: target/tenantgate/bench.json].
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The sections of the bench, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    Provisioning,
    Apply,
    Template,
    EndToEnd,
    Volume,
    Tenants,
    History,
}

/// Median and spread of several timed runs.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Stats {
    pub fn of(durations: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let median = match ms.len() {
            0 => 0.0,
            n if n % 2 == 1 => ms[n / 2],
            n => (ms[n / 2 - 1] + ms[n / 2]) / 2.0,
        };
        Stats {
            runs: ms.len(),
            median_ms: median,
            min_ms: ms.first().copied().unwrap_or(0.0),
            max_ms: ms.last().copied().unwrap_or(0.0),
        }
    }

    pub fn median(&self) -> Duration {
        Duration::from_secs_f64(self.median_ms / 1e3)
    }
}

/// One line of the table: a timed measurement, optionally compared with another.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub section: Section,
    pub name: String,
    pub stats: Stats,
    /// "0.42× sqlx-cli", "31× faster than re-migrating"…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A target of the issue, and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// A section that could not run, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub section: Section,
    pub reason: String,
}

/// The machine the numbers came from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub postgres: String,
    pub docker: String,
}

/// Everything a bench run measured, as the JSON holds it.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub tool: &'static str,
    /// Where this JSON was written.
    pub json: String,
    pub started_at: String,
    pub seconds: f64,
    pub machine: Machine,
    pub measurements: Vec<Measurement>,
    pub volume: Vec<volume::VolumeRun>,
    pub tenants: Vec<tenants::TenantRun>,
    pub history: Vec<history::HistoryPass>,
    pub targets: Vec<TargetCheck>,
    pub skipped: Vec<Skipped>,
}

/// What the sections share: the flags, one PostgreSQL server for every measurement that
/// needs a running one, and the janitor that removes what the run created.
pub struct Context<'a> {
    pub bench: &'a Bench,
    pub image: String,
    pub server: &'a BenchServer,
    pub janitor: &'a Janitor,
    /// The project's app, with the migrations it embeds.
    pub app: crate::AppUnderTest<'a>,
    pub project: &'a crate::Project<'a>,
    /// The app's binary, built before the sections start.
    pub app_binary: PathBuf,
    pub scratch: tempfile::TempDir,
}

impl Context<'_> {
    pub fn say(&self, line: &str) {
        eprintln!("bench: {line}");
    }

    pub fn config(&self) -> &tenantgate::Config {
        &self.app.config
    }

    /// The migrator the app embeds for `backend`.
    pub fn migrator(
        &self,
        backend: tenantgate::Backend,
    ) -> anyhow::Result<&sqlx::migrate::Migrator> {
        self.project
            .embedded_app()?
            .embedded(backend)
            .map(|e| e.migrator)
            .with_context(|| format!("the app embeds no {backend} migrations"))
    }
}

impl Bench {
    pub fn wants(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }

    pub fn json_path(&self) -> PathBuf {
        self.json
            .clone()
            .unwrap_or_else(|| crate::workspace::root().join("target/tenantgate/bench.json"))
    }

    pub fn jobs(&self) -> usize {
        self.jobs.unwrap_or_else(|| {
            2 * std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        })
    }

    /// Runs the bench and prints its table.
    pub(crate) fn run_and_report(
        &self,
        project: &crate::Project<'_>,
    ) -> anyhow::Result<std::process::ExitCode> {
        let results = self.run(project)?;
        println!();
        print!("{}", results.render());
        Ok(std::process::ExitCode::SUCCESS)
    }

    /// Runs the bench: every section asked for, then the table and the JSON.
    pub fn run(&self, project: &crate::Project<'_>) -> anyhow::Result<Results> {
        anyhow::ensure!(
            self.runs >= 1,
            "--runs must be at least 1 (medians need a run)"
        );
        anyhow::ensure!(
            self.rows.iter().all(|&rows| rows > 0),
            "--rows takes positive row counts, e.g. --rows 10000,100000"
        );
        anyhow::ensure!(
            self.jobs != Some(0) && !self.tenant_jobs.contains(&0),
            "--jobs and --tenant-jobs take positive job counts, e.g. --tenant-jobs 1,4"
        );
        anyhow::ensure!(
            self.schemas.iter().all(|&schemas| schemas > 0),
            "--schemas takes positive schema counts, e.g. --schemas 100,1000"
        );
        provision::with_janitor(async |janitor| self.run_sections(project, janitor).await)
    }

    async fn run_sections(
        &self,
        project: &crate::Project<'_>,
        janitor: &Janitor,
    ) -> anyhow::Result<Results> {
        let started = Instant::now();
        let started_at = jiff::Timestamp::now().to_string();
        // Warm builds: the sections time the app and `cargo xtask migrate-test`, not cargo.
        eprintln!(
            "bench: building {} (warm runs are what is measured)",
            project.package
        );
        let app_binary = crate::workspace::build_binary(project.package, false)?;
        let image =
            PgOptions::from_flags(PgProviderChoice::Container, self.pg_image.as_deref(), None)
                .image;
        eprintln!("bench: starting the PostgreSQL server the sections share ({image})");
        let server = BenchServer::start(&image, janitor).await?;
        let app = crate::commands::migrate_test::under_test(project, None)?;
        let scratch = crate::provision::temp_dir("bench")?;
        let context = Context {
            bench: self,
            image,
            server: &server,
            janitor,
            app,
            project,
            app_binary,
            scratch,
        };
        let mut results = Results {
            tool: "cargo xtask bench",
            json: crate::display_path(&self.json_path()),
            started_at,
            seconds: 0.0,
            machine: machine(&server).await,
            measurements: Vec::new(),
            volume: Vec::new(),
            tenants: Vec::new(),
            history: Vec::new(),
            targets: Vec::new(),
            skipped: Vec::new(),
        };
        if self.wants(Section::Provisioning) {
            provisioning::run(&context, &mut results).await?;
        }
        if self.wants(Section::Apply) || self.wants(Section::Template) {
            apply::run(&context, &mut results).await?;
        }
        if self.wants(Section::EndToEnd) {
            end_to_end::run(&context, &mut results).await?;
        }
        if self.wants(Section::Volume) {
            volume::run(&context, &mut results).await?;
        }
        if self.wants(Section::Tenants) {
            tenants::run(&context, &mut results).await?;
        }
        if self.wants(Section::History) {
            history::run(&context, &mut results).await?;
        }
        results.seconds = started.elapsed().as_secs_f64();
        let path = self.json_path();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", crate::display_path(parent)))?;
        }
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&results).expect("serializes") + "\n",
        )
        .with_context(|| format!("write {}", crate::display_path(&path)))?;
        Ok(results)
    }
}

impl Results {
    pub fn measurement(&self, section: Section, name: &str) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.section == section && m.name == name)
    }

    /// The table a person reads, then the targets and a one-line verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        out.push_str(&format!(
            "machine: {} ({} cores, {:.0} GiB), {}, {}, {}\n\n",
            m.cpu, m.cores, m.memory_gib, m.kernel, m.postgres, m.docker
        ));
        let width = self
            .measurements
            .iter()
            .map(|m| m.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(20);
        let mut section = None;
        for measurement in &self.measurements {
            if section != Some(measurement.section) {
                section = Some(measurement.section);
                out.push_str(&format!(
                    "{:<width$}  {:>10}  {:>21}  {:>4}  {}\n",
                    section_title(measurement.section),
                    "median",
                    "spread",
                    "runs",
                    "compared"
                ));
            }
            let s = &measurement.stats;
            out.push_str(&format!(
                "  {:<w$}  {:>10}  {:>21}  {:>4}  {}{}\n",
                measurement.name,
                duration_text(s.median_ms),
                format!("{} – {}", duration_text(s.min_ms), duration_text(s.max_ms)),
                s.runs,
                measurement.comparison.as_deref().unwrap_or(""),
                measurement
                    .note
                    .as_deref()
                    .map(|n| format!("  ({n})"))
                    .unwrap_or_default(),
                w = width - 2
            ));
        }
        for run in &self.volume {
            out.push('\n');
            out.push_str(&run.render());
        }
        if !self.tenants.is_empty() {
            out.push('\n');
            out.push_str(&tenants::render(&self.tenants));
        }
        if !self.history.is_empty() {
            out.push_str("\nlong history, per pass\n");
            out.push_str(&history::render(&self.history));
        }
        for skipped in &self.skipped {
            out.push_str(&format!(
                "\n{}: skipped: {}\n",
                section_title(skipped.section),
                skipped.reason
            ));
        }
        if !self.targets.is_empty() {
            out.push_str("\ntargets\n");
            for target in &self.targets {
                out.push_str(&format!(
                    "  {:<4}  {:<58}  {}\n",
                    if target.met { "met" } else { "MISS" },
                    target.target,
                    target.measured
                ));
            }
        }
        out.push('\n');
        out.push_str(&self.verdict());
        out.push('\n');
        out
    }

    pub fn verdict(&self) -> String {
        let met = self.targets.iter().filter(|t| t.met).count();
        format!(
            "bench: {met} of {} targets met in {:.0} s; JSON in {}",
            self.targets.len(),
            self.seconds,
            self.json
        )
    }

    fn target(&mut self, target: impl Into<String>, measured: impl Into<String>, met: bool) {
        self.targets.push(TargetCheck {
            target: target.into(),
            measured: measured.into(),
            met,
        });
    }
}

fn section_title(section: Section) -> &'static str {
    match section {
        Section::Provisioning => "PostgreSQL provisioning (start to ready)",
        Section::Apply => "every migration on a fresh database",
        Section::Template => "a fresh migrated database per test",
        Section::EndToEnd => "warm `cargo xtask migrate-test`, both backends",
        Section::Volume => "volume",
        Section::Tenants => "tenant schemas",
        Section::History => "long history",
    }
}

/// `850 ms`, `3.42 s`, `2 min 05 s`.
pub fn duration_text(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 1_000.0 {
        format!("{ms:.0} ms")
    } else if ms < 120_000.0 {
        format!("{:.2} s", ms / 1e3)
    } else {
        let seconds = (ms / 1e3).round() as u64;
        format!("{} min {:02} s", seconds / 60, seconds % 60)
    }
}

/// Times `runs` calls of `once`, which returns how long the timed part of it took.
pub async fn timed<F, Fut>(runs: usize, mut once: F) -> anyhow::Result<Stats>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Duration>>,
{
    let mut durations = Vec::with_capacity(runs);
    for run in 0..runs {
        durations.push(once(run).await?);
    }
    Ok(Stats::of(&durations))
}

async fn machine(server: &BenchServer) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, name)| {
            name.trim().to_string()
        });
    let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown kernel".to_string(), |r| {
            format!("Linux {}", r.trim())
        });
    let docker = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("no Docker engine".to_string(), |o| {
            format!("Docker {}", String::from_utf8_lossy(&o.stdout).trim())
        });
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        kernel,
        postgres: server
            .version()
            .await
            .unwrap_or_else(|_| "PostgreSQL ?".to_string()),
        docker,
    }
}

/// The last `lines` lines of a failed command's stdout, then its stderr: what a section
/// shows when the command it times failed.
fn failure_tail(output: &std::process::Output, lines: usize) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tail: Vec<&str> = stdout.lines().rev().take(lines).collect();
    format!(
        "{}\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}
