//! A multi-tenant back-office for retail and service shops.
//!
//! The library owns two things the rest of the workspace relies on: the migrations,
//! embedded at compile time ([`migrations`]), and the tenant-scoped data access API
//! ([`tenant`]), through which no caller can read or write another tenant's rows.

pub mod checks;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod isolation_rules;
pub mod live;
pub mod manifest;
pub mod migrations;
pub mod schema;
pub mod scoped;
pub mod status;
pub mod tenant;

pub use error::Error;
pub use migrations::Backend;
pub use scoped::ScopedTable;
pub use tenant::{Db, Tenant, TenantId};

use std::path::{Path, PathBuf};

/// The workspace root this binary was built from (messages name files relative to it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("app lives in the workspace root")
        .to_path_buf()
}

/// A path relative to the workspace root when it is inside it, for messages.
pub fn display_path(path: &Path) -> String {
    let root = workspace_root();
    let absolute = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    match absolute.strip_prefix(root.canonicalize().unwrap_or(root)) {
        Ok(relative) => relative.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}
