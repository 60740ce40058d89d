//! The library's error type.

/// Everything the app library can fail with.
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
