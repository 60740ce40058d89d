//! The database engines Tenantgate works with.

use std::fmt;

use crate::Error;

/// A database engine an app may support: PostgreSQL, SQLite, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Postgres, Backend::Sqlite];

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

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(text: &str) -> Result<Backend, String> {
        match text {
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "sqlite" => Ok(Backend::Sqlite),
            other => Err(format!(
                "`{other}` is not a backend: use `postgres` or `sqlite`"
            )),
        }
    }
}
