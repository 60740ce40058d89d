//! Static tenant-isolation rules: what the schema itself must guarantee for every
//! tenant-owned table (every table the configuration does not declare global). Each rule
//! has a stable id (the check name), and each failure names the table or constraint and
//! the fix. They read only the introspected schema and, on PostgreSQL with row-level
//! security, the application role's facts, so they run cheaply after every migration.
//!
//! A table declared *owned through* a parent has no tenant column of its own: its rules
//! are checked through the foreign key to that parent.

mod policy;
mod role;

use std::collections::{BTreeMap, BTreeSet};

pub use policy::{TenantFilter, canonical, is_column, parse_expression, string_literal};
pub use role::RoleFacts;

use crate::Backend;
use crate::checks::{CheckOutcome, Failure};
use crate::config::{Config, RowLevelSecurity};
use crate::schema::{ForeignKey, Policy, Schema, Table};
use crate::tenant_value::KeyType;

/// The rule ids, in the order they are reported.
pub const RULES: [&str; 12] = [
    "tenant-column",
    "tenant-index",
    "tenant-unique",
    "tenant-foreign-key",
    "global-tables",
    "function-search-path",
    "rls-enabled",
    "rls-policy",
    "app-role",
    "app-role-grants",
    "reachable-objects",
    "security-definer",
];

/// The rules that exist only where PostgreSQL isolates with row-level security.
pub const ROW_LEVEL_SECURITY_RULES: [&str; 6] = [
    "rls-enabled",
    "rls-policy",
    "app-role",
    "app-role-grants",
    "reachable-objects",
    "security-definer",
];

/// What the rules read.
pub struct RuleInput<'a> {
    pub config: &'a Config,
    pub schema: &'a Schema,
    pub backend: Backend,
    /// PostgreSQL with row-level security: the application role's facts.
    pub role: Option<&'a RoleFacts>,
    /// The migration file that created each table, for annotations.
    pub created_by: &'a BTreeMap<String, String>,
    /// The configuration file, as messages name it.
    pub config_file: &'a str,
}

/// Runs every static rule that applies: the row-level security rules only on PostgreSQL
/// with row-level security (and a role to check).
pub fn static_rules(input: &RuleInput<'_>) -> Vec<CheckOutcome> {
    let rules = Rules { input };
    let mut outcomes = vec![
        rules.tenant_column(),
        rules.tenant_index(),
        rules.tenant_unique(),
        rules.tenant_foreign_key(),
        rules.global_tables(),
        rules.function_search_path(),
    ];
    if let (Backend::Postgres, Some(rls), Some(role)) =
        (input.backend, input.config.row_level_security(), input.role)
    {
        outcomes.push(rules.rls_enabled());
        outcomes.push(rules.rls_policy(rls, role));
        outcomes.push(rules.app_role(rls, role));
        outcomes.push(rules.app_role_grants());
        outcomes.push(rules.reachable_objects(rls, role));
        outcomes.push(rules.security_definer(rls, role));
    }
    outcomes
}

/// How a tenant-owned table carries its tenant.
#[derive(Clone, Copy)]
pub enum Ownership<'a> {
    /// Its own tenant column.
    Column(&'a str),
    /// Through its foreign key to a tenant-owned parent.
    Parent { parent: &'a str, reason: &'a str },
}

/// The tenant-owned tables of a schema and how each carries its tenant: the one place that
/// decides it, for the rules, the checks and the behavioural cases.
pub fn tenant_owned<'a>(
    config: &'a Config,
    schema: &'a Schema,
) -> impl Iterator<Item = (&'a str, &'a Table, Ownership<'a>)> + 'a {
    schema
        .tables
        .iter()
        .filter(|(name, _)| !config.is_global(name))
        .map(|(name, table)| {
            let ownership = match config.owner_of(name) {
                Some(declaration) => Ownership::Parent {
                    parent: declaration.owned_through.as_deref().unwrap_or_default(),
                    reason: declaration.reason.as_deref().unwrap_or_default(),
                },
                None => Ownership::Column(config.tenant_column(name)),
            };
            (name.as_str(), table, ownership)
        })
}

/// The tenants table's key: the configured one, else its single-column primary key.
pub fn tenants_key<'a>(config: &'a Config, schema: &'a Schema) -> Option<&'a str> {
    if let Some(key) = config.tenancy.tenants_key.as_deref() {
        return Some(key);
    }
    let (_, table) = schema.table(&config.tenancy.tenants_table)?;
    match table.primary_key.as_slice() {
        [key] => Some(key.as_str()),
        _ => None,
    }
}

/// The type of the tenants table's key (integer when it cannot be read).
pub fn tenants_key_type(config: &Config, schema: &Schema) -> KeyType {
    schema
        .table(&config.tenancy.tenants_table)
        .zip(tenants_key(config, schema))
        .and_then(|((_, table), key)| table.column(key))
        .map_or(KeyType::Integer, |column| KeyType::of(&column.data_type))
}

struct Rules<'r, 'a> {
    input: &'r RuleInput<'a>,
}

impl<'a> Rules<'_, 'a> {
    fn config(&self) -> &'a Config {
        self.input.config
    }

    fn schema(&self) -> &'a Schema {
        self.input.schema
    }

    fn tenant_owned(&self) -> impl Iterator<Item = (&'a str, &'a Table, Ownership<'a>)> + 'a {
        tenant_owned(self.input.config, self.input.schema)
    }

    /// Tenant-owned tables with their tenant column present (the others fail
    /// `tenant-column`, and the rules that need the column would only repeat that).
    fn with_tenant_column(&self) -> impl Iterator<Item = (&'a str, &'a Table, &'a str)> + 'a {
        self.tenant_owned()
            .filter_map(|(name, table, ownership)| match ownership {
                Ownership::Column(column) if table.column(column).is_some() => {
                    Some((name, table, column))
                }
                _ => None,
            })
    }

    fn is_tenant_owned(&self, table: &str) -> bool {
        self.schema().table(table).is_some() && !self.config().is_global(table)
    }

    fn failure(&self, table: &str, problem: String, fix: String) -> Failure {
        Failure::new(problem)
            .fix(fix)
            .about(table)
            .in_optional_file(self.input.created_by.get(table).cloned())
    }

    fn config_failure(&self, problem: String, fix: String) -> Failure {
        Failure::new(problem)
            .fix(fix)
            .in_file(self.input.config_file)
    }

    fn key_type(&self) -> KeyType {
        tenants_key_type(self.config(), self.schema())
    }

    /// The tenant column exists, is NOT NULL, and references the tenants table; a table
    /// owned through a parent references that parent instead.
    fn tenant_column(&self) -> CheckOutcome {
        let tenants = &self.config().tenancy.tenants_table;
        let key = tenants_key(self.config(), self.schema()).unwrap_or("id");
        let key_type = self.key_type();
        let column_type = key_type.column_type(self.input.backend);
        let config_file = self.input.config_file;
        let mut outcome = CheckOutcome::new("tenant-column");
        for (name, table, ownership) in self.tenant_owned() {
            outcome.checked += 1;
            let created = self
                .input
                .created_by
                .get(name)
                .map(|file| format!(" (created by {file})"))
                .unwrap_or_default();
            let column = match ownership {
                Ownership::Column(column) => column,
                Ownership::Parent { parent, .. } => {
                    if let Some(failure) = self.parent_reference(name, table, parent) {
                        outcome.failures.push(failure);
                    }
                    continue;
                }
            };
            let Some(definition) = table.column(column) else {
                outcome.failures.push(self.failure(
                    name,
                    format!(
                        "table `{name}`{created} has no `{column}` column, so its rows belong to no tenant"
                    ),
                    format!(
                        "add `{column} {column_type} NOT NULL REFERENCES {tenants} ({key})`; if `{name}` is shared by all tenants, list it under [[global_tables]] in {config_file} with a reason; if it belongs to a tenant-owned parent, declare it in [[tables]] with `owned_through`"
                    ),
                ));
                continue;
            };
            if !definition.not_null {
                outcome.failures.push(self.failure(
                    name,
                    format!(
                        "`{name}.{column}` is nullable: a row with no tenant is visible to no tenant, or to all if a query forgets the filter"
                    ),
                    format!(
                        "backfill it, then ALTER TABLE {name} ALTER COLUMN {column} SET NOT NULL"
                    ),
                ));
            }
            let references = table.references(tenants).any(|fk| {
                fk.columns == [column.to_string()]
                    && (fk.referenced_columns.is_empty() || fk.referenced_columns == [key])
            });
            if !references {
                outcome.failures.push(self.failure(
                    name,
                    format!(
                        "`{name}.{column}` does not reference `{tenants}` ({key}): a row can name a tenant that does not exist"
                    ),
                    format!("ALTER TABLE {name} ADD FOREIGN KEY ({column}) REFERENCES {tenants} ({key})"),
                ));
            }
        }
        outcome
    }

    /// A table owned through `parent` has a NOT NULL foreign key to it, and the parent
    /// is itself tenant-owned.
    fn parent_reference(&self, name: &str, table: &Table, parent: &str) -> Option<Failure> {
        if !self.is_tenant_owned(parent) {
            return Some(self.config_failure(
                format!(
                    "`{name}` is declared owned through `{parent}`, but `{parent}` is not a tenant-owned table here"
                ),
                format!(
                    "name its tenant-owned parent in `owned_through` in {}",
                    self.input.config_file
                ),
            ));
        }
        let fk = table.references(parent).next();
        match fk {
            None => Some(self.failure(
                name,
                format!(
                    "`{name}` is declared owned through `{parent}` but has no foreign key to it: its rows belong to no tenant"
                ),
                format!("add FOREIGN KEY (…) REFERENCES {parent} NOT NULL, or give `{name}` its own tenant column"),
            )),
            Some(fk) => {
                let nullable: Vec<&str> = fk
                    .columns
                    .iter()
                    .filter(|c| table.column(c).is_some_and(|c| !c.not_null))
                    .map(String::as_str)
                    .collect();
                (!nullable.is_empty()).then(|| {
                    self.failure(
                        name,
                        format!(
                            "`{name}` belongs to its tenant through `{parent}`, but its reference ({}) is nullable: a row without a parent belongs to no tenant",
                            nullable.join(", ")
                        ),
                        format!(
                            "ALTER TABLE {name} ALTER COLUMN {} SET NOT NULL",
                            nullable.join(", ")
                        ),
                    )
                })
            }
        }
    }

    /// An index (or the primary key) leads with the tenant column (a child's: with its
    /// reference to the parent). A partial index does not count: it serves some rows only.
    fn tenant_index(&self) -> CheckOutcome {
        let mut outcome = CheckOutcome::new("tenant-index");
        for (name, table, ownership) in self.tenant_owned() {
            let leading: Vec<String> = match ownership {
                Ownership::Column(column) if table.column(column).is_some() => {
                    vec![column.to_string()]
                }
                Ownership::Parent { parent, .. } => match table.references(parent).next() {
                    Some(fk) => fk.columns.clone(),
                    None => continue,
                },
                Ownership::Column(_) => continue,
            };
            outcome.checked += 1;
            let leads = |columns: &[String]| columns.starts_with(&leading);
            let indexed = table
                .indexes
                .iter()
                .any(|index| !index.partial && leads(&index.columns))
                || leads(&table.primary_key);
            if !indexed {
                let list = leading.join(", ");
                let partial = table
                    .indexes
                    .iter()
                    .any(|index| index.partial && leads(&index.columns));
                outcome.failures.push(self.failure(
                    name,
                    format!(
                        "table `{name}` has no index leading with ({list}){}: every tenant-filtered query scans the whole table",
                        if partial {
                            " (a partial index serves only the rows of its WHERE clause)"
                        } else {
                            ""
                        }
                    ),
                    format!(
                        "CREATE INDEX ON {name} ({list}, …), or make ({list}, id) unique, which children's composite foreign keys also need"
                    ),
                ));
            }
        }
        outcome
    }

    /// Every UNIQUE constraint and unique index includes the tenant column (a child's: its
    /// reference to the parent). The primary key is the one exception.
    fn tenant_unique(&self) -> CheckOutcome {
        let mut outcome = CheckOutcome::new("tenant-unique");
        for (name, table, ownership) in self.tenant_owned() {
            let scoped_by: Vec<String> = match ownership {
                Ownership::Column(column) if table.column(column).is_some() => {
                    vec![column.to_string()]
                }
                Ownership::Parent { parent, .. } => match table.references(parent).next() {
                    Some(fk) => fk.columns.clone(),
                    None => continue,
                },
                Ownership::Column(_) => continue,
            };
            let constraints = table
                .uniques
                .iter()
                .map(|key| (key.name.clone(), &key.columns, "constraint"));
            let indexes = table
                .indexes
                .iter()
                .filter(|index| index.unique && !index.backs_constraint)
                .map(|index| (Some(index.name.clone()), &index.columns, "index"));
            for (key_name, columns, kind) in constraints.chain(indexes) {
                outcome.checked += 1;
                if scoped_by.iter().all(|c| columns.contains(c)) {
                    continue;
                }
                let label = key_name.map(|n| format!(" `{n}`")).unwrap_or_default();
                let list = columns
                    .iter()
                    .filter(|c| !c.starts_with("where "))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                let scope = scoped_by.join(", ");
                outcome.failures.push(self.failure(
                    name,
                    format!(
                        "unique {kind}{label} on `{name}` ({list}) does not include `{scope}`: one tenant's value blocks every other tenant from using it"
                    ),
                    format!("make it UNIQUE ({scope}, {list})"),
                ));
            }
        }
        outcome
    }

    /// Every foreign key from a tenant-owned table to another one is composite and pairs
    /// the tenant columns, so a child can only reference a parent of its own tenant.
    fn tenant_foreign_key(&self) -> CheckOutcome {
        let mut outcome = CheckOutcome::new("tenant-foreign-key");
        for (name, table, column) in self.with_tenant_column() {
            for fk in &table.foreign_keys {
                if !self.is_tenant_owned(&fk.referenced_table) {
                    continue;
                }
                let parent = fk.referenced_table.as_str();
                let parent_column = match self.ownership_of(parent) {
                    Some(Ownership::Column(parent_column)) => parent_column,
                    // The parent carries no tenant column to pair with: the behavioural
                    // cases check that a reference cannot cross tenants.
                    _ => continue,
                };
                outcome.checked += 1;
                if pairs(fk, column, parent_column) {
                    continue;
                }
                let label = fk
                    .name
                    .as_deref()
                    .map(|n| format!(" `{n}`"))
                    .unwrap_or_default();
                let columns = fk.columns.join(", ");
                let referenced = fk.referenced_columns.join(", ");
                outcome.failures.push(self.failure(
                    name,
                    format!(
                        "foreign key{label} on `{name}` ({columns}) → `{parent}` ({referenced}) does not include `{column}`: a row of one tenant can reference another tenant's `{parent}`"
                    ),
                    format!(
                        "UNIQUE ({parent_column}, {referenced}) on `{parent}`, then FOREIGN KEY ({column}, {columns}) REFERENCES {parent} ({parent_column}, {referenced})"
                    ),
                ));
            }
        }
        outcome
    }

    fn ownership_of(&self, table: &str) -> Option<Ownership<'a>> {
        self.tenant_owned()
            .find(|(name, _, _)| crate::config::same_table(name, table))
            .map(|(_, _, ownership)| ownership)
    }

    /// No table listed as global carries the tenant column (its rows would belong to
    /// tenants with nothing protecting them). Entries that name no table are checked over
    /// every step by the rehearsal: a global table may appear or go later.
    fn global_tables(&self) -> CheckOutcome {
        let column = &self.config().tenancy.column;
        let mut outcome = CheckOutcome::new("global-tables");
        for global in &self.config().global_tables {
            let Some((name, table)) = self.schema().table(&global.name) else {
                continue;
            };
            outcome.checked += 1;
            if table.column(column).is_some() {
                outcome.failures.push(self.config_failure(
                    format!(
                        "`{name}` is listed under [[global_tables]] (\"{}\") but has a `{column}` column: its rows belong to tenants, yet no rule protects them",
                        global.reason
                    ),
                    format!(
                        "remove it from [[global_tables]] in {} so it is checked as tenant-owned, or drop the column",
                        self.input.config_file
                    ),
                ));
            }
        }
        outcome
    }

    /// PostgreSQL: row-level security is enabled and forced.
    fn rls_enabled(&self) -> CheckOutcome {
        let mut outcome = CheckOutcome::new("rls-enabled");
        for (name, table, _) in self.tenant_owned() {
            outcome.checked += 1;
            let (enabled, forced) = table.row_level_security.unwrap_or_default();
            if !enabled {
                outcome.failures.push(self.failure(
                    name,
                    format!(
                        "row-level security is not enabled on `{name}`: a query that forgets the tenant filter reads every tenant's rows"
                    ),
                    format!(
                        "ALTER TABLE {name} ENABLE ROW LEVEL SECURITY; ALTER TABLE {name} FORCE ROW LEVEL SECURITY; and a tenant policy"
                    ),
                ));
            } else if !forced {
                outcome.failures.push(self.failure(
                    name,
                    format!(
                        "row-level security on `{name}` is enabled but not forced: the table's owner bypasses it"
                    ),
                    format!("ALTER TABLE {name} FORCE ROW LEVEL SECURITY"),
                ));
            }
        }
        outcome
    }

    /// PostgreSQL: for each command, the permissive policies that apply to the app role,
    /// OR-ed together and AND-ed with the restrictive ones, admit only the current
    /// tenant's rows. A command no permissive policy allows is denied, which isolates;
    /// a table the role may use but no policy at all lets it see is a mistake.
    fn rls_policy(&self, rls: &RowLevelSecurity, role: &RoleFacts) -> CheckOutcome {
        let app_role = rls.app_role.as_str();
        let mut outcome = CheckOutcome::new("rls-policy");
        let cast = self.key_type().cast();
        let setting = rls.tenant_setting.as_deref();
        for (name, table, ownership) in self.tenant_owned() {
            // Without row-level security on, no policy applies: `rls-enabled` says so.
            if !table.row_level_security.is_some_and(|(enabled, _)| enabled) {
                continue;
            }
            let column = match ownership {
                Ownership::Column(column) if table.column(column).is_some() => column,
                Ownership::Column(_) => continue,
                // A child's policy joins to its parent; the behavioural cases check it.
                Ownership::Parent { .. } => {
                    outcome.checked += 1;
                    if !table
                        .policies
                        .iter()
                        .any(|p| role.is_subject_to(app_role, &p.roles))
                        && self.role_may_use(name, table, app_role, role)
                    {
                        outcome.failures.push(self.no_policy(name, app_role));
                    }
                    continue;
                }
            };
            outcome.checked += 1;
            let filter = TenantFilter::new(
                column,
                setting,
                &rls.tenant_functions,
                &rls.tenant_predicates,
            );
            let applicable: Vec<&Policy> = table
                .policies
                .iter()
                .filter(|p| role.is_subject_to(app_role, &p.roles))
                .collect();
            if applicable.is_empty() {
                if self.role_may_use(name, table, app_role, role) {
                    outcome.failures.push(self.no_policy(name, app_role));
                }
                continue;
            }
            let value = match setting {
                Some(setting) => format!("NULLIF(current_setting('{setting}', true), ''){cast}"),
                None => rls
                    .tenant_functions
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "<the current tenant>".to_string()),
            };
            let mut reported = BTreeSet::new();
            for command in COMMANDS {
                let covering = applicable.iter().filter(|p| covers(&p.command, command));
                let (permissive, restrictive): (Vec<&&Policy>, Vec<&&Policy>) =
                    covering.partition(|p| p.permissive);
                let restricted = restrictive.iter().any(|p| {
                    expressions(p, command)
                        .iter()
                        .all(|(_, e)| e.is_some_and(|e| filter.implied_by_text(e)))
                });
                if restricted {
                    continue;
                }
                for policy in permissive {
                    for (clause, expression) in expressions(policy, command) {
                        let leak = match expression {
                            Some(expression) if filter.implied_by_text(expression) => continue,
                            Some(expression) => filter.leak_in(expression),
                            None => "nothing (no expression)".to_string(),
                        };
                        if !reported.insert((policy.name.clone(), clause)) {
                            continue;
                        }
                        outcome.failures.push(self.failure(
                            name,
                            format!(
                                "policy `{}` on `{name}` lets `{app_role}` {command} rows of other tenants: its {clause} admits `{leak}`, which does not require `{column}` = the current tenant{}",
                                policy.name,
                                if policy.command == "ALL" {
                                    String::new()
                                } else {
                                    format!(" (policy for {})", policy.command)
                                }
                            ),
                            format!(
                                "every permissive policy for `{app_role}` must compare {column} with the tenant, and fail closed when none is set: {clause} ({column} = {value}); put other conditions in AND, or in a RESTRICTIVE policy"
                            ),
                        ));
                    }
                }
            }
        }
        outcome
    }

    fn no_policy(&self, name: &str, app_role: &str) -> Failure {
        self.failure(
            name,
            format!(
                "row-level security is on for `{name}` but no policy applies to `{app_role}`, which may use the table: every statement of the app sees no rows"
            ),
            format!(
                "CREATE POLICY {} ON {name} USING (<tenant filter>) WITH CHECK (<tenant filter>), or revoke the privileges if the app must not use it",
                format!("{name}_tenant_isolation").replace('.', "_")
            ),
        )
    }

    /// Whether the role (or PUBLIC, or a role it is a member of) holds a privilege on the table.
    fn role_may_use(&self, _name: &str, table: &Table, app_role: &str, role: &RoleFacts) -> bool {
        table.grants.iter().any(|(grantee, privileges)| {
            (grantee == "PUBLIC" || grantee == app_role || role.member_of.contains(grantee))
                && privileges
                    .iter()
                    .any(|p| matches!(p.as_str(), "SELECT" | "INSERT" | "UPDATE" | "DELETE"))
        })
    }

    /// PostgreSQL: the application role exists and is subject to row-level security.
    fn app_role(&self, rls: &RowLevelSecurity, role: &RoleFacts) -> CheckOutcome {
        let name = &rls.app_role;
        let config_file = self.input.config_file;
        let mut outcome = CheckOutcome::new("app-role");
        outcome.checked = 1;
        if !role.exists {
            outcome.failures.push(self.config_failure(
                format!("the application role `{name}` (tenancy.app_role in {config_file}) does not exist"),
                format!("CREATE ROLE {name} NOSUPERUSER NOBYPASSRLS in a migration, or correct tenancy.app_role"),
            ));
        } else {
            let tenant_owned: BTreeSet<&str> = self.tenant_owned().map(|(n, _, _)| n).collect();
            for reason in role.bypasses(&tenant_owned) {
                outcome.failures.push(Failure::new(format!(
                    "the application role `{name}` {reason}, so row-level security does not apply to it and nothing isolates tenants"
                )).fix("run the app as a role that is NOSUPERUSER NOBYPASSRLS, owns no tenant-owned table and is a member of no such role (grant it SELECT, INSERT, UPDATE, DELETE instead)"));
            }
        }
        outcome
    }

    /// PostgreSQL: no tenant-owned table is granted to PUBLIC (every role, including ones
    /// nobody reviewed).
    fn app_role_grants(&self) -> CheckOutcome {
        let mut outcome = CheckOutcome::new("app-role-grants");
        for (name, table, _) in self.tenant_owned() {
            outcome.checked += 1;
            for (grantee, privileges) in &table.grants {
                if grantee == "PUBLIC" {
                    outcome.failures.push(self.failure(
                        name,
                        format!(
                            "`{name}` grants {} to PUBLIC: every role can use it",
                            privileges.join(", ")
                        ),
                        format!(
                            "REVOKE ALL ON {name} FROM PUBLIC and grant the application role only"
                        ),
                    ));
                }
            }
        }
        outcome
    }
}

impl Rules<'_, '_> {
    /// Every function of the app's schemas sets its `search_path`: one that does not runs
    /// with its caller's, and a caller who can create a function or table on it earlier
    /// decides what it calls (for a SECURITY DEFINER one, with its owner's rights).
    fn function_search_path(&self) -> CheckOutcome {
        let mut outcome = CheckOutcome::new("function-search-path");
        for (signature, function) in &self.schema().objects.functions {
            outcome.checked += 1;
            if function.search_path.is_some()
                || self.config().declared_function(signature).is_some()
            {
                continue;
            }
            outcome.failures.push(
                Failure::new(format!(
                    "{} `{signature}` has no fixed search_path: it resolves names on its caller's, so whoever can create an object on that path decides what it runs{}",
                    function.kind,
                    if function.security_definer {
                        ", with its owner's rights (SECURITY DEFINER)"
                    } else {
                        ""
                    }
                ))
                .fix(format!(
                    "ALTER FUNCTION {signature} SET search_path = pg_catalog, <its schema> (and qualify what it uses); or declare it under [[functions]] in {} with a reason",
                    self.input.config_file
                ))
                .about(signature.clone()),
            );
        }
        outcome
    }

    /// What the application role can read besides tables must not lift row-level
    /// security: a view reads with its owner's rights unless it is `security_invoker`, a
    /// materialized view is a copy no policy filters, and a foreign table has no policies.
    /// Each is a leak unless it is declared global (it holds no tenant's data).
    fn reachable_objects(&self, rls: &RowLevelSecurity, role: &RoleFacts) -> CheckOutcome {
        let mut outcome = CheckOutcome::new("reachable-objects");
        let name = &rls.app_role;
        let readable = |object: &str| {
            role.readable
                .iter()
                .any(|r| crate::config::same_table(r, object))
        };
        let config_file = self.input.config_file;
        for (view_name, view) in &self.schema().objects.views {
            if !readable(view_name) {
                continue;
            }
            outcome.checked += 1;
            if self.config().is_global(view_name) {
                continue;
            }
            let (problem, fix) = if view.materialized {
                (
                    format!(
                        "materialized view `{view_name}` can be read by `{name}`: it is a copy of the rows it selected, and no row-level security policy filters it"
                    ),
                    format!(
                        "REVOKE SELECT ON {view_name} FROM {name} (and PUBLIC) and read it through a tenant-filtered function or view; if it holds no tenant's data, list it under [[global_tables]] in {config_file} with a reason"
                    ),
                )
            } else if !view.security_invoker {
                (
                    format!(
                        "view `{view_name}` can be read by `{name}` and runs with its owner's rights: the row-level security of the tables it reads does not apply to `{name}`"
                    ),
                    format!(
                        "ALTER VIEW {view_name} SET (security_invoker = true); or, if it holds no tenant's data, list it under [[global_tables]] in {config_file} with a reason"
                    ),
                )
            } else {
                continue;
            };
            outcome
                .failures
                .push(Failure::new(problem).fix(fix).about(view_name.clone()));
        }
        for table in self.schema().objects.foreign_tables.keys() {
            if !readable(table) {
                continue;
            }
            outcome.checked += 1;
            if !self.config().is_global(table) {
                outcome.failures.push(
                    Failure::new(format!("foreign table `{table}` can be read by `{name}`: row-level security does not apply to foreign tables"))
                        .fix(format!("REVOKE SELECT ON {table} FROM {name}; or list it under [[global_tables]] in {config_file} with a reason"))
                        .about(table.clone()),
                );
            }
        }
        outcome
    }

    /// A SECURITY DEFINER function the application role can execute runs with its owner's
    /// rights, to which row-level security usually does not apply: it must be declared
    /// (with why it returns only the caller's tenant), and the canary cases call it.
    fn security_definer(&self, rls: &RowLevelSecurity, role: &RoleFacts) -> CheckOutcome {
        let mut outcome = CheckOutcome::new("security-definer");
        let name = &rls.app_role;
        for (signature, function) in &self.schema().objects.functions {
            if !function.security_definer {
                continue;
            }
            let executable = role
                .executable
                .iter()
                .any(|e| e.replace(' ', "") == signature.replace(' ', ""));
            if !executable {
                continue;
            }
            outcome.checked += 1;
            if self.config().declared_function(signature).is_some() {
                continue;
            }
            outcome.failures.push(
                Failure::new(format!(
                    "SECURITY DEFINER {} `{signature}` can be executed by `{name}` (its EXECUTE grants: {}): it runs with its owner's rights, so row-level security may not limit what it returns",
                    function.kind,
                    if function.execute.is_empty() { "none but through a role".to_string() } else { function.execute.join(", ") }
                ))
                .fix(format!(
                    "make it SECURITY INVOKER, or REVOKE EXECUTE ON FUNCTION {signature} FROM PUBLIC, {name}; if it must run as its owner, filter by the current tenant inside it and declare it under [[functions]] in {} with a reason (the canary cases then call it)",
                    self.input.config_file
                ))
                .about(signature.clone()),
            );
        }
        outcome
    }
}

const COMMANDS: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

/// Whether a policy's `cmd` (as pg_policies shows it) covers `command`.
fn covers(policy_command: &str, command: &str) -> bool {
    policy_command == "ALL" || policy_command == command
}

/// The expressions of `policy` that decide `command`: USING for reads, WITH CHECK for new
/// rows (which falls back to USING for ALL and UPDATE policies, as PostgreSQL does).
fn expressions<'p>(policy: &'p Policy, command: &str) -> Vec<(&'static str, Option<&'p str>)> {
    let using = policy.using.as_deref();
    let check = policy.with_check.as_deref().or(using);
    match command {
        "SELECT" | "DELETE" => vec![("USING", using)],
        "INSERT" => vec![("WITH CHECK", check)],
        _ => vec![("USING", using), ("WITH CHECK", check)],
    }
}

/// Whether `fk` pairs the child's tenant column with the parent's.
fn pairs(fk: &ForeignKey, column: &str, parent_column: &str) -> bool {
    fk.columns
        .iter()
        .zip(&fk.referenced_columns)
        .any(|(child, parent)| child == column && parent == parent_column)
}

#[cfg(test)]
mod tests;
