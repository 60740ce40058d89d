//! The harness configuration (`migrations/tenantgate.toml`): where the migrations are, and
//! the app's tenancy policy. Paths in the file are relative to the file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::Backend;

/// The configuration, with every path resolved against the file's folder.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub postgres_dir: PathBuf,
    pub sqlite_dir: PathBuf,
    pub snapshot_dir: PathBuf,
    pub tenancy: Tenancy,
    pub global_tables: Vec<GlobalTable>,
    pub parity_exemptions: Vec<ParityExemption>,
    pub seed_at_version: i64,
    pub seed_file: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenancy {
    pub column: String,
    pub tenants_table: String,
    pub default_tenant_id: i64,
    pub isolated_from_version: i64,
    pub app_role: String,
    pub tenant_setting: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalTable {
    pub name: String,
    pub reason: String,
}

/// A migration that deliberately exists for one backend only.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParityExemption {
    /// `<version>_<name>`, as in the file name.
    pub migration: String,
    /// The backend that has it: `postgres` or `sqlite`.
    pub only_in: String,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    migrations: MigrationsSection,
    tenancy: Tenancy,
    #[serde(default)]
    global_tables: Vec<GlobalTable>,
    #[serde(default)]
    parity_exemptions: Vec<ParityExemption>,
    fixtures: FixturesSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationsSection {
    postgres: PathBuf,
    sqlite: PathBuf,
    snapshots: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixturesSection {
    seed_at_version: i64,
    seed: PathBuf,
}

/// `migrations/tenantgate.toml` as it was when this binary was built.
const EMBEDDED: &str = include_str!("../../migrations/tenantgate.toml");

impl Config {
    /// The configuration of this workspace's app.
    pub fn default_path() -> PathBuf {
        crate::workspace_root().join("migrations/tenantgate.toml")
    }

    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the harness configuration {}", path.display()))?;
        let config = Config::parse(&text, path)?;
        config.validate(true)?;
        Ok(config)
    }

    /// The configuration this binary was built with: the live runner checks a production
    /// database against the same tenancy policy the gate checked (its folders are those of
    /// the build machine and are not read).
    pub fn embedded() -> Config {
        let config = Config::parse(EMBEDDED, &Config::default_path())
            .expect("the gate validated the embedded configuration");
        debug_assert!(config.validate(false).is_ok());
        config
    }

    fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
        let file: File = toml::from_str(text).map_err(|error| {
            anyhow::format_err!(
                "{} is not a valid harness configuration: {}",
                path.display(),
                error.to_string().trim_end()
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let config = Config {
            path: path.to_path_buf(),
            postgres_dir: base.join(file.migrations.postgres),
            sqlite_dir: base.join(file.migrations.sqlite),
            snapshot_dir: base.join(file.migrations.snapshots),
            tenancy: file.tenancy,
            global_tables: file.global_tables,
            parity_exemptions: file.parity_exemptions,
            seed_at_version: file.fixtures.seed_at_version,
            seed_file: base.join(file.fixtures.seed),
        };
        Ok(config)
    }

    /// Checks the policy and, with `files`, that the folders and files it names exist.
    fn validate(&self, files: bool) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        for (key, dir) in [
            ("migrations.postgres", &self.postgres_dir),
            ("migrations.sqlite", &self.sqlite_dir),
        ] {
            if files && !dir.is_dir() {
                problems.push(format!(
                    "`{key}` names {}, which is not a folder",
                    dir.display()
                ));
            }
        }
        if files && !self.seed_file.is_file() {
            problems.push(format!(
                "`fixtures.seed` names {}, which is not a file",
                self.seed_file.display()
            ));
        }
        let mut seen = BTreeSet::new();
        for table in &self.global_tables {
            if table.reason.trim().is_empty() {
                problems.push(format!(
                    "global table `{}` needs a one-line `reason`",
                    table.name
                ));
            }
            if !seen.insert(&table.name) {
                problems.push(format!("global table `{}` is listed twice", table.name));
            }
        }
        for exemption in &self.parity_exemptions {
            if Backend::ALL.iter().all(|b| b.name() != exemption.only_in) {
                problems.push(format!(
                    "parity exemption `{}`: `only_in` must be `postgres` or `sqlite`, not `{}`",
                    exemption.migration, exemption.only_in
                ));
            }
            if exemption.reason.trim().is_empty() {
                problems.push(format!(
                    "parity exemption `{}` needs a one-line `reason`",
                    exemption.migration
                ));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        bail!(
            "{} is not a valid harness configuration:\n  - {}",
            self.path.display(),
            problems.join("\n  - ")
        )
    }

    pub fn migrations_dir(&self, backend: Backend) -> &Path {
        match backend {
            Backend::Postgres => &self.postgres_dir,
            Backend::Sqlite => &self.sqlite_dir,
        }
    }

    pub fn is_global(&self, table: &str) -> bool {
        table == self.tenancy.tenants_table
            || self.global_tables.iter().any(|global| global.name == table)
    }
}
