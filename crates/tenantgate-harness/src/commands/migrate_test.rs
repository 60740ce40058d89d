//! `cargo xtask migrate-test`: flags, the run, the report, the exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use tenantgate::Backend;

use crate::provision::{self, Janitor, PgOptions};
use crate::rehearsal::AppUnderTest;
use crate::{Project, rehearsal, report};

#[derive(Args)]
pub(crate) struct MigrateTest {
    /// Backend to rehearse; every configured one when not given.
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    #[command(flatten)]
    pg: super::PgArgs,
    /// Another app's tenantgate.toml, relative to the current folder: its folders are
    /// read from disk [default: the app's own, with the migrations it embeds].
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
    /// How long one statement of a migration may run before it is cancelled and named
    /// (e.g. 30s, 10min; 0: no limit) [default: the configuration's `statement_timeout`,
    /// else 5min].
    #[arg(long, value_parser = tenantgate::config::parse_duration)]
    statement_timeout: Option<std::time::Duration>,
    /// Rehearse PostgreSQL on each of these majors, all at once, each against the
    /// same snapshot (e.g. 15,17,18): containers of `tenantgate/postgres:<major>` where
    /// `cargo xtask pg-image --version <major>` built it, else of the official
    /// `postgres:<major>`.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(12..=30))]
    pg_versions: Vec<u32>,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Postgres,
    Sqlite,
}

impl MigrateTest {
    pub(crate) fn run(self, project: &Project<'_>) -> anyhow::Result<ExitCode> {
        let app = under_test(project, self.config.as_deref())?;
        if self.accept {
            // SAFETY: no other thread exists yet; the runtime starts below. Forced, so
            // that a snapshot whose text is current but whose header is not is rewritten.
            unsafe {
                std::env::set_var("INSTA_UPDATE", "always");
                std::env::set_var("INSTA_FORCE_UPDATE", "1");
            }
        }
        let pg = self.pg.options();
        let backends: Vec<Backend> = match self.backend {
            None => app.config.backends(),
            Some(BackendArg::Postgres) => vec![Backend::Postgres],
            Some(BackendArg::Sqlite) => vec![Backend::Sqlite],
        };
        for backend in &backends {
            if !app.config.has(*backend) {
                anyhow::bail!(
                    "--backend {backend}: {} configures no {backend} migrations (it has {})",
                    crate::display_path(&app.config.path),
                    app.config
                        .backends()
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(" and ")
                );
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("start the async runtime")?;
        let result = runtime.block_on(self.run_async(&app, &backends, &pg));
        // Work that cannot be cancelled (a file check on a blocking thread) must not hold
        // the exit after an interruption: it is left to end with the process.
        runtime.shutdown_background();
        result
    }

    async fn run_async(
        &self,
        app: &AppUnderTest<'_>,
        backends: &[Backend],
        pg: &PgOptions,
    ) -> anyhow::Result<ExitCode> {
        let started = Instant::now();
        let options = rehearsal::Options {
            progress: rehearsal::Progress::Lines,
            rows: self.rows,
            rows_seed: self.rows_seed,
            reversibility: !self.no_reversibility,
            statement_timeout: self.statement_timeout,
            ..rehearsal::Options::default()
        };
        provision::sweep_leftovers();
        let janitor = Janitor::new();
        // Listening before the line below: the tests (and people) interrupt once they see it.
        let interrupted = crate::interrupted();
        eprintln!(
            "migrate-test: rehearsing {} with {}",
            backends
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(" and "),
            crate::display_path(&app.config.path)
        );
        let reports = tokio::select! {
            reports = self.rehearse(backends, app, pg, &janitor, options) => Some(reports),
            () = interrupted => None,
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

        print!("{}", report::full(&reports, self.verbose || self.rows > 0));
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
            .unwrap_or_else(|| crate::workspace::root().join("target/tenantgate/migrate-test.xml"));
        println!("{verdict}");
        if let Err(error) = report::write_ci_reports(&reports, &junit, &verdict) {
            eprintln!("warning: {error:#} (the verdict above stands)");
        }
        Ok(if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

impl MigrateTest {
    /// Every backend once; with `--pg-versions`, PostgreSQL once per major, all at once
    /// with the other backends (three majors and SQLite, one major after the other
    /// against all at once: 6.7 s and 4.8 s for the demo, 26.4 s and 21.4 s for a
    /// 307-migration history), each report named by its major. The majors share one
    /// snapshot file: each leaves its schema text to be checked here, in the majors'
    /// order, as if they had run in turn.
    async fn rehearse(
        &self,
        backends: &[Backend],
        app: &AppUnderTest<'_>,
        pg: &PgOptions,
        janitor: &Janitor,
        options: rehearsal::Options,
    ) -> Vec<rehearsal::BackendReport> {
        if self.pg_versions.is_empty() || !backends.contains(&Backend::Postgres) {
            return rehearsal::rehearse_all(backends, app, pg, janitor, options).await;
        }
        crate::snapshot::verified_on(&self.pg_versions);
        let majors = self.pg_versions.iter().map(|major| {
            let mut pg = pg.clone();
            pg.choice = provision::PgProviderChoice::Container;
            pg.image = crate::pg_image::image_for(*major);
            eprintln!("migrate-test: PostgreSQL {major} ({})", pg.image);
            let options = rehearsal::Options {
                pg_major: Some(*major),
                defer_snapshot: true,
                ..options
            };
            async move { rehearsal::rehearse(Backend::Postgres, app, &pg, janitor, options).await }
        });
        let others: Vec<Backend> = backends
            .iter()
            .copied()
            .filter(|b| *b != Backend::Postgres)
            .collect();
        let (mut reports, other_reports) = tokio::join!(
            futures_util::future::join_all(majors),
            rehearsal::rehearse_all(&others, app, pg, janitor, options),
        );
        for report in &mut reports {
            report.check_snapshot(&app.config);
        }
        let agreement: Vec<(u32, bool)> = reports
            .iter()
            .filter_map(|r| Some((r.pg_major?, snapshot_matched(r)?)))
            .collect();
        if let Some(note) = version_agreement(&agreement)
            && let Some(first) = reports
                .iter_mut()
                .find(|r| snapshot_matched(r) == Some(false))
        {
            first.notes.push(note);
        }
        reports.extend(other_reports);
        reports
    }
}

/// Whether the report's schema matched its snapshot (`None`: the check did not run).
fn snapshot_matched(report: &rehearsal::BackendReport) -> Option<bool> {
    report
        .checks
        .iter()
        .find(|c| c.name == "schema-snapshot")
        .map(|c| c.failures.is_empty())
}

/// When some majors read the schema as the snapshot and others do not, which: the
/// difference is then the server's, not the migrations' (each one's diff is above).
fn version_agreement(majors: &[(u32, bool)]) -> Option<String> {
    let list = |matched: bool| {
        majors
            .iter()
            .filter(|(_, m)| *m == matched)
            .map(|(major, _)| format!("postgres {major}"))
            .collect::<Vec<_>>()
    };
    let (same, differ) = (list(true), list(false));
    if same.is_empty() || differ.is_empty() {
        return None;
    }
    Some(format!(
        "schema text across PostgreSQL majors: {} read{} as the snapshot, {} read{} differently (diff above): the same migrations made a different schema on a different server, through its catalog or a migration that asks for the server's version",
        same.join(" and "),
        if same.len() == 1 { "s" } else { "" },
        differ.join(" and "),
        if differ.len() == 1 { "s" } else { "" },
    ))
}

/// The app `--config` names (its folders read from disk), or the project's own app, with
/// the migrations it embeds and its API.
pub fn under_test<'a>(
    project: &Project<'a>,
    config: Option<&std::path::Path>,
) -> anyhow::Result<AppUnderTest<'a>> {
    let path = super::config_path(project, config);
    let config = tenantgate::Config::load(&path)?;
    let own = crate::workspace::same_path(&path, &crate::workspace::root().join(project.config));
    Ok(AppUnderTest {
        config,
        embedded: if own { project.app } else { None },
        api: if own { project.api } else { None },
    })
}

#[cfg(test)]
mod tests {
    use super::version_agreement;

    #[test]
    fn majors_that_read_the_schema_differently_are_named() {
        let note = version_agreement(&[(15, true), (17, true), (18, false)]).unwrap();
        assert!(
            note.contains(
                "postgres 15 and postgres 17 read as the snapshot, postgres 18 reads differently"
            ),
            "{note}"
        );
        assert_eq!(version_agreement(&[(15, true), (18, true)]), None);
        // Every major differs: the migrations changed the schema, no major is to blame.
        assert_eq!(version_agreement(&[(15, false), (18, false)]), None);
    }
}
