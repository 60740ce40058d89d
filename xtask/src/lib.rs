//! Tenantgate's migration harness, as a library: `main.rs` drives it from the command
//! line, and the integration tests in `tests/` share its provisioning and rehearsal.

pub mod bench;
pub mod checks;
pub mod config;
pub mod db;
pub mod folder;
pub mod isolation;
pub mod lint;
pub mod lock;
pub mod migration_set;
pub mod parity;
pub mod provision;
pub mod rehearsal;
pub mod release;
pub mod report;
pub mod reversibility;
pub mod schema;
pub mod snapshot;
pub mod static_checks;
pub mod volume;
pub mod workspace_tests;

use std::path::PathBuf;

/// The workspace root: every path the harness uses is resolved from here.
pub fn project_root() -> PathBuf {
    app::workspace_root()
}

pub use app::display_path;

/// The variable `main` sets for insta. insta also reads it at compile time, so a cargo
/// run by the harness with it set would rebuild insta and everything above it: children
/// that run cargo get the environment without it ([`cargo`], [`shell`]).
pub const INSTA_ROOT_VARIABLE: &str = "INSTA_WORKSPACE_ROOT";

/// `cargo`, in the project root, with the developer's environment (see
/// [`INSTA_ROOT_VARIABLE`]), so that it reuses the developer's build.
pub fn cargo() -> std::process::Command {
    let mut command = std::process::Command::new("cargo");
    command
        .env_remove(INSTA_ROOT_VARIABLE)
        .current_dir(project_root());
    command
}

/// Resolves on Ctrl-C or SIGTERM: the commands that hold throwaway resources race their
/// work against it and clean up before exiting with 130.
pub async fn interrupted() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// Facts about the image `cargo xtask pg-image` builds, shared with the provisioning errors.
pub mod pg_image {
    /// Tag of the image built from Debian packages.
    pub const DEFAULT_TAG: &str = "tenantgate/postgres:15";
}
