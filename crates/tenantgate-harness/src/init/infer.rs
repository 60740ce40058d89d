//! What a starter configuration says, read from the schema the migrations leave: the
//! tenants table and its key, the tenant column (and the tables that name it otherwise),
//! the tables owned through a parent, the global tables, and how the policies name the
//! current tenant. Pure: the schemas and the migrations' text in, a [`Starter`] out.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use sqlparser::ast::{BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments};
use sqlparser::ast::{Ident, Visit, VisitMut, Visitor, VisitorMut};
use tenantgate::KeyType;
use tenantgate::config::same_table;
use tenantgate::rules::{is_column, parse_expression, string_literal};
use tenantgate::schema::{Schema, Table};

/// A table of the final schema and how the starter configuration declares it.
#[derive(Clone, Debug, PartialEq)]
pub enum Declared {
    /// It carries the tenant column (under another name when `column` is given).
    Owned { column: Option<String> },
    /// Its rows belong to the tenant of a parent it references.
    OwnedThrough { parent: String },
    /// Shared by every tenant, or a tenant table that lacks its column: the user decides.
    Global,
}

/// How the policies name the current tenant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policies {
    /// The settings `current_setting(…)` reads, most used first.
    pub settings: Vec<String>,
    /// Functions the tenant column is compared with (`app.current_tenant()`).
    pub functions: Vec<String>,
    /// Predicates on the tenant column (`has_role_on_account({column})`).
    pub predicates: Vec<String>,
}

/// The inferred tenancy of a schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Tenancy {
    pub tenants_table: String,
    /// The tenants table's key the tenant column references.
    pub key: String,
    /// Whether `key` is the tenants table's single-column primary key.
    pub key_is_primary: bool,
    pub key_type: KeyType,
    pub column: String,
    /// Every other table of the final schema.
    pub tables: BTreeMap<String, Declared>,
    /// How many tables reference the tenants table through the tenant column.
    pub evidence: usize,
}

/// Names that tenants tables and tenant columns are usually given.
const TENANT_WORDS: [&str; 8] = [
    "tenant",
    "organization",
    "organisation",
    "org",
    "account",
    "workspace",
    "team",
    "compan",
];

fn tenantish(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    TENANT_WORDS.iter().any(|word| lower.contains(word))
}

/// The table a tenant column points at, found as the parent the most tables reference
/// through one column; ties go to the candidate the policies and composite keys use, then
/// to tenant-like names. `column` and `tenants_table` override what is found.
pub fn tenancy(
    schema: &Schema,
    column: Option<&str>,
    tenants_table: Option<&str>,
) -> Result<Tenancy, String> {
    // (parent, key, column) → the tables that reference parent (key) through column.
    let mut candidates: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    for (name, table) in &schema.tables {
        for fk in &table.foreign_keys {
            if let ([own], [key]) = (fk.columns.as_slice(), fk.referenced_columns.as_slice())
                && !same_table(&fk.referenced_table, name)
            {
                candidates
                    .entry((fk.referenced_table.clone(), key.clone(), own.clone()))
                    .or_default()
                    .insert(name.clone());
            }
        }
    }
    let score = |(parent, _, column): &(String, String, String), tables: &BTreeSet<String>| {
        let mut score = 4 * tables.len();
        for name in tables {
            let Some(table) = schema.tables.get(name) else {
                continue;
            };
            if table.policies.iter().any(|p| {
                mentions(p.using.as_deref(), column) || mentions(p.with_check.as_deref(), column)
            }) {
                score += 3;
            }
            let composite = |columns: &[String]| columns.len() > 1 && columns.contains(column);
            if composite(&table.primary_key)
                || table.uniques.iter().any(|u| composite(&u.columns))
                || table.foreign_keys.iter().any(|f| composite(&f.columns))
            {
                score += 2;
            }
        }
        if tenantish(column) || tenantish(parent) {
            score += 3;
        }
        score
    };
    let chosen = candidates
        .iter()
        .filter(|((parent, _, own), _)| {
            column.is_none_or(|c| c == own) && tenants_table.is_none_or(|t| same_table(t, parent))
        })
        .max_by_key(|(candidate, tables)| {
            (
                score(candidate, tables),
                std::cmp::Reverse((*candidate).clone()),
            )
        });
    let (tenants_table, key, column, evidence) = match chosen {
        Some(((parent, key, own), tables)) => {
            (parent.clone(), key.clone(), own.clone(), tables.len())
        }
        None => fallback(schema, column, tenants_table)?,
    };
    let (_, tenants) = schema
        .table(&tenants_table)
        .ok_or_else(|| format!("no table `{tenants_table}` exists after the last migration"))?;
    let key_type = tenants
        .column(&key)
        .map_or(KeyType::Integer, |c| KeyType::of(&c.data_type));
    let key_is_primary = tenants.primary_key == [key.clone()];
    let mut tenancy = Tenancy {
        tables: BTreeMap::new(),
        tenants_table,
        key,
        key_is_primary,
        key_type,
        column,
        evidence,
    };
    tenancy.tables = declare_tables(schema, &tenancy);
    Ok(tenancy)
}

/// Without a foreign key to go by: a column with a tenant-like name most tables have,
/// and a tenants table named like one.
fn fallback(
    schema: &Schema,
    column: Option<&str>,
    tenants_table: Option<&str>,
) -> Result<(String, String, String, usize), String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for table in schema.tables.values() {
        for c in &table.columns {
            if column.map_or(tenantish(&c.name) && c.name.ends_with("_id"), |want| {
                want == c.name
            }) {
                *counts.entry(c.name.as_str()).or_default() += 1;
            }
        }
    }
    let found = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(c, n)| (c.to_string(), *n));
    let parent = tenants_table.map(str::to_string).or_else(|| {
        schema
            .tables
            .keys()
            .filter(|name| tenantish(name))
            .min_by_key(|name| name.len())
            .cloned()
    });
    match (found, parent) {
        (Some((column, evidence)), Some(parent)) => {
            let key = schema
                .table(&parent)
                .and_then(|(_, t)| match t.primary_key.as_slice() {
                    [key] => Some(key.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "id".to_string());
            Ok((parent, key, column, evidence))
        }
        _ => Err(
            "no table is referenced by the others through one tenant column, and no column is named like one (tenant_id, org_id, account_id, …)\nfix: name them: `cargo xtask init --column <tenant column> --tenants-table <table>`"
                .to_string(),
        ),
    }
}

/// How each table of the final schema other than the tenants table belongs.
fn declare_tables(schema: &Schema, tenancy: &Tenancy) -> BTreeMap<String, Declared> {
    let mut declared = BTreeMap::new();
    for (name, table) in &schema.tables {
        if same_table(name, &tenancy.tenants_table) {
            continue;
        }
        let to_tenants = table.foreign_keys.iter().find_map(|fk| {
            match (fk.columns.as_slice(), fk.referenced_columns.as_slice()) {
                ([own], [key])
                    if same_table(&fk.referenced_table, &tenancy.tenants_table)
                        && *key == tenancy.key =>
                {
                    Some(own.clone())
                }
                _ => None,
            }
        });
        let entry = if table.column(&tenancy.column).is_some() {
            Declared::Owned { column: None }
        } else if let Some(column) = to_tenants {
            Declared::Owned {
                column: Some(column),
            }
        } else {
            Declared::Global
        };
        declared.insert(name.clone(), entry);
    }
    // A table without its own tenant column, under row-level security whose policy reads a
    // tenant-owned parent it references, is owned through that parent.
    let owned: BTreeSet<String> = declared
        .iter()
        .filter(|(_, d)| matches!(d, Declared::Owned { .. }))
        .map(|(name, _)| name.clone())
        .collect();
    for (name, entry) in declared.iter_mut() {
        if *entry != Declared::Global {
            continue;
        }
        let table = &schema.tables[name];
        if let Some(parent) = policy_parent(table, &owned) {
            *entry = Declared::OwnedThrough { parent };
        }
    }
    declared
}

/// The tenant-owned parent a table references whose name its policies mention.
fn policy_parent(table: &Table, owned: &BTreeSet<String>) -> Option<String> {
    if !table.row_level_security.is_some_and(|(enabled, _)| enabled) {
        return None;
    }
    table.foreign_keys.iter().find_map(|fk| {
        let parent = owned.iter().find(|o| same_table(o, &fk.referenced_table))?;
        let bare = parent.rsplit('.').next().unwrap_or(parent);
        let named = table.policies.iter().any(|p| {
            [p.using.as_deref(), p.with_check.as_deref()]
                .into_iter()
                .flatten()
                .any(|text| text.contains(bare))
        });
        named.then(|| parent.clone())
    })
}

fn mentions(expression: Option<&str>, column: &str) -> bool {
    struct Finds<'a>(&'a str, bool);
    impl Visitor for Finds<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if is_column(expr, self.0) {
                self.1 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    expression.and_then(parse_expression).is_some_and(|expr| {
        let mut finds = Finds(column, false);
        let _ = Visit::visit(&expr, &mut finds);
        finds.1
    })
}

/// How the policies of the tenant-owned tables name the current tenant, and the settings
/// the migrations read (a tenant function's body reads one).
pub fn policies(schema: &Schema, tenancy: &Tenancy, migrations_sql: &[String]) -> Policies {
    let mut found = Policies::default();
    let mut settings: BTreeMap<String, usize> = BTreeMap::new();
    for (name, table) in &schema.tables {
        let Some(Declared::Owned { column }) = tenancy.tables.get(name) else {
            continue;
        };
        let column = column.as_deref().unwrap_or(&tenancy.column);
        for policy in &table.policies {
            for text in [policy.using.as_deref(), policy.with_check.as_deref()]
                .into_iter()
                .flatten()
            {
                if let Some(expr) = parse_expression(text) {
                    read_filter(&expr, column, &mut found, &mut settings);
                }
            }
        }
    }
    // A tenant function reads its setting inside its body: the migrations' text has it.
    for sql in migrations_sql {
        for setting in settings_in(sql) {
            *settings.entry(setting).or_default() += 0;
        }
    }
    let mut ranked: Vec<(String, usize)> = settings.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    found.settings = ranked.into_iter().map(|(s, _)| s).collect();
    found
}

/// The settings `current_setting('…')` reads in a migration's text.
fn settings_in(sql: &str) -> Vec<String> {
    let lower = sql.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("current_setting") {
        rest = &rest[at + "current_setting".len()..];
        let args = rest.trim_start();
        if let Some(args) = args.strip_prefix('(') {
            let args = args.trim_start();
            if let Some(quoted) = args.strip_prefix('\'')
                && let Some(end) = quoted.find('\'')
            {
                found.push(quoted[..end].to_string());
            }
        }
    }
    found
}

fn read_filter(
    expr: &Expr,
    column: &str,
    found: &mut Policies,
    settings: &mut BTreeMap<String, usize>,
) {
    match expr {
        Expr::Nested(inner) => read_filter(inner, column, found, settings),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And | BinaryOperator::Or,
            right,
        } => {
            read_filter(left, column, found, settings);
            read_filter(right, column, found, settings);
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } if is_column(left, column) || is_column(right, column) => {
            let other = if is_column(left, column) { right } else { left };
            let mut read = Vec::new();
            collect_settings(other, &mut read);
            if read.is_empty()
                && let Some(function) = tenant_function(other)
            {
                push_new(&mut found.functions, function);
            }
            for setting in read {
                *settings.entry(setting).or_default() += 1;
            }
        }
        other if mentions(Some(&other.to_string()), column) => {
            push_new(&mut found.predicates, predicate_template(other, column));
        }
        _ => {}
    }
}

fn push_new(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

fn collect_settings(expr: &Expr, into: &mut Vec<String>) {
    struct Settings<'a>(&'a mut Vec<String>);
    impl Visitor for Settings<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(function) = expr {
                let name = function.name.to_string().to_ascii_lowercase();
                if (name == "current_setting" || name == "pg_catalog.current_setting")
                    && let FunctionArguments::List(list) = &function.args
                    && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) =
                        list.args.first()
                    && let Some(setting) = string_literal(first)
                {
                    self.0.push(setting.to_string());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = Visit::visit(expr, &mut Settings(into));
}

/// The function call the tenant column is compared with, as the configuration writes it.
fn tenant_function(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => tenant_function(inner),
        Expr::Function(_) => Some(expr.to_string()),
        _ => None,
    }
}

/// `expr` with the tenant column written `{column}`.
fn predicate_template(expr: &Expr, column: &str) -> String {
    const MARKER: &str = "tenantgate_column_marker";
    struct Replace<'a>(&'a str);
    impl VisitorMut for Replace<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                && is_column(expr, self.0)
            {
                *expr = Expr::Identifier(Ident::new(MARKER));
            }
            ControlFlow::Continue(())
        }
    }
    let mut copy = expr.clone();
    let _ = VisitMut::visit(&mut copy, &mut Replace(column));
    copy.to_string().replace(MARKER, "{column}")
}

/// The role the app runs as: the grantee with privileges on the most tenant-owned tables
/// (PUBLIC aside), and those it ties with.
pub fn app_role(schema: &Schema, tenancy: &Tenancy) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, table) in &schema.tables {
        if !matches!(
            tenancy.tables.get(name),
            Some(Declared::Owned { .. } | Declared::OwnedThrough { .. })
        ) {
            continue;
        }
        for (grantee, privileges) in &table.grants {
            let writes = privileges
                .iter()
                .any(|p| ["SELECT", "INSERT", "UPDATE", "DELETE"].contains(&p.as_str()));
            if writes && !grantee.eq_ignore_ascii_case("public") {
                *counts.entry(grantee.as_str()).or_default() += 1;
            }
        }
    }
    let best = counts.values().copied().max().unwrap_or(0);
    counts
        .into_iter()
        .filter(|(_, n)| *n == best && best > 0)
        .map(|(role, _)| role.to_string())
        .collect()
}

/// A membership table (Supabase, basejump): one that pairs the tenant with a person of a
/// global table, as `(tenant column, person column)`.
pub fn membership(schema: &Schema, tenancy: &Tenancy) -> Option<(String, String, String)> {
    schema.tables.iter().find_map(|(name, table)| {
        let Some(Declared::Owned { column }) = tenancy.tables.get(name) else {
            return None;
        };
        let column = column.clone().unwrap_or_else(|| tenancy.column.clone());
        let person = table
            .foreign_keys
            .iter()
            .find_map(|fk| match fk.columns.as_slice() {
                [own]
                    if *own != column
                        && matches!(
                            tenancy.tables.get(&fk.referenced_table),
                            Some(Declared::Global)
                        ) =>
                {
                    Some(own.clone())
                }
                _ => None,
            })?;
        Some((name.clone(), column, person))
    })
}

/// Whether every tenant-owned SQLite table has a trigger that refuses changing its tenant
/// column.
pub fn sqlite_tenant_column_immutable(schema: &Schema, tenancy: &Tenancy) -> bool {
    let mut owned = schema
        .tables
        .iter()
        .filter_map(|(name, table)| match tenancy.tables.get(name) {
            Some(Declared::Owned { column }) => {
                Some((table, column.as_deref().unwrap_or(&tenancy.column)))
            }
            _ => None,
        })
        .peekable();
    owned.peek().is_some()
        && owned.all(|(table, column)| {
            table.triggers.iter().any(|(_, sql)| {
                let lower = sql.to_ascii_lowercase();
                lower.contains("update of")
                    && lower.contains(&column.to_ascii_lowercase())
                    && lower.contains("raise")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantgate::schema::{Column, ForeignKey, Policy};

    fn column(name: &str, data_type: &str) -> Column {
        Column {
            name: name.into(),
            data_type: data_type.into(),
            not_null: true,
            default: None,
            identity: None,
            generated: false,
        }
    }

    fn fk(columns: &[&str], parent: &str, referenced: &[&str]) -> ForeignKey {
        ForeignKey {
            name: None,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            referenced_table: parent.into(),
            referenced_columns: referenced.iter().map(|c| c.to_string()).collect(),
            on_delete: None,
            validated: true,
        }
    }

    fn policy(using: &str) -> Policy {
        Policy {
            name: "p".into(),
            command: "ALL".into(),
            permissive: true,
            roles: vec!["public".into()],
            using: Some(using.into()),
            with_check: None,
        }
    }

    /// Workspaces and users are each referenced by two tables; the policies and the
    /// composite keys say which one is the tenant.
    fn schema() -> Schema {
        let mut schema = Schema::default();
        schema.tables.insert(
            "workspaces".into(),
            Table {
                columns: vec![column("id", "bigint"), column("name", "text")],
                primary_key: vec!["id".into()],
                ..Table::default()
            },
        );
        schema.tables.insert(
            "users".into(),
            Table {
                columns: vec![column("id", "bigint")],
                primary_key: vec!["id".into()],
                ..Table::default()
            },
        );
        for name in ["documents", "comments"] {
            schema.tables.insert(
                name.into(),
                Table {
                    columns: vec![
                        column("workspace_id", "bigint"),
                        column("id", "bigint"),
                        column("author_id", "bigint"),
                    ],
                    primary_key: vec!["workspace_id".into(), "id".into()],
                    foreign_keys: vec![
                        fk(&["workspace_id"], "workspaces", &["id"]),
                        fk(&["author_id"], "users", &["id"]),
                    ],
                    row_level_security: Some((true, true)),
                    policies: vec![policy("(workspace_id = app.current_workspace())")],
                    grants: vec![("docs_app".into(), vec!["SELECT".into(), "UPDATE".into()])],
                    ..Table::default()
                },
            );
        }
        schema.tables.insert(
            "document_versions".into(),
            Table {
                columns: vec![column("id", "bigint"), column("document_id", "bigint")],
                primary_key: vec!["id".into()],
                foreign_keys: vec![fk(&["document_id"], "documents", &["id"])],
                row_level_security: Some((true, true)),
                policies: vec![policy(
                    "(EXISTS ( SELECT 1 FROM documents d WHERE (d.id = document_versions.document_id)))",
                )],
                ..Table::default()
            },
        );
        schema
    }

    #[test]
    fn the_tenant_is_the_parent_the_policies_and_composite_keys_use() {
        let tenancy = tenancy(&schema(), None, None).unwrap();
        assert_eq!(tenancy.tenants_table, "workspaces");
        assert_eq!(tenancy.column, "workspace_id");
        assert_eq!(tenancy.key, "id");
        assert!(tenancy.key_is_primary);
        assert_eq!(tenancy.tables["users"], Declared::Global);
        assert_eq!(
            tenancy.tables["documents"],
            Declared::Owned { column: None }
        );
        assert_eq!(
            tenancy.tables["document_versions"],
            Declared::OwnedThrough {
                parent: "documents".into()
            }
        );
        assert_eq!(app_role(&schema(), &tenancy), vec!["docs_app".to_string()]);
    }

    #[test]
    fn functions_predicates_and_settings_are_read_from_the_policies() {
        let mut schema = schema();
        let tenancy = tenancy(&schema, None, None).unwrap();
        let found = policies(
            &schema,
            &tenancy,
            &["CREATE FUNCTION app.current_workspace() ... current_setting('app.workspace_id', true)".into()],
        );
        assert_eq!(found.functions, vec!["app.current_workspace()".to_string()]);
        assert_eq!(found.settings, vec!["app.workspace_id".to_string()]);
        schema.tables.get_mut("comments").unwrap().policies =
            vec![policy("basejump.has_role_on_account(workspace_id)")];
        let found = policies(&schema, &tenancy, &[]);
        assert_eq!(
            found.predicates,
            vec!["basejump.has_role_on_account({column})".to_string()]
        );
    }

    #[test]
    fn a_column_named_otherwise_is_an_override_and_flags_choose_for_the_user() {
        let mut schema = schema();
        let table = schema.tables.get_mut("comments").unwrap();
        table.columns[0].name = "space".into();
        table.foreign_keys[0].columns = vec!["space".into()];
        table.primary_key = vec!["space".into(), "id".into()];
        let tenancy = tenancy(&schema, None, None).unwrap();
        assert_eq!(tenancy.column, "workspace_id");
        assert_eq!(
            tenancy.tables["comments"],
            Declared::Owned {
                column: Some("space".into())
            }
        );
        let chosen = super::tenancy(&schema, Some("author_id"), None).unwrap();
        assert_eq!(chosen.tenants_table, "users");
    }
}
