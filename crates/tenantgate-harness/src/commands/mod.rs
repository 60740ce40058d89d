//! One module per `cargo xtask` command: its flags, and a thin `run` over the library.

pub mod ci;

pub mod lint;
pub mod migrate_test;
pub mod migrations;
pub mod new_migration;
pub mod pg_image;
pub mod release;
pub mod schema;

use std::path::{Path, PathBuf};

use tenantgate::Config;

use crate::Project;

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
