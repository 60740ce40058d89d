//! `cargo xtask migrate-test`: flags, the run, the report, the exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use app::Backend;
use xtask::config::Config;
use xtask::provision::{self, Janitor, PgOptions, PgProviderChoice};
use xtask::{rehearsal, report};

#[derive(Args)]
pub(crate) struct MigrateTest {
    /// Backend to rehearse; both when not given.
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Where PostgreSQL comes from.
    #[arg(long, value_enum, default_value = "auto")]
    pg_provider: PgProviderChoice,
    /// PostgreSQL image for testcontainers [env: TENANTGATE_PG_IMAGE, default: postgres:15].
    #[arg(long)]
    pg_image: Option<String>,
    /// Existing PostgreSQL server to create a throwaway database on [env: TENANTGATE_PG_URL].
    #[arg(long)]
    pg_url: Option<String>,
    /// Harness configuration [default: migrations/tenantgate.toml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Keep the databases of a failed run, and print how to connect to them.
    #[arg(long)]
    keep: bool,
    /// Accept the schema snapshots as they are now (INSTA_UPDATE=always).
    #[arg(long)]
    accept: bool,
    /// Where to write the JUnit report [default: target/tenantgate/migrate-test.xml].
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Also print the time of every migration.
    #[arg(long, short)]
    verbose: bool,
    /// Generated rows per table, added to the fixture before the tenancy migrations
    /// (deterministic); the checks then run at that volume, e.g. `--rows 100000`.
    #[arg(long, default_value_t = 0)]
    rows: u64,
    /// Seed of the row generator for `--rows` (same seed, same rows).
    #[arg(long, default_value_t = 1)]
    rows_seed: u64,
    /// Skip the reversibility pass (up, down, compare, up again for every migration).
    #[arg(long)]
    no_reversibility: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Postgres,
    Sqlite,
}

impl MigrateTest {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let config_path = self.config.clone().unwrap_or_else(Config::default_path);
        let config = Config::load(&config_path)?;
        if self.accept {
            // SAFETY: no other thread exists yet; the runtime starts below.
            unsafe { std::env::set_var("INSTA_UPDATE", "always") };
        }
        let pg = PgOptions::from_flags(
            self.pg_provider,
            self.pg_image.as_deref(),
            self.pg_url.as_deref(),
        );
        let backends: Vec<Backend> = match self.backend {
            None => Backend::ALL.to_vec(),
            Some(BackendArg::Postgres) => vec![Backend::Postgres],
            Some(BackendArg::Sqlite) => vec![Backend::Sqlite],
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("start the async runtime")?;
        runtime.block_on(self.run_async(&config, &backends, &pg))
    }

    async fn run_async(
        &self,
        config: &Config,
        backends: &[Backend],
        pg: &PgOptions,
    ) -> anyhow::Result<ExitCode> {
        let started = Instant::now();
        let options = rehearsal::Options {
            progress: rehearsal::Progress::Lines,
            rows: self.rows,
            rows_seed: self.rows_seed,
            reversibility: !self.no_reversibility,
        };
        provision::sweep_leftovers();
        let janitor = Janitor::new();
        eprintln!(
            "migrate-test: rehearsing {} with {}",
            backends
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(" and "),
            xtask::display_path(&config.path)
        );
        let reports = tokio::select! {
            reports = rehearsal::rehearse_all(backends, config, pg, &janitor, options) => Some(reports),
            () = xtask::interrupted() => None,
        };
        let Some(reports) = reports else {
            // The rehearsal future is dropped here, closing its connections first.
            for line in janitor.finish(false).await {
                eprintln!("{line}");
            }
            provision::remove_strays_of_this_run();
            eprintln!(
                "migrate-test: interrupted; removed every container, database and temporary file of this run"
            );
            return Ok(ExitCode::from(130));
        };
        let passed = reports.iter().all(|r| r.passed());
        let kept = janitor.finish(self.keep && !passed).await;

        println!();
        if self.verbose || self.rows > 0 {
            println!("migrations:\n{}", report::steps(&reports));
        }
        print!("{}", report::safety_table(&reports));
        println!();
        print!("{}", report::table(&reports));
        let notes = report::notes(&reports);
        if !notes.is_empty() {
            println!();
            print!("{notes}");
        }
        let failures = report::failures(&reports);
        if !failures.is_empty() {
            println!();
            print!("{failures}");
        }
        for line in &kept {
            println!("{line}");
        }
        if !passed && !self.keep {
            println!("(rerun with --keep to keep the databases of a failed run)");
        }
        let verdict = report::verdict(&reports, started.elapsed());
        let junit = self
            .junit
            .clone()
            .unwrap_or_else(|| xtask::project_root().join("target/tenantgate/migrate-test.xml"));
        report::write_ci_reports(&reports, &junit, &verdict)?;
        println!("{verdict}");
        Ok(if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
