//! What an application hands Tenantgate: its name and version, the migrations it embeds
//! (a sqlx migrator per backend it supports, built by `sqlx::migrate!`), the schema
//! snapshot the gate asserted for each, and the text of its `tenantgate.toml`. The live
//! runner, `app verify` and the release manifest work from this, so what they check is
//! what the binary carries.

use sqlx::migrate::{Migration, Migrator};

use crate::Backend;
use crate::config::Config;

/// An application's embedded migrations, snapshots and configuration.
///
/// ```ignore
/// pub static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
///
/// pub static TENANTGATE: tenantgate::App = tenantgate::App {
///     name: env!("CARGO_PKG_NAME"),
///     version: env!("CARGO_PKG_VERSION"),
///     config: include_str!("../migrations/tenantgate.toml"),
///     postgres: Some(tenantgate::Embedded {
///         migrator: &POSTGRES,
///         snapshot: Some(include_str!("../migrations/snapshots/postgres.snap")),
///     }),
///     sqlite: None,
/// };
/// ```
#[derive(Clone, Copy)]
pub struct App<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// The text of the app's `tenantgate.toml`.
    pub config: &'a str,
    pub postgres: Option<Embedded<'a>>,
    pub sqlite: Option<Embedded<'a>>,
}

/// One backend's migrations, as `sqlx::migrate!` embedded them, and the schema they make.
#[derive(Clone, Copy)]
pub struct Embedded<'a> {
    pub migrator: &'a Migrator,
    /// The insta snapshot `cargo xtask migrate-test` asserted (`None` before the first
    /// one is written; `app verify` then cannot check drift, and says so).
    pub snapshot: Option<&'a str>,
}

impl<'a> App<'a> {
    pub fn embedded(&self, backend: Backend) -> Option<&Embedded<'a>> {
        match backend {
            Backend::Postgres => self.postgres.as_ref(),
            Backend::Sqlite => self.sqlite.as_ref(),
        }
    }

    /// The backends this build embeds migrations for.
    pub fn backends(&self) -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|b| self.embedded(*b).is_some())
            .collect()
    }

    /// The embedded configuration, parsed.
    pub fn config(&self) -> anyhow::Result<Config> {
        Config::embedded(self.config).map_err(|error| {
            anyhow::format_err!(
                "the configuration embedded in {} {} is invalid: {error:#}",
                self.name,
                self.version
            )
        })
    }
}

impl Embedded<'_> {
    pub fn ups(&self) -> impl Iterator<Item = &Migration> {
        self.migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
    }

    pub fn down_of(&self, version: i64) -> Option<&Migration> {
        self.migrator
            .iter()
            .find(|m| m.version == version && m.migration_type.is_down_migration())
    }
}
