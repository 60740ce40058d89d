//! The data-access API an app may have the harness exercise: besides its own cases (raw
//! SQL as the application role, and a config-driven tenant-scoped access of its own), the
//! harness drives an app's tenant-scoped API through these traits, on the same populated
//! database, and fails when it reads another tenant's rows or writes them.
//!
//! They live in the runtime, not in the harness, so that an app implements them beside its
//! API without depending on the harness (and its containers) in production.

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

/// Opens an app's tenant-scoped API on a database.
pub trait TenantApi: Send + Sync {
    /// Connects to `url` as the app does: on PostgreSQL as `role`, when one is given.
    fn connect<'a>(
        &'a self,
        url: &'a str,
        role: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Box<dyn TenantApiSession>, String>>;
}

/// The API, connected. Every call names the tenant it acts for (the harness plays every
/// tenant in turn) and the table; keys travel as text and rows as JSON objects.
pub trait TenantApiSession: Send + Sync {
    /// The values of `key` of every row of `table` the tenant can see.
    fn keys<'a>(
        &'a self,
        tenant: &'a str,
        table: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ApiError>>;

    /// Inserts `row` into `table` as the tenant.
    fn insert<'a>(
        &'a self,
        tenant: &'a str,
        table: &'a str,
        row: &'a Map<String, Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>>;

    /// Sets `values` on the rows of `table` whose `key` is one of `keys`; how many changed.
    fn update<'a>(
        &'a self,
        tenant: &'a str,
        table: &'a str,
        key: &'a str,
        keys: &'a [String],
        values: &'a Map<String, Value>,
    ) -> BoxFuture<'a, Result<u64, ApiError>>;

    /// Deletes the rows of `table` whose `key` is one of `keys`; how many went.
    fn delete<'a>(
        &'a self,
        tenant: &'a str,
        table: &'a str,
        key: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<u64, ApiError>>;

    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Why an API call did not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// The API refused a row that belongs to another tenant, before the database saw it.
    WrongTenant(String),
    /// The API refused to assign the tenant column.
    TenantAssigned(String),
    /// The API cannot address this table (e.g. its key has several columns).
    Unsupported(String),
    /// The database refused the statement: its code (SQLSTATE, SQLite extended code) and message.
    Database {
        code: String,
        message: String,
    },
    Other(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::WrongTenant(message)
            | ApiError::TenantAssigned(message)
            | ApiError::Unsupported(message)
            | ApiError::Other(message) => f.write_str(message),
            ApiError::Database { code, message } if code.is_empty() => f.write_str(message),
            ApiError::Database { code, message } => write!(f, "{message} ({code})"),
        }
    }
}
