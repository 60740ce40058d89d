//! `cargo xtask migrations lock|check`: the lock files beside the migrations.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use app::Backend;
use xtask::config::Config;
use xtask::folder::Folder;
use xtask::{lock, parity};

#[derive(Args)]
pub(crate) struct Migrations {
    #[command(subcommand)]
    action: Action,
    /// Harness configuration [default: migrations/tenantgate.toml].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Action {
    /// Rewrite each backend's lock file (`tenantgate.sum`) from the migrations on disk.
    Lock,
    /// Check the migrations against the lock files, and the backends' parity (no database).
    Check,
}

impl Migrations {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let config = Config::load(&self.config.unwrap_or_else(Config::default_path))?;
        match self.action {
            Action::Lock => {
                for backend in Backend::ALL {
                    let folder = Folder::read(config.migrations_dir(backend))?;
                    let path = lock::write(&folder)?;
                    println!(
                        "{backend:8}  {} migrations locked in {}",
                        folder.migrations.len(),
                        xtask::display_path(&path)
                    );
                }
                println!("commit the lock files with the migrations");
                Ok(ExitCode::SUCCESS)
            }
            Action::Check => {
                let mut failed = 0;
                for backend in Backend::ALL {
                    let ours = Folder::read(config.migrations_dir(backend))?;
                    let theirs = Folder::read(config.migrations_dir(backend.other()))?;
                    let integrity = lock::check(&ours);
                    let failures: Vec<_> = integrity
                        .failures
                        .iter()
                        .chain(&parity::check(&config, backend, &ours, &theirs))
                        .map(|f| f.describe())
                        .collect();
                    println!(
                        "{backend:8}  {} locked, {} new, {} problem(s)",
                        integrity.locked,
                        integrity.new.len(),
                        failures.len()
                    );
                    for failure in &failures {
                        println!("  FAIL {}", failure.replace('\n', "\n       "));
                    }
                    failed += failures.len();
                }
                if failed == 0 {
                    println!("migrations: PASS — lock files and parity hold");
                    Ok(ExitCode::SUCCESS)
                } else {
                    println!("migrations: FAIL — {failed} problem(s)");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
