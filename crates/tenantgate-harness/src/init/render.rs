//! The starter configuration as TOML a person reads and finishes: every inferred value
//! with the evidence for it in a comment, and `reason = ""` where only they can answer.

use std::fmt::Write;
use std::path::{Component, Path, PathBuf};

use tenantgate::{Backend, Config};

use super::infer::{Declared, Tenancy};

/// What the configuration's isolation section says.
#[derive(Clone, Debug, PartialEq)]
pub enum Isolation {
    RowLevelSecurity {
        /// The roles granted the most tenant-owned tables (the first is written).
        roles: Vec<String>,
        setting: Option<String>,
        functions: Vec<String>,
        predicates: Vec<String>,
        act_as: Option<String>,
    },
    /// PostgreSQL without row-level security on any table.
    WithoutRowLevelSecurity,
    /// SQLite has no row-level security.
    SqliteOnly,
}

/// Everything a starter configuration says.
#[derive(Clone, Debug)]
pub struct Starter {
    /// The folder the configuration's paths start from.
    pub base: PathBuf,
    pub folders: Vec<(Backend, PathBuf)>,
    pub baseline: Option<i64>,
    pub parity: bool,
    pub tenancy: Option<Tenancy>,
    pub default_tenant: Option<String>,
    /// The first version the isolation rules hold from (none: from the first).
    pub isolated_from: Option<i64>,
    /// Whether they hold after the last migration.
    pub rules_hold: bool,
    pub isolation: Isolation,
    /// Global tables a later migration dropped: (table, the file it exists until).
    pub dropped_globals: Vec<(String, String)>,
    pub sqlite_immutable: bool,
    /// Functions the isolation rules would refuse undeclared (SECURITY DEFINER, or no
    /// fixed search_path), with why.
    pub functions: Vec<(String, String)>,
    /// What init found, for the person running it.
    pub notes: Vec<String>,
}

/// What the reasons left to write read as while init rehearses the starter.
const PLACEHOLDER: &str = "(to be written)";

impl Starter {
    pub fn folders_only(folders: &[(Backend, PathBuf)], base: &Path) -> Starter {
        Starter {
            base: base.to_path_buf(),
            folders: folders.to_vec(),
            baseline: None,
            parity: true,
            tenancy: None,
            default_tenant: None,
            isolated_from: None,
            rules_hold: true,
            isolation: Isolation::SqliteOnly,
            dropped_globals: Vec::new(),
            sqlite_immutable: false,
            functions: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The configuration file's text, reasons left empty.
    pub fn render(&self) -> String {
        self.text("")
    }

    /// The configuration as it will be once the reasons are written (placeholders), read
    /// as the file at `path`.
    pub fn provisional_config(&self, path: &Path) -> anyhow::Result<Config> {
        Config::from_text(&self.text(PLACEHOLDER), path)
    }

    /// What only a person can finish, one line each.
    pub fn todo(&self) -> Vec<String> {
        let mut todo = Vec::new();
        let Some(tenancy) = &self.tenancy else {
            return todo;
        };
        for (name, declared) in &tenancy.tables {
            match declared {
                Declared::Global => todo.push(format!(
                    "[[global_tables]] `{name}`: say why every tenant shares it, or give it the `{}` column",
                    tenancy.column
                )),
                Declared::OwnedThrough { parent } => todo.push(format!(
                    "[[tables]] `{name}`: say how its policy reaches `{parent}`'s tenant"
                )),
                Declared::Owned { .. } => {}
            }
        }
        for (name, why) in &self.functions {
            todo.push(format!(
                "[[functions]] `{name}` ({why}): say why it is safe, or fix it in a migration"
            ));
        }
        for (name, file) in &self.dropped_globals {
            todo.push(format!(
                "[[global_tables]] `{name}` (until {file}): say why every tenant shared it"
            ));
        }
        match &self.isolation {
            Isolation::WithoutRowLevelSecurity => todo.push(
                "`row_level_security_reason`: no table has row-level security; say how the app isolates tenants instead"
                    .to_string(),
            ),
            Isolation::RowLevelSecurity {
                roles,
                setting,
                act_as,
                predicates,
                ..
            } => {
                if roles.is_empty() {
                    todo.push("`app_role`: no role is granted the tenant tables; name the role the app connects as".to_string());
                }
                if setting.is_none() && act_as.is_none() {
                    todo.push("`tenant_setting` or `act_as`: the policies read no setting init could find; say how a session acts as a tenant".to_string());
                } else if !predicates.is_empty() && act_as.is_none() {
                    todo.push("`act_as`: the policies ask a predicate of the tenant column; give the SQL that makes a session act as `{tenant}`, or the isolation cases fail".to_string());
                }
            }
            Isolation::SqliteOnly => {}
        }
        todo
    }

    fn text(&self, reason: &str) -> String {
        let mut out = String::new();
        let shown = self
            .folders
            .iter()
            .map(|(_, d)| crate::display_path(d))
            .collect::<Vec<_>>()
            .join(" and ");
        let _ = writeln!(
            out,
            "# Tenantgate's configuration, started by `cargo xtask init` from {shown}.\n# Read it through: every value below was inferred from the schema the migrations\n# leave, and each `reason = \"\"` is for you to write (the gate refuses an empty one)."
        );
        out.push_str("\n[migrations]\n");
        for (backend, dir) in &self.folders {
            let _ = writeln!(
                out,
                "{} = {}",
                backend.name(),
                q(&relative(dir, &self.base))
            );
        }
        out.push_str("snapshots = \"snapshots\"\n");
        if let Some(baseline) = self.baseline {
            let _ = writeln!(
                out,
                "# The migrations up to {baseline} are adopted history: locked, not linted, not required\n# to reverse. Lower it (or remove it) to hold older migrations to every rule.\nbaseline = {baseline}"
            );
        }
        if !self.parity {
            out.push_str("# The two folders have different versions: each is checked on its own.\nparity = false\n");
        }
        out.push_str("\n[tenancy]\n");
        let Some(tenancy) = &self.tenancy else {
            out.push_str("column = \"tenant_id\"\ntenants_table = \"tenants\"\nrow_level_security = false\nrow_level_security_reason = \"provisional\"\n");
            return out;
        };
        let owned = tenancy
            .tables
            .values()
            .filter(|d| matches!(d, Declared::Owned { .. }))
            .count();
        let _ = writeln!(
            out,
            "# {} table(s) reference `{}` through `{}`; {owned} carry a tenant column.",
            tenancy.evidence, tenancy.tenants_table, tenancy.column
        );
        let _ = writeln!(out, "column = {}", q(&tenancy.column));
        let _ = writeln!(out, "tenants_table = {}", q(&tenancy.tenants_table));
        if !tenancy.key_is_primary {
            let _ = writeln!(out, "tenants_key = {}", q(&tenancy.key));
        }
        if let Some(default) = &self.default_tenant {
            let value = match tenancy.key_type {
                tenantgate::KeyType::Integer if default.parse::<i64>().is_ok() => default.clone(),
                _ => q(default),
            };
            let _ = writeln!(
                out,
                "# The migrations made exactly one tenant: the one the existing rows belong to.\ndefault_tenant_id = {value}"
            );
        }
        match self.isolated_from {
            Some(version) => {
                let _ = writeln!(
                    out,
                    "# The isolation rules hold from {version} on (earlier steps are the single-tenant past).\nisolated_from_version = {version}"
                );
            }
            None if !self.rules_hold => {
                out.push_str("# The isolation rules do not hold after the last migration: `cargo xtask migrate-test`\n# says where; once they do, set `isolated_from_version` to the first version they hold at.\n");
            }
            None => {}
        }
        match &self.isolation {
            Isolation::RowLevelSecurity {
                roles,
                setting,
                functions,
                predicates,
                act_as,
            } => {
                match roles.as_slice() {
                    [] => out.push_str("# No role is granted the tenant tables: name the role the app connects as.\napp_role = \"\"\n"),
                    [role] => {
                        let _ = writeln!(out, "app_role = {}", q(role));
                    }
                    [role, others @ ..] => {
                        let _ = writeln!(
                            out,
                            "# Granted as many tables: {}.\napp_role = {}",
                            others.join(", "),
                            q(role)
                        );
                    }
                }
                if let (Some(setting), None) = (setting, act_as) {
                    let _ = writeln!(out, "tenant_setting = {}", q(setting));
                }
                if !functions.is_empty() {
                    let _ = writeln!(out, "tenant_functions = {}", list(functions));
                }
                if !predicates.is_empty() {
                    let _ = writeln!(out, "tenant_predicates = {}", list(predicates));
                }
                match act_as {
                    Some(sql) => {
                        let _ = writeln!(
                            out,
                            "# How a session acts as a tenant: signed in as one of its members.\nact_as = {}",
                            q(sql)
                        );
                    }
                    None if !predicates.is_empty() => out.push_str(
                        "# The policies ask a predicate; write how a session acts as `{tenant}`, e.g.\n# act_as = \"SELECT set_config('request.jwt.claim.sub', <a member of {tenant}>, true)\"\n",
                    ),
                    None => {}
                }
            }
            Isolation::WithoutRowLevelSecurity => {
                let _ = writeln!(
                    out,
                    "# No table has row-level security: say how the app isolates tenants instead.\nrow_level_security = false\nrow_level_security_reason = {}",
                    q(reason)
                );
            }
            Isolation::SqliteOnly => {}
        }
        for (name, declared) in &tenancy.tables {
            match declared {
                Declared::Global => {
                    let _ = writeln!(
                        out,
                        "\n# `{name}` has no `{}`: shared by every tenant? (If not, give it the column.)\n[[global_tables]]\nname = {}\nreason = {}",
                        tenancy.column,
                        q(name),
                        q(reason)
                    );
                }
                Declared::Owned {
                    column: Some(column),
                } => {
                    let _ = writeln!(
                        out,
                        "\n[[tables]]\nname = {}\ntenant_column = {}",
                        q(name),
                        q(column)
                    );
                }
                Declared::OwnedThrough { parent } => {
                    let _ = writeln!(
                        out,
                        "\n# `{name}` has no tenant column; its policy reads `{parent}`.\n[[tables]]\nname = {}\nowned_through = {}\nreason = {}",
                        q(name),
                        q(parent),
                        q(reason)
                    );
                }
                Declared::Owned { column: None } => {}
            }
        }
        for (name, file) in &self.dropped_globals {
            let _ = writeln!(
                out,
                "\n# `{name}` exists until {file} and has no `{}`.\n[[global_tables]]\nname = {}\nreason = {}",
                tenancy.column,
                q(name),
                q(reason)
            );
        }
        for (name, why) in &self.functions {
            let _ = writeln!(
                out,
                "\n# `{name}` {why}.\n[[functions]]\nname = {}\nreason = {}",
                q(name),
                q(reason)
            );
        }
        if self.sqlite_immutable {
            out.push_str("\n[sqlite]\n# Every tenant table's trigger refuses changing its tenant.\ntenant_column_immutable = true\n");
        }
        out
    }
}

/// A TOML string.
fn q(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    format!(
        "[{}]",
        items.iter().map(|i| q(i)).collect::<Vec<_>>().join(", ")
    )
}

/// `path` relative to `base`, with `/` separators.
fn relative(path: &Path, base: &Path) -> String {
    let path: Vec<Component> = path.components().collect();
    let base: Vec<Component> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); base.len() - common];
    parts.extend(
        path[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}
