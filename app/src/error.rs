//! The demo app's error type.

/// Everything the app's data access API can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unsupported database url `{0}`: expected postgres://… or sqlite:…")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "refused: the row for `{table}` belongs to tenant {row_tenant}, not to tenant {tenant}"
    )]
    WrongTenant {
        table: String,
        row_tenant: String,
        tenant: i64,
    },
    #[error("refused: `tenant_id` of `{table}` cannot be assigned; a row never changes tenant")]
    TenantColumnAssigned { table: String },
    #[error("`{0}` is not a plain SQL identifier (letters, digits and underscores)")]
    InvalidIdentifier(String),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<tenantgate::Error> for Error {
    fn from(error: tenantgate::Error) -> Error {
        match error {
            tenantgate::Error::UnsupportedUrl(url) => Error::UnsupportedUrl(url),
            tenantgate::Error::Database(error) => Error::Database(error),
            tenantgate::Error::Migrate(error) => Error::Migrate(error),
            other => Error::UnsupportedUrl(other.to_string()),
        }
    }
}
