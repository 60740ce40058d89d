//! Static tenant-isolation rules: what the schema itself must guarantee for every
//! tenant-owned table (every table not listed as global in the configuration). Each rule
//! has a stable id (the check name), and each failure names the table or constraint and
//! the fix. They read only the introspected schema and, on PostgreSQL, the application
//! role's attributes, so they run cheaply after every migration step.

use std::collections::{BTreeMap, BTreeSet};

use crate::checks::{CheckOutcome, Failure};
use crate::config::Config;
use crate::schema::{Policy, Schema, Table};

/// The rule ids, in the order they are reported.
pub const RULES: [&str; 9] = [
    "tenant-column",
    "tenant-index",
    "tenant-unique",
    "tenant-foreign-key",
    "global-tables",
    "rls-enabled",
    "rls-policy",
    "app-role",
    "app-role-grants",
];

/// What PostgreSQL says about the application role (RLS does not apply to superusers,
/// BYPASSRLS roles, or, without FORCE, the owner of a table).
#[derive(Clone, Debug, Default)]
pub struct RoleFacts {
    pub exists: bool,
    pub superuser: bool,
    pub bypass_rls: bool,
    /// Tables in the current schema owned by the role or a role whose privileges it has.
    pub owned_tables: Vec<String>,
}

const ROLE_FACTS: &str = "
SELECT r.rolsuper, r.rolbypassrls,
       ARRAY(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
               AND pg_has_role(r.oid, c.relowner, 'USAGE')
             ORDER BY 1)
FROM pg_roles r WHERE r.rolname = $1";

impl RoleFacts {
    /// Reads the facts about `role`; a role that does not exist is reported as such.
    pub async fn read(conn: &mut sqlx::PgConnection, role: &str) -> anyhow::Result<RoleFacts> {
        let row: Option<(bool, bool, Vec<String>)> = sqlx::query_as(ROLE_FACTS)
            .bind(role)
            .fetch_optional(conn)
            .await?;
        Ok(match row {
            Some((superuser, bypass_rls, owned_tables)) => RoleFacts {
                exists: true,
                superuser,
                bypass_rls,
                owned_tables,
            },
            None => RoleFacts::default(),
        })
    }

    /// Why a connection as this role would bypass row-level security, if it would.
    pub fn bypasses(&self, tenant_owned: &BTreeSet<&str>) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.superuser {
            reasons.push("is a superuser".to_string());
        }
        if self.bypass_rls {
            reasons.push("has BYPASSRLS".to_string());
        }
        let owned: Vec<&str> = self
            .owned_tables
            .iter()
            .map(String::as_str)
            .filter(|table| tenant_owned.contains(table))
            .collect();
        if !owned.is_empty() {
            reasons.push(format!("owns tenant-owned tables ({})", owned.join(", ")));
        }
        reasons
    }
}

/// Runs every static rule. `role` is `Some` on PostgreSQL; `created_by` maps a table to
/// the migration file that created it, for annotations.
pub fn static_rules(
    config: &Config,
    schema: &Schema,
    role: Option<&RoleFacts>,
    created_by: &BTreeMap<String, String>,
) -> Vec<CheckOutcome> {
    let rules = Rules {
        config,
        schema,
        created_by,
    };
    let mut outcomes = vec![
        rules.tenant_column(),
        rules.tenant_index(),
        rules.tenant_unique(),
        rules.tenant_foreign_key(),
        rules.global_tables(),
    ];
    if let Some(role) = role {
        outcomes.push(rules.rls_enabled());
        outcomes.push(rules.rls_policy());
        outcomes.push(rules.app_role(role));
        outcomes.push(rules.app_role_grants());
    }
    outcomes
}

struct Rules<'a> {
    config: &'a Config,
    schema: &'a Schema,
    created_by: &'a BTreeMap<String, String>,
}

impl Rules<'_> {
    fn column(&self) -> &str {
        &self.config.tenancy.column
    }

    fn tenant_owned(&self) -> impl Iterator<Item = (&str, &Table)> {
        self.schema
            .tables
            .iter()
            .filter(|(name, _)| !self.config.is_global(name))
            .map(|(name, table)| (name.as_str(), table))
    }

    fn is_tenant_owned(&self, table: &str) -> bool {
        self.schema.tables.contains_key(table) && !self.config.is_global(table)
    }

    /// Tenant-owned tables that have the tenant column (the others fail `tenant-column`,
    /// and the rules that need the column would only repeat that).
    fn with_tenant_column(&self) -> impl Iterator<Item = (&str, &Table)> {
        let column = self.column().to_string();
        self.tenant_owned()
            .filter(move |(_, table)| table.column(&column).is_some())
    }

    fn failure(&self, table: &str, message: String) -> Failure {
        Failure {
            message,
            file: self.created_by.get(table).cloned(),
            line: None,
        }
    }

    fn config_file(&self) -> String {
        crate::display_path(&self.config.path)
    }

    /// The tenant column exists, is NOT NULL, and references the tenants table.
    fn tenant_column(&self) -> CheckOutcome {
        let column = self.column();
        let tenants = &self.config.tenancy.tenants_table;
        let mut failures = Vec::new();
        let mut checked = 0;
        for (name, table) in self.tenant_owned() {
            checked += 1;
            let created = self
                .created_by
                .get(name)
                .map(|file| format!(" (created by {file})"))
                .unwrap_or_default();
            let Some(definition) = table.column(column) else {
                failures.push(self.failure(name, format!(
                    "table `{name}`{created} has no `{column}` column, so its rows belong to no tenant\nfix: add `{column}` NOT NULL REFERENCES {tenants}, or, if `{name}` is shared by all tenants, list it under [[global_tables]] in {} with a reason",
                    self.config_file()
                )));
                continue;
            };
            if !definition.not_null {
                failures.push(self.failure(name, format!(
                    "`{name}.{column}` is nullable: a row with no tenant is visible to no tenant, or to all if a query forgets the filter\nfix: backfill it, then ALTER TABLE {name} ALTER COLUMN {column} SET NOT NULL"
                )));
            }
            let references = table
                .foreign_keys
                .iter()
                .any(|fk| fk.columns == [column.to_string()] && fk.referenced_table == *tenants);
            if !references {
                failures.push(self.failure(name, format!(
                    "`{name}.{column}` does not reference `{tenants}`: a row can name a tenant that does not exist\nfix: ALTER TABLE {name} ADD FOREIGN KEY ({column}) REFERENCES {tenants}"
                )));
            }
        }
        CheckOutcome {
            name: "tenant-column",
            checked,
            failures,
        }
    }

    /// An index (or the primary key) leads with the tenant column.
    fn tenant_index(&self) -> CheckOutcome {
        let column = self.column();
        let mut failures = Vec::new();
        let mut checked = 0;
        for (name, table) in self.with_tenant_column() {
            checked += 1;
            let leads = table
                .indexes
                .iter()
                .any(|index| index.columns.first().is_some_and(|c| c == column))
                || table.primary_key.first().is_some_and(|c| c == column);
            if !leads {
                failures.push(self.failure(name, format!(
                    "table `{name}` has no index leading with `{column}`: every tenant-filtered query scans the whole table\nfix: CREATE INDEX ON {name} ({column}, …), or make ({column}, id) unique, which children's composite foreign keys also need"
                )));
            }
        }
        CheckOutcome {
            name: "tenant-index",
            checked,
            failures,
        }
    }

    /// Every UNIQUE constraint and unique index includes the tenant column. The primary key
    /// (a surrogate id) is the one exception.
    fn tenant_unique(&self) -> CheckOutcome {
        let column = self.column();
        let mut failures = Vec::new();
        let mut checked = 0;
        for (name, table) in self.with_tenant_column() {
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
                checked += 1;
                if columns.iter().any(|c| c == column) {
                    continue;
                }
                let label = key_name.map(|n| format!(" `{n}`")).unwrap_or_default();
                let list = columns.join(", ");
                failures.push(self.failure(name, format!(
                    "unique {kind}{label} on `{name}` ({list}) does not include `{column}`: one tenant's rows block another's, and a failed insert tells a tenant that a value exists elsewhere\nfix: make it UNIQUE ({column}, {list})"
                )));
            }
        }
        CheckOutcome {
            name: "tenant-unique",
            checked,
            failures,
        }
    }

    /// Every foreign key to another tenant-owned table is composite and pairs the tenant
    /// columns, so a child can only reference a parent of its own tenant.
    fn tenant_foreign_key(&self) -> CheckOutcome {
        let column = self.column();
        let mut failures = Vec::new();
        let mut checked = 0;
        for (name, table) in self.with_tenant_column() {
            for fk in &table.foreign_keys {
                if !self.is_tenant_owned(&fk.referenced_table) {
                    continue;
                }
                checked += 1;
                let pairs_tenant = fk
                    .columns
                    .iter()
                    .zip(&fk.referenced_columns)
                    .any(|(child, parent)| child == column && parent == column);
                if pairs_tenant {
                    continue;
                }
                let label = fk
                    .name
                    .as_deref()
                    .map(|n| format!(" `{n}`"))
                    .unwrap_or_default();
                let parent = &fk.referenced_table;
                let columns = fk.columns.join(", ");
                let referenced = fk.referenced_columns.join(", ");
                failures.push(self.failure(name, format!(
                    "foreign key{label} on `{name}` ({columns}) → `{parent}` ({referenced}) does not include `{column}`: a row of one tenant can reference another tenant's `{parent}`\nfix: UNIQUE ({column}, {referenced}) on `{parent}`, then FOREIGN KEY ({column}, {columns}) REFERENCES {parent} ({column}, {referenced})"
                )));
            }
        }
        CheckOutcome {
            name: "tenant-foreign-key",
            checked,
            failures,
        }
    }

    /// The global list names real tables, none of which carries the tenant column.
    fn global_tables(&self) -> CheckOutcome {
        let column = self.column();
        let mut failures = Vec::new();
        for global in &self.config.global_tables {
            match self.schema.tables.get(&global.name) {
                None => failures.push(Failure::in_file(
                    self.config_file(),
                    format!(
                        "[[global_tables]] names `{}`, but no such table exists after the migrations\nfix: remove the entry from {} or correct its name",
                        global.name,
                        self.config_file()
                    ),
                )),
                Some(table) if table.column(column).is_some() => failures.push(Failure::in_file(
                    self.config_file(),
                    format!(
                        "`{}` is listed under [[global_tables]] (\"{}\") but has a `{column}` column: its rows belong to tenants, yet no rule protects them\nfix: remove it from [[global_tables]] in {} so it is checked as tenant-owned, or drop the column",
                        global.name,
                        global.reason,
                        self.config_file()
                    ),
                )),
                Some(_) => {}
            }
        }
        CheckOutcome {
            name: "global-tables",
            checked: self.config.global_tables.len(),
            failures,
        }
    }

    /// PostgreSQL: row-level security is enabled and forced.
    fn rls_enabled(&self) -> CheckOutcome {
        let mut failures = Vec::new();
        let mut checked = 0;
        for (name, table) in self.tenant_owned() {
            checked += 1;
            let (enabled, forced) = table.row_level_security.unwrap_or_default();
            if !enabled {
                failures.push(self.failure(name, format!(
                    "row-level security is not enabled on `{name}`: a query that forgets the tenant filter reads every tenant's rows\nfix: ALTER TABLE {name} ENABLE ROW LEVEL SECURITY; ALTER TABLE {name} FORCE ROW LEVEL SECURITY; and a tenant policy"
                )));
            } else if !forced {
                failures.push(self.failure(name, format!(
                    "row-level security on `{name}` is enabled but not forced: the table's owner bypasses it\nfix: ALTER TABLE {name} FORCE ROW LEVEL SECURITY"
                )));
            }
        }
        CheckOutcome {
            name: "rls-enabled",
            checked,
            failures,
        }
    }

    /// PostgreSQL: permissive policies that apply to the app role cover SELECT, INSERT,
    /// UPDATE and DELETE, and their USING and WITH CHECK both test the tenant column
    /// against the tenant setting.
    fn rls_policy(&self) -> CheckOutcome {
        let setting = &self.config.tenancy.tenant_setting;
        let column = self.column();
        let role = &self.config.tenancy.app_role;
        let mut failures = Vec::new();
        let mut checked = 0;
        for (name, table) in self.with_tenant_column() {
            checked += 1;
            let mut covered = BTreeSet::new();
            for policy in &table.policies {
                let applies = policy.permissive
                    && policy
                        .roles
                        .iter()
                        .any(|r| r == "public" || r == role.as_str());
                if applies && tenant_filtered(policy, column, setting) {
                    covered.extend(commands(&policy.command));
                }
            }
            let missing: Vec<&str> = ["SELECT", "INSERT", "UPDATE", "DELETE"]
                .into_iter()
                .filter(|command| !covered.contains(command))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let found = if table.policies.is_empty() {
                "it has no policy".to_string()
            } else {
                format!(
                    "its policies ({}) do not",
                    table
                        .policies
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            failures.push(self.failure(name, format!(
                "no tenant policy on `{name}` covers {}: {found} filter USING and WITH CHECK by `{column}` = current_setting('{setting}') for role `{role}`, so those statements see no rows or every row\nfix: CREATE POLICY {name}_tenant_isolation ON {name} USING ({column} = NULLIF(current_setting('{setting}', true), '')::bigint) WITH CHECK ({column} = NULLIF(current_setting('{setting}', true), '')::bigint)",
                missing.join(", ")
            )));
        }
        CheckOutcome {
            name: "rls-policy",
            checked,
            failures,
        }
    }

    /// PostgreSQL: the application role exists and is subject to row-level security.
    fn app_role(&self, role: &RoleFacts) -> CheckOutcome {
        let name = &self.config.tenancy.app_role;
        let mut failures = Vec::new();
        if !role.exists {
            failures.push(Failure::in_file(self.config_file(), format!(
                "the application role `{name}` (tenancy.app_role in {}) does not exist\nfix: CREATE ROLE {name} NOSUPERUSER NOBYPASSRLS in a migration, or correct tenancy.app_role",
                self.config_file()
            )));
        } else {
            let tenant_owned: BTreeSet<&str> = self.tenant_owned().map(|(n, _)| n).collect();
            for reason in role.bypasses(&tenant_owned) {
                failures.push(Failure::new(format!(
                    "the application role `{name}` {reason}, so row-level security does not apply to it and nothing isolates tenants\nfix: run the app as a role that is NOSUPERUSER NOBYPASSRLS and owns no tenant-owned table (grant it SELECT, INSERT, UPDATE, DELETE instead)"
                )));
            }
        }
        CheckOutcome {
            name: "app-role",
            checked: 1,
            failures,
        }
    }

    /// PostgreSQL: no tenant-owned table is granted to PUBLIC (every role, including ones
    /// nobody reviewed).
    fn app_role_grants(&self) -> CheckOutcome {
        let mut failures = Vec::new();
        let mut checked = 0;
        for (name, table) in self.tenant_owned() {
            checked += 1;
            for (grantee, privileges) in &table.grants {
                if grantee == "PUBLIC" {
                    failures.push(self.failure(name, format!(
                        "`{name}` grants {} to PUBLIC: every role can use it\nfix: REVOKE ALL ON {name} FROM PUBLIC and grant the application role only",
                        privileges.join(", ")
                    )));
                }
            }
        }
        CheckOutcome {
            name: "app-role-grants",
            checked,
            failures,
        }
    }
}

/// The commands a policy's `cmd` (as pg_policies shows it) covers.
fn commands(command: &str) -> Vec<&'static str> {
    match command {
        "ALL" => vec!["SELECT", "INSERT", "UPDATE", "DELETE"],
        "SELECT" => vec!["SELECT"],
        "INSERT" => vec!["INSERT"],
        "UPDATE" => vec!["UPDATE"],
        "DELETE" => vec!["DELETE"],
        _ => Vec::new(),
    }
}

/// Whether the policy's USING and WITH CHECK (where the command has them) compare the
/// tenant column with the tenant setting. Without WITH CHECK, PostgreSQL checks new rows
/// of ALL and UPDATE policies with USING, so that counts.
fn tenant_filtered(policy: &Policy, column: &str, setting: &str) -> bool {
    let filters = |expression: &Option<String>| {
        expression
            .as_deref()
            .is_some_and(|e| expression_filters_tenant(e, column, setting))
    };
    let using = filters(&policy.using);
    let with_check = filters(&policy.with_check);
    match policy.command.as_str() {
        "SELECT" | "DELETE" => using,
        "INSERT" => with_check,
        _ => using && (with_check || policy.with_check.is_none()),
    }
}

/// Whether a policy expression, parsed as SQL, compares `column` with a
/// `current_setting('<setting>', …)` call. Anything it cannot parse does not count.
fn expression_filters_tenant(expression: &str, column: &str, setting: &str) -> bool {
    use sqlparser::ast::{
        BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, Visit,
        Visitor,
    };
    use std::ops::ControlFlow;

    let Some(expr) = parse_expression(expression) else {
        return false;
    };

    fn reads_setting(expr: &Expr, setting: &str) -> bool {
        struct Finder<'a> {
            setting: &'a str,
            found: bool,
        }
        impl Visitor for Finder<'_> {
            type Break = ();
            fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
                if let Expr::Function(function) = expr
                    && function
                        .name
                        .to_string()
                        .eq_ignore_ascii_case("current_setting")
                    && let FunctionArguments::List(list) = &function.args
                    && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) =
                        list.args.first()
                    && literal(first).is_some_and(|value| value == self.setting)
                {
                    self.found = true;
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
        }
        fn literal(expr: &Expr) -> Option<&str> {
            match expr {
                Expr::Value(value) => match &value.value {
                    Value::SingleQuotedString(text) => Some(text),
                    _ => None,
                },
                Expr::Cast { expr, .. } | Expr::Nested(expr) => literal(expr),
                _ => None,
            }
        }
        let mut finder = Finder {
            setting,
            found: false,
        };
        let _ = expr.visit(&mut finder);
        finder.found
    }

    struct Comparisons<'a> {
        column: &'a str,
        setting: &'a str,
        found: bool,
    }
    impl Visitor for Comparisons<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = expr
                && ((is_column(left, self.column) && reads_setting(right, self.setting))
                    || (is_column(right, self.column) && reads_setting(left, self.setting)))
            {
                self.found = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut comparisons = Comparisons {
        column,
        setting,
        found: false,
    };
    let _ = expr.visit(&mut comparisons);
    comparisons.found
}

/// A SQL expression as the catalog prints it (a policy's USING, a CHECK), parsed.
pub fn parse_expression(text: &str) -> Option<sqlparser::ast::Expr> {
    sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_expr())
        .ok()
}

/// Whether `expr` is the column `column` (qualified, parenthesized or cast).
pub fn is_column(expr: &sqlparser::ast::Expr, column: &str) -> bool {
    use sqlparser::ast::Expr;
    match expr {
        Expr::Identifier(ident) => ident.value == column,
        Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|p| p.value == column),
        Expr::Nested(expr) | Expr::Cast { expr, .. } => is_column(expr, column),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::expression_filters_tenant;

    fn check(expression: &str, expected: bool) {
        assert_eq!(
            expression_filters_tenant(expression, "tenant_id", "app.tenant_id"),
            expected,
            "{expression}"
        );
    }

    #[test]
    fn the_policy_pg_policies_shows_for_our_migration_filters_by_tenant() {
        check(
            "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::bigint)",
            true,
        );
    }

    #[test]
    fn a_plain_current_setting_comparison_filters_by_tenant() {
        check("tenant_id = current_setting('app.tenant_id')::bigint", true);
    }

    #[test]
    fn a_policy_that_allows_everything_does_not() {
        check("true", false);
    }

    #[test]
    fn another_setting_does_not() {
        check(
            "(tenant_id = (current_setting('app.user_id'::text))::bigint)",
            false,
        );
    }

    #[test]
    fn a_disjunction_that_opens_the_table_still_mentions_the_comparison() {
        // The rule proves the comparison is present; the behavioural cases catch an `OR`
        // that opens the table (they read as one tenant and count the other's rows).
        check(
            "((tenant_id = (current_setting('app.tenant_id'::text))::bigint) OR true)",
            true,
        );
    }
}
