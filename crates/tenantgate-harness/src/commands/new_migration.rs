//! `cargo xtask new-migration NAME`: the up/down pair in every configured backend folder,
//! with the next version, ready to edit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::Project;

#[derive(Args)]
pub(crate) struct NewMigration {
    /// What the migration does, in snake_case (e.g. `add_loyalty_cards`).
    name: String,
    /// Another app's tenantgate.toml, relative to the current folder [default: the app's own].
    #[arg(long)]
    config: Option<PathBuf>,
}

impl NewMigration {
    pub(crate) fn run(self, project: &Project<'_>) -> anyhow::Result<ExitCode> {
        let config = super::load_config(project, self.config.as_deref())?;
        let dirs: Vec<&std::path::Path> = config
            .backends()
            .into_iter()
            .filter_map(|b| config.migrations_dir(b))
            .collect();
        for path in crate::folder::create_migration(&dirs, &self.name)? {
            println!("created {}", crate::display_path(&path));
        }
        println!(
            "next: write the up and down migration{}, run `cargo xtask lint` and `cargo xtask migrate-test`, and once merged `cargo xtask migrations lock`",
            if dirs.len() > 1 {
                "s of every backend"
            } else {
                ""
            }
        );
        Ok(ExitCode::SUCCESS)
    }
}
