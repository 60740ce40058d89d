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
