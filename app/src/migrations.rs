//! The migrations, embedded at compile time: what is tested is byte for byte what ships.

use std::fmt;

use sqlx::migrate::Migrator;

use crate::Error;

/// PostgreSQL migrations, from `migrations/postgres`.
pub static POSTGRES: Migrator = sqlx::migrate!("../migrations/postgres");
/// SQLite migrations, from `migrations/sqlite`.
pub static SQLITE: Migrator = sqlx::migrate!("../migrations/sqlite");

/// The folders the migrators above were embedded from, for comparing them with the disk.
pub const POSTGRES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/postgres");
pub const SQLITE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite");

/// A database engine the app supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Postgres, Backend::Sqlite];

    /// The migrator embedded for this backend.
    pub fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Postgres => &POSTGRES,
            Backend::Sqlite => &SQLITE,
        }
    }

    /// The folder the embedded migrator was read from at compile time.
    pub fn embedded_dir(self) -> &'static str {
        match self {
            Backend::Postgres => POSTGRES_DIR,
            Backend::Sqlite => SQLITE_DIR,
        }
    }

    /// The backend that is not this one.
    pub fn other(self) -> Backend {
        match self {
            Backend::Postgres => Backend::Sqlite,
            Backend::Sqlite => Backend::Postgres,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }

    /// Which backend a connection URL is for.
    pub fn from_url(url: &str) -> Result<Backend, Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            // Never echo the whole URL: it may carry a password.
            let scheme = url.split(':').next().unwrap_or_default();
            Err(Error::UnsupportedUrl(format!("{scheme}:…")))
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}
