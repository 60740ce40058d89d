//! `cargo xtask migrations lock|check`: the lock files beside the migrations.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::folder::Folder;
use crate::{Project, lock, parity};

#[derive(Args)]
pub(crate) struct Migrations {
    #[command(subcommand)]
    action: Action,
    /// Another app's tenantgate.toml, relative to the current folder [default: the app's own].
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
    pub(crate) fn run(self, project: &Project<'_>) -> anyhow::Result<ExitCode> {
        let config = super::load_config(project, self.config.as_deref())?;
        match self.action {
            Action::Lock => {
                for backend in config.backends() {
                    let folder = Folder::of(&config, backend)?;
                    let path = lock::write(&folder)?;
                    println!(
                        "{backend:8}  {} migrations locked in {}",
                        folder.migrations.len(),
                        crate::display_path(&path)
                    );
                }
                println!("commit the lock files with the migrations");
                Ok(ExitCode::SUCCESS)
            }
            Action::Check => {
                let mut failed = 0;
                for backend in config.backends() {
                    let ours = Folder::of(&config, backend)?;
                    let integrity = lock::check(&ours);
                    let parity = if config.checks_parity() {
                        let theirs = Folder::of(&config, backend.other())?;
                        parity::check(&config, backend, &ours, &theirs)
                    } else {
                        Vec::new()
                    };
                    let failures: Vec<_> = integrity
                        .failures
                        .iter()
                        .chain(&parity)
                        .map(|f| f.render())
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
                    println!(
                        "migrations: PASS — {}",
                        if config.checks_parity() {
                            "lock files and parity hold"
                        } else {
                            "lock files hold (parity does not apply)"
                        }
                    );
                    Ok(ExitCode::SUCCESS)
                } else {
                    println!("migrations: FAIL — {failed} problem(s)");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
