//! A multi-tenant back-office for retail and service shops.
//!
//! The library owns two things the rest of the workspace relies on: the migrations,
//! embedded at compile time ([`migrations`]), and the tenant-scoped data access API
//! ([`tenant`]), through which no caller can read or write another tenant's rows.

pub mod db;
pub mod error;
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
