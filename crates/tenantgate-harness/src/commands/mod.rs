//! One module per `cargo xtask` command: its flags, and a thin `run` over the library.

pub mod ci;
pub mod init;
pub mod lint;
pub mod migrate_test;
pub mod migrations;
pub mod new_migration;
pub mod pg_image;
pub mod release;
pub mod schema;

use std::path::{Path, PathBuf};

use clap::Args;
use tenantgate::Config;

use crate::Project;
use crate::provision::{PgOptions, PgProviderChoice};

/// Where the throwaway PostgreSQL databases come from: the flags of every command that
/// makes them.
#[derive(Args, Clone, Debug)]
pub struct PgArgs {
    /// Where PostgreSQL comes from.
    #[arg(long, value_enum, default_value = "auto")]
    pub pg_provider: PgProviderChoice,
    /// PostgreSQL image for testcontainers [env: TENANTGATE_PG_IMAGE, default: postgres:15].
    #[arg(long)]
    pub pg_image: Option<String>,
    /// Existing PostgreSQL server to create a throwaway database on [env: TENANTGATE_PG_URL].
    #[arg(long)]
    pub pg_url: Option<String>,
}

impl PgArgs {
    pub fn options(&self) -> PgOptions {
        PgOptions::from_flags(
            self.pg_provider,
            self.pg_image.as_deref(),
            self.pg_url.as_deref(),
        )
    }
}

impl Default for PgArgs {
    fn default() -> PgArgs {
        PgArgs {
            pg_provider: PgProviderChoice::Auto,
            pg_image: None,
            pg_url: None,
        }
    }
}

/// The configuration a command works on: `--config` (relative to the current folder), or
/// the project's own (relative to the workspace root).
pub fn load_config(project: &Project<'_>, flag: Option<&Path>) -> anyhow::Result<Config> {
    Config::load(&config_path(project, flag))
}

pub fn config_path(project: &Project<'_>, flag: Option<&Path>) -> PathBuf {
    match flag {
        Some(path) => crate::workspace::absolute(path),
        None => crate::workspace::root().join(project.config),
    }
}
