//! `cargo xtask init`: write a starter configuration for an existing migrations folder,
//! lock the migrations, take the snapshots, and show what the first `migrate-test` finds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use crate::init::{self, Baseline};
use crate::provision;
use crate::rehearsal::{self, AppUnderTest};
use crate::{Project, report};

#[derive(Args)]
pub(crate) struct Init {
    /// Where to write the configuration, relative to the current folder [default: the
    /// project's own, as the xtask names it].
    #[arg(long)]
    config: Option<PathBuf>,
    /// The PostgreSQL migrations folder [default: found beside the configuration].
    #[arg(long)]
    postgres: Option<PathBuf>,
    /// The SQLite migrations folder [default: found beside the configuration].
    #[arg(long)]
    sqlite: Option<PathBuf>,
    /// The tenant column, when init should not guess it.
    #[arg(long)]
    column: Option<String>,
    /// The tenants table, when init should not guess it.
    #[arg(long)]
    tenants_table: Option<String>,
    /// The last version of adopted history (`none`: hold every migration to every rule)
    /// [default: the newest migration].
    #[arg(long)]
    baseline: Option<String>,
    /// Replace an existing configuration.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pg: super::PgArgs,
}

impl Init {
    pub(crate) fn run(self, project: &Project<'_>) -> anyhow::Result<ExitCode> {
        let baseline = match self.baseline.as_deref() {
            None => Baseline::Everything,
            Some("none") => Baseline::Nothing,
            Some(text) => Baseline::UpTo(text.parse().map_err(|_| {
                anyhow::format_err!(
                    "--baseline {text}: give a migration version (e.g. 20240101120000) or `none`"
                )
            })?),
        };
        let options = init::Options {
            config: super::config_path(project, self.config.as_deref()),
            postgres: self.postgres,
            sqlite: self.sqlite,
            column: self.column,
            tenants_table: self.tenants_table,
            baseline,
            force: self.force,
        };
        // The snapshots are taken now: init's rehearsal writes them.
        // SAFETY: no other thread exists yet; the runtime starts below.
        unsafe {
            std::env::set_var("INSTA_UPDATE", "always");
            std::env::set_var("INSTA_FORCE_UPDATE", "1");
            std::env::set_var("INSTA_OUTPUT", "none");
        }
        let pg = self.pg.options();
        let started = Instant::now();
        provision::with_janitor(async |janitor| {
            let written = init::run(&options, &pg, janitor).await?;
            println!("init: wrote {}", crate::display_path(&written.config));
            for lock in &written.lock_files {
                println!(
                    "init: locked the migrations in {}",
                    crate::display_path(lock)
                );
            }
            for note in &written.starter.notes {
                println!("init: {note}");
            }
            let todo = written.starter.todo();
            // What the first migrate-test finds once the reasons are written.
            let config = written.starter.provisional_config(&written.config)?;
            let app = AppUnderTest::from_config(config);
            let backends = app.config.backends();
            let options = rehearsal::Options {
                progress: rehearsal::Progress::Lines,
                ..rehearsal::Options::default()
            };
            eprintln!(
                "init: rehearsing the starter configuration as `cargo xtask migrate-test` will"
            );
            let reports = rehearsal::rehearse_all(&backends, &app, &pg, janitor, options).await;
            print!("{}", report::full(&reports, false));
            println!("{}", report::verdict(&reports, started.elapsed()));
            if todo.is_empty() {
                println!(
                    "\ninit: nothing is left to write; commit the configuration, the lock files and the snapshots"
                );
            } else {
                println!(
                    "\ninit: {} thing(s) only you can write in {} (the verdict above assumes they are):",
                    todo.len(),
                    crate::display_path(&written.config)
                );
                for line in &todo {
                    println!("  - {line}");
                }
                println!(
                    "then run `cargo xtask migrate-test` and commit the configuration, the lock files and the snapshots"
                );
            }
            Ok(ExitCode::SUCCESS)
        })
    }
}
