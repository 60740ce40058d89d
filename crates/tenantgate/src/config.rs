//! The configuration (`tenantgate.toml`): where an app's migrations are, and its tenancy
//! policy. Everything Tenantgate knows about an app comes from here and from the schema
//! it introspects. Paths in the file are relative to the file.
//!
//! ```toml
//! [migrations]
//! postgres = "postgres"          # one backend, or both
//! sqlite = "sqlite"
//!
//! [tenancy]
//! column = "tenant_id"
//! tenants_table = "tenants"
//! default_tenant_id = 1          # an integer or a string; leave it out when there was no single-tenant past
//! app_role = "app"
//! tenant_setting = "app.tenant_id"
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::bail;
use serde::Deserialize;

use crate::Backend;
use crate::tenant_value::TenantValue;

/// The configuration, with every path resolved against the file's folder.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (for messages; an embedded configuration keeps the path
    /// it had when the app was built, relative to nothing).
    pub path: PathBuf,
    pub migrations: Migrations,
    pub tenancy: Tenancy,
    pub global_tables: Vec<GlobalTable>,
    pub functions: Vec<FunctionDeclaration>,
    pub tables: Vec<TableDeclaration>,
    pub parity_exemptions: Vec<ParityExemption>,
    pub acknowledgements: Vec<Acknowledgement>,
    pub fixtures: Option<Fixtures>,
    pub sqlite: SqliteSettings,
    /// `[postgres] version`: the PostgreSQL major production runs; the linter's advice
    /// follows it (on 18, `NOT NULL … NOT VALID`, then `VALIDATE`).
    pub postgres_version: Option<u32>,
}

/// Where the migrations are, and how sqlx records them.
#[derive(Clone, Debug)]
pub struct Migrations {
    pub postgres: Option<PathBuf>,
    pub sqlite: Option<PathBuf>,
    /// The insta snapshots of the final schema, one per backend.
    pub snapshots: PathBuf,
    /// The migrations table, when the app renames it (`[migrate] table-name` of its
    /// `sqlx.toml`, or this key); `None` is sqlx's `_sqlx_migrations`.
    pub table: Option<String>,
    /// The app's `sqlx.toml`, when there is one: its `[migrate]` settings change what
    /// sqlx records (the table, ignored characters in checksums).
    pub sqlx_toml: Option<PathBuf>,
    /// Migrations up to this version are adopted history: locked, not linted, not
    /// reversed, reported as such.
    pub baseline: Option<i64>,
    /// Whether the two backends must carry the same versions under the same names.
    pub parity: bool,
    /// How long one statement of a migration may run in a rehearsal before it is
    /// cancelled and named (zero: no limit).
    pub statement_timeout: std::time::Duration,
}

/// The rehearsal's statement timeout when the configuration sets none: longer than a
/// backfill of a million rows takes on a small machine, short enough that a hung
/// migration is named within minutes.
pub const DEFAULT_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Parses `5s`, `500ms`, `2min`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 5s, 500ms, 2min"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "min" | "m" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`; use ms, s, min or h"
            ));
        }
    };
    std::time::Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("`{text}` is too long a duration; write e.g. 5s, 500ms, 2min"))
}

#[derive(Clone, Debug)]
pub struct Tenancy {
    /// The column every tenant-owned table carries (unless a `[[tables]]` entry names another).
    pub column: String,
    /// The tenants table; schema-qualified when it is not in the default schema.
    pub tenants_table: String,
    /// The tenants table's key; its primary key when `None`.
    pub tenants_key: Option<String>,
    /// The tenant that owns every row written before the app went multi-tenant; `None`
    /// for an app that was multi-tenant from its first migration.
    pub default_tenant_id: Option<TenantValue>,
    /// From this version on, every tenant-owned table must be fully isolated after every
    /// migration. 0: from the first migration.
    pub isolated_from_version: i64,
    pub isolation: Isolation,
    /// Schemas of other software in the live database that the application role may use
    /// (a platform's `auth`, `storage`): `app verify` and `app migrate` leave them out of
    /// the schema they read. Every other schema the role can use is read and judged.
    pub other_software_schemas: Vec<String>,
}

/// How the database isolates tenants.
#[derive(Clone, Debug)]
pub enum Isolation {
    /// PostgreSQL row-level security, checked as the application role.
    RowLevelSecurity(RowLevelSecurity),
    /// No row-level security: the app's queries isolate tenants; the RLS rules and the
    /// raw-SQL cases do not apply (and are reported as not applicable).
    WithoutRowLevelSecurity { reason: String },
}

#[derive(Clone, Debug)]
pub struct RowLevelSecurity {
    /// The role the application runs as; the policies must apply to it.
    pub app_role: String,
    /// The setting the policies read the current tenant from (`current_setting(…)`).
    pub tenant_setting: Option<String>,
    /// Expressions the policies use as the current tenant (`app.current_tenant()`).
    pub tenant_functions: Vec<String>,
    /// Predicates that filter by tenant, `{column}` standing for the tenant column
    /// (`basejump.has_role_on_account({column})`, membership-style policies).
    pub tenant_predicates: Vec<String>,
    /// How a session acts as a tenant, run in the session's transaction with `{tenant}`
    /// replaced by the tenant's SQL literal; by default
    /// `SELECT set_config('<tenant_setting>', '<tenant>', true)`.
    pub act_as: Option<String>,
}

impl RowLevelSecurity {
    /// The SQL that makes the current transaction act as `tenant` (a SQL literal of the
    /// tenant key); its text as `set_config` takes it when the setting is used.
    pub fn act_as_sql(&self, tenant_literal: &str, tenant_text: &str) -> String {
        match (&self.act_as, &self.tenant_setting) {
            (Some(template), _) => template
                .replace("{tenant_text}", &crate::db::literal(tenant_text))
                .replace("{tenant}", tenant_literal),
            (None, Some(setting)) => format!(
                "SELECT set_config({}, {}, true)",
                crate::db::literal(setting),
                crate::db::literal(tenant_text)
            ),
            (None, None) => String::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalTable {
    pub name: String,
    pub reason: String,
}

/// A function the isolation rules accept although it runs with its owner's rights
/// (SECURITY DEFINER) or without a fixed `search_path`, with the reason; the canary cases
/// call it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionDeclaration {
    /// `schema.name` (any arguments) or a whole signature, `name(arg types)`.
    pub name: String,
    pub reason: String,
}

impl FunctionDeclaration {
    /// Whether it names the function of `signature` (`name(args)`, schema-qualified
    /// outside the current schema).
    pub fn names(&self, signature: &str) -> bool {
        let bare = |text: &str| {
            text.strip_prefix("public.")
                .unwrap_or(text)
                .replace(' ', "")
        };
        let wanted = bare(&self.name);
        if wanted.contains('(') {
            // `name(text)` names `name(pattern text)` too: the catalog prints argument names.
            wanted == bare(signature) || wanted == bare(&without_argument_names(signature))
        } else {
            bare(signature).split('(').next() == Some(wanted.as_str())
        }
    }
}

/// `f(pattern text, n integer)` as `f(text, integer)`: each argument of more than one word
/// loses its first (a declaration of `f(character varying)` is compared both ways).
fn without_argument_names(signature: &str) -> String {
    let Some((name, arguments)) = signature.split_once('(') else {
        return signature.to_string();
    };
    let arguments = arguments.trim_end_matches(')');
    let types: Vec<&str> = arguments
        .split(',')
        .map(str::trim)
        .map(|argument| match argument.split_once(' ') {
            Some((_, rest)) => rest.trim(),
            None => argument,
        })
        .collect();
    format!("{name}({})", types.join(", "))
}

/// A table whose tenancy differs from the default: another tenant column, or none of its
/// own because it belongs to a tenant-owned parent.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDeclaration {
    pub name: String,
    /// This table's tenant column, when it is not `tenancy.column`.
    #[serde(default)]
    pub tenant_column: Option<String>,
    /// A tenant-owned table this one belongs to through a foreign key; its policy joins
    /// to it instead of reading a tenant column of its own.
    #[serde(default)]
    pub owned_through: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
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

/// Something about a migration that cannot be changed (it is locked and deployed) and is
/// accepted, with a reason: a lint finding, an irreversible down, data it moves.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acknowledgement {
    /// `<version>_<name>` as in the file name, or the version alone.
    pub migration: String,
    /// A lint rule id, `irreversible`, or `moves-data`.
    pub rule: String,
    /// `moves-data`: the tables whose row counts the migration changes on purpose.
    #[serde(default)]
    pub tables: Vec<String>,
    /// `moves-data`, `irreversible`: the backend it applies to (both when absent).
    #[serde(default)]
    pub backend: Option<String>,
    pub reason: String,
}

impl Acknowledgement {
    pub const IRREVERSIBLE: &'static str = "irreversible";
    pub const MOVES_DATA: &'static str = "moves-data";

    /// Whether this names the migration `stem` (`0003_drop_flags`) of `version`.
    pub fn names(&self, version: i64, stem: &str) -> bool {
        self.migration == stem || self.migration.parse::<i64>().ok() == Some(version)
    }

    pub fn applies_to(&self, backend: Backend) -> bool {
        self.backend.as_deref().is_none_or(|b| b == backend.name())
    }
}

#[derive(Clone, Debug)]
pub struct Fixtures {
    /// The SQL file of rows, when there is one (without it, `--rows` generates them).
    pub seed: Option<PathBuf>,
    /// The fixture is loaded right after this migration, then the rest is applied.
    pub seed_at_version: i64,
}

#[derive(Clone, Debug, Default)]
pub struct SqliteSettings {
    /// PRAGMAs set on the connection that applies the migrations, as the app sets them
    /// (`foreign_keys = "off"`, …).
    pub migration_pragmas: Vec<(String, String)>,
    /// The isolation cases check that a row cannot be moved to another tenant (the schema
    /// guards the tenant column with triggers).
    pub tenant_column_immutable: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    migrations: MigrationsSection,
    tenancy: TenancySection,
    #[serde(default)]
    global_tables: Vec<GlobalTable>,
    #[serde(default)]
    functions: Vec<FunctionDeclaration>,
    #[serde(default)]
    tables: Vec<TableDeclaration>,
    #[serde(default)]
    parity_exemptions: Vec<ParityExemption>,
    #[serde(default)]
    acknowledgements: Vec<Acknowledgement>,
    fixtures: Option<FixturesSection>,
    #[serde(default)]
    sqlite: SqliteSection,
    #[serde(default)]
    postgres: PostgresSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PostgresSection {
    version: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationsSection {
    postgres: Option<PathBuf>,
    sqlite: Option<PathBuf>,
    snapshots: Option<PathBuf>,
    table: Option<String>,
    sqlx_toml: Option<PathBuf>,
    baseline: Option<i64>,
    parity: Option<bool>,
    statement_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TenantKeyText {
    Integer(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenancySection {
    column: String,
    tenants_table: String,
    tenants_key: Option<String>,
    default_tenant_id: Option<TenantKeyText>,
    #[serde(default)]
    isolated_from_version: i64,
    #[serde(default = "yes")]
    row_level_security: bool,
    row_level_security_reason: Option<String>,
    app_role: Option<String>,
    tenant_setting: Option<String>,
    #[serde(default)]
    tenant_functions: Vec<String>,
    #[serde(default)]
    tenant_predicates: Vec<String>,
    act_as: Option<String>,
    #[serde(default)]
    other_software_schemas: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixturesSection {
    seed_at_version: i64,
    seed: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SqliteSection {
    #[serde(default)]
    migration_pragmas: toml::Table,
    #[serde(default)]
    tenant_column_immutable: bool,
}

/// sqlx's own `sqlx.toml`, the part that changes what it records.
#[derive(Deserialize, Default)]
struct SqlxToml {
    #[serde(default)]
    migrate: SqlxMigrate,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct SqlxMigrate {
    table_name: Option<String>,
    #[serde(default)]
    ignored_chars: Vec<char>,
}

impl Config {
    /// Reads `path` and checks it, and that the folders and files it names exist.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            anyhow::format_err!(
                "cannot read the Tenantgate configuration {}: {error}\nfix: pass --config with the path of your tenantgate.toml (`cargo xtask init` writes one)",
                path.display()
            )
        })?;
        let config = Config::parse(&text, path)?;
        config.validate(true)?;
        Ok(config)
    }

    /// A configuration's text as if it were the file at `path` (its paths relative to that
    /// folder), checked like [`Config::load`].
    pub fn from_text(text: &str, path: &Path) -> anyhow::Result<Config> {
        let config = Config::parse(text, path)?;
        config.validate(true)?;
        Ok(config)
    }

    /// The configuration an app embeds (`include_str!` of its `tenantgate.toml`): the
    /// live runner checks a production database against the policy the gate checked.
    /// Its paths are those of the build machine and are not read.
    pub fn embedded(text: &str) -> anyhow::Result<Config> {
        let config = Config::parse(text, Path::new("tenantgate.toml"))?;
        config.validate(false)?;
        Ok(config)
    }

    fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
        let file: File = toml::from_str(text).map_err(|error| {
            anyhow::format_err!(
                "{} is not a valid Tenantgate configuration: {}",
                path.display(),
                error.to_string().trim_end()
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let tenancy = file.tenancy;
        let isolation = if tenancy.row_level_security {
            Isolation::RowLevelSecurity(RowLevelSecurity {
                app_role: tenancy.app_role.unwrap_or_default(),
                tenant_setting: tenancy.tenant_setting,
                tenant_functions: tenancy.tenant_functions,
                tenant_predicates: tenancy.tenant_predicates,
                act_as: tenancy.act_as,
            })
        } else {
            Isolation::WithoutRowLevelSecurity {
                reason: tenancy.row_level_security_reason.unwrap_or_default(),
            }
        };
        let migration_pragmas = file
            .sqlite
            .migration_pragmas
            .into_iter()
            .map(|(name, value)| {
                let value = match value {
                    toml::Value::String(text) => text,
                    other => other.to_string(),
                };
                (name, value)
            })
            .collect();
        let sqlx_toml = match file.migrations.sqlx_toml {
            Some(path) => Some(base.join(path)),
            None => [base.join("sqlx.toml"), base.join("../sqlx.toml")]
                .into_iter()
                .find(|candidate| candidate.is_file()),
        };
        let statement_timeout = match &file.migrations.statement_timeout {
            Some(text) => parse_duration(text).map_err(|problem| {
                anyhow::format_err!(
                    "`migrations.statement_timeout` in {}: {problem}",
                    path.display()
                )
            })?,
            None => DEFAULT_STATEMENT_TIMEOUT,
        };
        let config = Config {
            path: path.to_path_buf(),
            migrations: Migrations {
                postgres: file.migrations.postgres.map(|dir| base.join(dir)),
                sqlite: file.migrations.sqlite.map(|dir| base.join(dir)),
                snapshots: base.join(file.migrations.snapshots.unwrap_or("snapshots".into())),
                table: file.migrations.table,
                sqlx_toml,
                baseline: file.migrations.baseline,
                parity: file.migrations.parity.unwrap_or(true),
                statement_timeout,
            },
            tenancy: Tenancy {
                column: tenancy.column,
                tenants_table: tenancy.tenants_table,
                tenants_key: tenancy.tenants_key,
                default_tenant_id: tenancy.default_tenant_id.map(|id| match id {
                    TenantKeyText::Integer(id) => TenantValue::new(id.to_string()),
                    TenantKeyText::Text(id) => TenantValue::new(id),
                }),
                isolated_from_version: tenancy.isolated_from_version,
                other_software_schemas: tenancy.other_software_schemas.clone(),
                isolation,
            },
            global_tables: file.global_tables,
            functions: file.functions,
            tables: file.tables,
            parity_exemptions: file.parity_exemptions,
            acknowledgements: file.acknowledgements,
            fixtures: file.fixtures.map(|f| Fixtures {
                seed: f.seed.map(|seed| base.join(seed)),
                seed_at_version: f.seed_at_version,
            }),
            sqlite: SqliteSettings {
                migration_pragmas,
                tenant_column_immutable: file.sqlite.tenant_column_immutable,
            },
            postgres_version: file.postgres.version,
        };
        Ok(config)
    }

    /// Checks the policy and, with `files`, that the folders and files it names exist.
    fn validate(&self, files: bool) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if let Some(version) = self.postgres_version
            && !(12..=30).contains(&version)
        {
            problems.push(format!(
                "[postgres] version = {version} is not a PostgreSQL major version: write the major production runs, e.g. `version = 17`"
            ));
        }
        if self.backends().is_empty() {
            problems.push(
                "[migrations] names no folder: set `postgres = \"…\"`, `sqlite = \"…\"`, or both"
                    .to_string(),
            );
        }
        for backend in self.backends() {
            let dir = self.migrations_dir(backend).expect("a configured backend");
            if files && !dir.is_dir() {
                problems.push(format!(
                    "`migrations.{backend}` names {}, which is not a folder",
                    dir.display()
                ));
            }
        }
        if files
            && let Some(seed) = self.fixtures.as_ref().and_then(|f| f.seed.as_ref())
            && !seed.is_file()
        {
            problems.push(format!(
                "`fixtures.seed` names {}, which is not a file",
                seed.display()
            ));
        }
        if files
            && let Some(sqlx_toml) = &self.migrations.sqlx_toml
            && !sqlx_toml.is_file()
        {
            problems.push(format!(
                "`migrations.sqlx_toml` names {}, which is not a file",
                sqlx_toml.display()
            ));
        }
        for (key, value) in [
            ("tenancy.column", &self.tenancy.column),
            ("tenancy.tenants_table", &self.tenancy.tenants_table),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("`{key}` is empty"));
            }
        }
        match &self.tenancy.isolation {
            // Row-level security is PostgreSQL's: a SQLite-only app needs no role.
            Isolation::RowLevelSecurity(_) if !self.has(Backend::Postgres) => {}
            Isolation::RowLevelSecurity(rls) => {
                if rls.app_role.trim().is_empty() {
                    problems.push(
                        "`tenancy.app_role` is missing: name the role the app runs as (its row-level security policies must apply to it), or, if the app does not isolate with row-level security, set `row_level_security = false` with a `row_level_security_reason`"
                            .to_string(),
                    );
                }
                if rls.tenant_setting.is_none() && rls.act_as.is_none() {
                    problems.push(
                        "`tenancy.tenant_setting` is missing: name the setting the policies read (`current_setting('app.tenant_id')`), or give `act_as`, the SQL that makes a session act as `{tenant}`"
                            .to_string(),
                    );
                }
                for expression in rls.tenant_functions.iter().chain(&rls.tenant_predicates) {
                    if crate::rules::parse_expression(&expression.replace("{column}", "c"))
                        .is_none()
                    {
                        problems.push(format!(
                            "`{expression}` (tenancy.tenant_functions / tenant_predicates) is not a SQL expression PostgreSQL's parser reads"
                        ));
                    }
                }
                for predicate in &rls.tenant_predicates {
                    if !predicate.contains("{column}") {
                        problems.push(format!(
                            "the tenant predicate `{predicate}` does not mention `{{column}}`, the tenant column it filters"
                        ));
                    }
                }
                if let Some(act_as) = &rls.act_as
                    && !act_as.contains("{tenant")
                {
                    problems.push(format!(
                        "`tenancy.act_as` (`{act_as}`) does not mention `{{tenant}}`: it must make the session act as the tenant it is given"
                    ));
                }
            }
            Isolation::WithoutRowLevelSecurity { reason } => {
                if reason.trim().is_empty() {
                    problems.push(
                        "`row_level_security = false` needs a one-line `row_level_security_reason`: how the app isolates tenants instead"
                            .to_string(),
                    );
                }
            }
        }
        let mut seen = BTreeSet::new();
        for function in &self.functions {
            if function.reason.trim().is_empty() {
                problems.push(format!(
                    "function `{}` under [[functions]] needs a one-line `reason`: why it may run as its owner or without a fixed search_path",
                    function.name
                ));
            }
        }
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
        for table in &self.tables {
            if !seen.insert(&table.name) {
                problems.push(format!(
                    "table `{}` is declared twice ([[global_tables]] and [[tables]])",
                    table.name
                ));
            }
            match (&table.tenant_column, &table.owned_through) {
                (None, None) => problems.push(format!(
                    "[[tables]] entry `{}` declares nothing: give `tenant_column` or `owned_through`",
                    table.name
                )),
                (Some(_), Some(_)) => problems.push(format!(
                    "[[tables]] entry `{}` gives both `tenant_column` and `owned_through`: a table has its own tenant column or belongs to its parent, not both",
                    table.name
                )),
                (None, Some(parent)) => {
                    if table.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                        problems.push(format!(
                            "table `{}` owned through `{parent}` needs a one-line `reason` (how its policy reaches the parent's tenant)",
                            table.name
                        ));
                    }
                }
                (Some(_), None) => {}
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
        for ack in &self.acknowledgements {
            if ack.reason.trim().is_empty() {
                problems.push(format!(
                    "the acknowledgement of `{}` for `{}` needs a one-line `reason`",
                    ack.rule, ack.migration
                ));
            }
            if ack.rule == Acknowledgement::MOVES_DATA && ack.tables.is_empty() {
                problems.push(format!(
                    "the `moves-data` acknowledgement of `{}` names no `tables`",
                    ack.migration
                ));
            }
            if let Some(backend) = &ack.backend
                && backend.parse::<Backend>().is_err()
            {
                problems.push(format!(
                    "the acknowledgement of `{}`: `backend` must be `postgres` or `sqlite`, not `{backend}`",
                    ack.migration
                ));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        bail!(
            "{} is not a valid Tenantgate configuration:\n  - {}",
            self.path.display(),
            problems.join("\n  - ")
        )
    }

    /// The backends this app has migrations for, PostgreSQL first.
    pub fn backends(&self) -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|b| self.migrations_dir(*b).is_some())
            .collect()
    }

    pub fn has(&self, backend: Backend) -> bool {
        self.migrations_dir(backend).is_some()
    }

    pub fn migrations_dir(&self, backend: Backend) -> Option<&Path> {
        match backend {
            Backend::Postgres => self.migrations.postgres.as_deref(),
            Backend::Sqlite => self.migrations.sqlite.as_deref(),
        }
    }

    /// Whether parity between the backends is checked: both are configured and the
    /// configuration does not turn it off.
    pub fn checks_parity(&self) -> bool {
        self.migrations.parity && self.backends().len() == 2
    }

    /// The row-level security settings, when the app isolates with it.
    pub fn row_level_security(&self) -> Option<&RowLevelSecurity> {
        match &self.tenancy.isolation {
            Isolation::RowLevelSecurity(rls) => Some(rls),
            Isolation::WithoutRowLevelSecurity { .. } => None,
        }
    }

    /// The migrations table and the characters sqlx leaves out of checksums, from the
    /// configuration and the app's `sqlx.toml`.
    pub fn sqlx_settings(&self) -> anyhow::Result<SqlxSettings> {
        let mut settings = SqlxSettings {
            table: "_sqlx_migrations".to_string(),
            ignored_chars: Vec::new(),
        };
        if let Some(path) = &self.migrations.sqlx_toml {
            let text = std::fs::read_to_string(path).map_err(|error| {
                anyhow::format_err!("read sqlx's configuration {}: {error}", path.display())
            })?;
            let parsed: SqlxToml = toml::from_str(&text).map_err(|error| {
                anyhow::format_err!(
                    "{} is not a sqlx.toml Tenantgate can read: {}",
                    path.display(),
                    error.to_string().trim_end()
                )
            })?;
            if let Some(table) = parsed.migrate.table_name {
                settings.table = table;
            }
            settings.ignored_chars = parsed.migrate.ignored_chars;
        }
        if let Some(table) = &self.migrations.table {
            settings.table = table.clone();
        }
        Ok(settings)
    }

    /// The tenant column of `table` (a `[[tables]]` override, or `tenancy.column`).
    pub fn tenant_column(&self, table: &str) -> &str {
        self.declaration(table)
            .and_then(|d| d.tenant_column.as_deref())
            .unwrap_or(&self.tenancy.column)
    }

    /// The tenant-owned parent `table` belongs to, when it is declared owned through one.
    pub fn owner_of(&self, table: &str) -> Option<&TableDeclaration> {
        self.declaration(table)
            .filter(|declaration| declaration.owned_through.is_some())
    }

    fn declaration(&self, table: &str) -> Option<&TableDeclaration> {
        self.tables.iter().find(|d| same_table(&d.name, table))
    }

    /// The `[[functions]]` entry of the function with `signature`.
    pub fn declared_function(&self, signature: &str) -> Option<&FunctionDeclaration> {
        self.functions.iter().find(|f| f.names(signature))
    }

    /// The tenants table and the declared global tables belong to no tenant.
    pub fn is_global(&self, table: &str) -> bool {
        same_table(&self.tenancy.tenants_table, table)
            || self
                .global_tables
                .iter()
                .any(|global| same_table(&global.name, table))
    }

    /// The acknowledgements of `rule` for migration `version` (`stem`) on `backend`.
    pub fn acknowledged<'a>(
        &'a self,
        rule: &'a str,
        backend: Backend,
        version: i64,
        stem: &'a str,
    ) -> impl Iterator<Item = &'a Acknowledgement> + 'a {
        self.acknowledgements
            .iter()
            .filter(move |a| a.rule == rule && a.applies_to(backend) && a.names(version, stem))
    }

    /// Whether `version` is adopted history (at or before the baseline).
    pub fn in_baseline(&self, version: i64) -> bool {
        self.migrations.baseline.is_some_and(|b| version <= b)
    }
}

/// What sqlx records, as the app's sqlx configures it.
#[derive(Clone, Debug)]
pub struct SqlxSettings {
    pub table: String,
    pub ignored_chars: Vec<char>,
}

/// Whether two table names mean the same table: equal, or equal once a `public.`
/// qualification (PostgreSQL's default schema) is left out of either.
pub fn same_table(a: &str, b: &str) -> bool {
    fn bare(name: &str) -> &str {
        name.strip_prefix("public.").unwrap_or(name)
    }
    a == b || bare(a) == bare(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_declaration_names_a_signature_with_or_without_argument_names() {
        let declared = |name: &str| FunctionDeclaration {
            name: name.to_string(),
            reason: "r".to_string(),
        };
        assert!(declared("customer_search").names("customer_search(pattern text)"));
        assert!(declared("customer_search(text)").names("customer_search(pattern text)"));
        assert!(declared("public.customer_search(text)").names("customer_search(text)"));
        assert!(declared("f(character varying)").names("f(character varying)"));
        assert!(declared("f(character varying)").names("f(name character varying)"));
        assert!(!declared("customer_search(integer)").names("customer_search(pattern text)"));
        assert!(!declared("customer").names("customer_search(pattern text)"));
        assert!(!declared("customer_search").names("reporting.customer_search(text)"));
    }

    fn parse(text: &str) -> anyhow::Result<Config> {
        let config = Config::parse(text, Path::new("t/tenantgate.toml"))?;
        config.validate(false)?;
        Ok(config)
    }

    const MINIMAL: &str = r#"
[migrations]
postgres = "migrations"

[tenancy]
column = "org_id"
tenants_table = "organizations"
app_role = "web"
tenant_setting = "app.org"
"#;

    #[test]
    fn one_backend_no_fixture_and_no_default_tenant_is_complete() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.backends(), vec![Backend::Postgres]);
        assert!(config.fixtures.is_none());
        assert!(config.tenancy.default_tenant_id.is_none());
        assert!(!config.checks_parity());
        assert_eq!(config.tenancy.isolated_from_version, 0);
    }

    #[test]
    fn a_default_tenant_may_be_an_integer_or_a_string() {
        let text = MINIMAL.replace(
            "[tenancy]",
            "[tenancy]\ndefault_tenant_id = 'caps-automotive'",
        );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.tenancy.default_tenant_id,
            Some(TenantValue::new("caps-automotive"))
        );
        let text = MINIMAL.replace("[tenancy]", "[tenancy]\ndefault_tenant_id = 7");
        assert_eq!(
            parse(&text).unwrap().tenancy.default_tenant_id,
            Some(TenantValue::new("7"))
        );
    }

    #[test]
    fn no_backend_is_an_error_that_says_what_to_write() {
        let text = MINIMAL.replace("postgres = \"migrations\"", "");
        let error = format!("{:#}", parse(&text).unwrap_err());
        assert!(error.contains("[migrations] names no folder"), "{error}");
    }

    #[test]
    fn an_app_without_row_level_security_must_say_why() {
        let text = MINIMAL.replace("app_role = \"web\"", "row_level_security = false");
        let error = format!("{:#}", parse(&text).unwrap_err());
        assert!(error.contains("row_level_security_reason"), "{error}");
        let text = MINIMAL.replace(
            "app_role = \"web\"",
            "row_level_security = false\nrow_level_security_reason = \"queries filter\"",
        );
        let config = parse(&text).unwrap();
        assert!(config.row_level_security().is_none());
    }

    #[test]
    fn act_as_replaces_the_tenant_and_defaults_to_set_config() {
        let config = parse(MINIMAL).unwrap();
        let rls = config.row_level_security().unwrap();
        assert_eq!(
            rls.act_as_sql("'x'::uuid", "x"),
            "SELECT set_config('app.org', 'x', true)"
        );
        let text = MINIMAL.replace(
            "tenant_setting = \"app.org\"",
            "act_as = \"SELECT auth.login_as_member_of({tenant})\"",
        );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.row_level_security().unwrap().act_as_sql("7", "7"),
            "SELECT auth.login_as_member_of(7)"
        );
    }

    #[test]
    fn table_declarations_resolve_columns_and_parents() {
        let text = format!(
            "{MINIMAL}\n[[tables]]\nname = \"documents\"\ntenant_column = \"owner_org\"\n\n[[tables]]\nname = \"lines\"\nowned_through = \"orders\"\nreason = \"joins to orders\"\n"
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.tenant_column("documents"), "owner_org");
        assert_eq!(config.tenant_column("public.documents"), "owner_org");
        assert_eq!(config.tenant_column("orders"), "org_id");
        assert_eq!(
            config
                .owner_of("lines")
                .and_then(|d| d.owned_through.as_deref()),
            Some("orders")
        );
        let bad = format!("{MINIMAL}\n[[tables]]\nname = \"lines\"\nowned_through = \"orders\"\n");
        let error = format!("{:#}", parse(&bad).unwrap_err());
        assert!(error.contains("needs a one-line `reason`"), "{error}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = MINIMAL.replace("[tenancy]", "[tenancy]\ntenant_colum = \"x\"");
        let error = format!("{:#}", parse(&text).unwrap_err());
        assert!(error.contains("tenant_colum"), "{error}");
        assert!(!error.contains("TenancySection"), "{error}");
    }
}
