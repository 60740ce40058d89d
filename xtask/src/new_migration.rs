//! `cargo xtask new-migration NAME`: the up/down pair in both backend folders, with the
//! next version, ready to edit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use app::Backend;
use xtask::config::Config;

#[derive(Args)]
pub(crate) struct NewMigration {
    /// What the migration does, in snake_case (e.g. `add_loyalty_cards`).
    name: String,
    /// Harness configuration [default: migrations/tenantgate.toml].
    #[arg(long)]
    config: Option<PathBuf>,
}

impl NewMigration {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let config = Config::load(&self.config.unwrap_or_else(Config::default_path))?;
        let dirs: Vec<&std::path::Path> = Backend::ALL
            .iter()
            .map(|b| config.migrations_dir(*b))
            .collect();
        for path in xtask::folder::create_migration(&dirs, &self.name)? {
            println!("created {}", xtask::display_path(&path));
        }
        println!(
            "next: write both backends' up and down, run `cargo xtask lint` and `cargo xtask migrate-test`, and once merged `cargo xtask migrations lock`"
        );
        Ok(ExitCode::SUCCESS)
    }
}
