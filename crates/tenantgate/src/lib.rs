//! Tenantgate's runtime: what a multi-tenant sqlx application embeds so that its own
//! binary can apply its migrations to a live database safely and check that database
//! against the policy its merge gate checked.
//!
//! - [`App`]: what the app hands over — its embedded migrators (`sqlx::migrate!`), the
//!   schema snapshots the gate asserted, and its `tenantgate.toml`.
//! - [`cli::main`]: the command line (`migrate`, `verify`, `status`, `migrations`,
//!   `verify-manifest`), the whole of an app's `main` if it wants it.
//! - [`live`]: the live runner (validate, back up, apply under a lock, verify, roll back),
//!   and the schema-per-tenant fan-out.
//! - [`config`], [`schema`] (introspection), [`rules`] (static isolation rules),
//!   [`checks`] (failures as data), [`manifest`] (release manifests), [`api`] (the trait
//!   an app implements to have its data-access API exercised by the harness).
//!
//! Its companion, `tenantgate-harness`, rehearses the same migrations on throwaway
//! databases before anything merges.
//!
//! # Example
//!
//! An app crate with its migrations in `migrations/postgres` (and `sqlx` with the
//! `migrate` and `macros` features):
//!
//! ```ignore
//! // src/lib.rs
//! pub static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
//!
//! pub static TENANTGATE: tenantgate::App = tenantgate::App {
//!     name: env!("CARGO_PKG_NAME"),
//!     version: env!("CARGO_PKG_VERSION"),
//!     config: include_str!("../migrations/tenantgate.toml"),
//!     postgres: Some(tenantgate::Embedded {
//!         migrator: &POSTGRES,
//!         snapshot: Some(include_str!("../migrations/snapshots/postgres.snap")),
//!     }),
//!     sqlite: None,
//! };
//!
//! // src/main.rs
//! fn main() -> std::process::ExitCode {
//!     tenantgate::cli::main(&my_app::TENANTGATE)
//! }
//! ```
//!
//! `my-app migrate --database-url postgres://…` then validates, backs up, applies,
//! verifies and, on failure, rolls back; `my-app verify` checks a database on its own.

pub mod api;
mod app;
mod backend;
pub mod checks;
pub mod cli;
pub mod config;
pub mod db;
mod error;
pub mod live;
pub mod manifest;
pub mod rules;
pub mod schema;
pub mod status;
mod tenant_value;

pub use app::{App, Embedded};
pub use backend::Backend;
pub use config::Config;
pub use error::Error;
pub use tenant_value::{KeyType, TenantValue};
