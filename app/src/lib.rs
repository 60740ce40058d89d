//! A multi-tenant back-office for retail and service shops: Tenantgate's demo app.
//!
//! - [`TENANTGATE`]: what the app hands Tenantgate — the migrations it embeds (one
//!   migrator per backend, `sqlx::migrate!`), the schema snapshots `cargo xtask
//!   migrate-test` asserted, and its `tenantgate.toml`. `main.rs` runs Tenantgate's
//!   command line over it; the workspace's `xtask` hands it to the harness.
//! - [`tenant`]: the tenant-scoped data access API, through which no caller can read or
//!   write another tenant's rows; [`scoped`], the same by table name; [`api`], the two as
//!   Tenantgate's harness drives them in its isolation cases.

pub mod api;
mod error;
pub mod scoped;
pub mod tenant;

pub use error::Error;
pub use scoped::ScopedTable;
pub use tenant::{Db, Tenant, TenantId};

use sqlx::migrate::Migrator;

/// PostgreSQL migrations, from `migrations/postgres`.
pub static POSTGRES: Migrator = sqlx::migrate!("../migrations/postgres");
/// SQLite migrations, from `migrations/sqlite`.
pub static SQLITE: Migrator = sqlx::migrate!("../migrations/sqlite");

/// What this app embeds, for Tenantgate's runtime and harness.
pub static TENANTGATE: tenantgate::App = tenantgate::App {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    config: include_str!("../../migrations/tenantgate.toml"),
    postgres: Some(tenantgate::Embedded {
        migrator: &POSTGRES,
        snapshot: Some(include_str!("../../migrations/snapshots/postgres.snap")),
    }),
    sqlite: Some(tenantgate::Embedded {
        migrator: &SQLITE,
        snapshot: Some(include_str!("../../migrations/snapshots/sqlite.snap")),
    }),
};
