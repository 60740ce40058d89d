//! The library's error type, for the calls an app makes directly (connecting, reading the
//! migrations table). The live runner and the checks report with their own check types,
//! since they end in a report for people.

/// Everything the runtime's direct calls can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unsupported database url `{0}`: expected postgres://… or sqlite:…")]
    UnsupportedUrl(String),
    #[error("this build of the app embeds no {0} migrations")]
    BackendNotEmbedded(crate::Backend),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}
