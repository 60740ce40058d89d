//! The rules on hand-built schemas: each rule on one shape it must accept and one it must
//! refuse, with every id type, key order and ownership the configuration allows.

use std::collections::BTreeMap;

use super::*;
use crate::schema::{Column, ForeignKey, Index, Key, Policy, Table};

const CONFIG: &str = r#"
[migrations]
postgres = "postgres"

[tenancy]
column = "tenant_id"
tenants_table = "tenants"
app_role = "app"
tenant_setting = "app.tenant"

[[tables]]
name = "lines"
owned_through = "orders"
reason = "its policy joins to orders"
"#;

fn config(extra: &str) -> Config {
    Config::embedded(&format!("{CONFIG}{extra}")).unwrap()
}

fn column(name: &str, data_type: &str) -> Column {
    Column {
        name: name.to_string(),
        data_type: data_type.to_string(),
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
        referenced_table: parent.to_string(),
        referenced_columns: referenced.iter().map(|c| c.to_string()).collect(),
        on_delete: None,
        validated: true,
    }
}

fn policy(name: &str, command: &str, using: &str) -> Policy {
    Policy {
        name: name.to_string(),
        command: command.to_string(),
        permissive: true,
        roles: vec!["app".to_string()],
        using: Some(using.to_string()),
        with_check: None,
    }
}

const FILTER: &str =
    "(tenant_id = (NULLIF(current_setting('app.tenant'::text, true), ''::text))::uuid)";

/// A tenants table keyed by a uuid, and `orders` done right: composite primary key
/// (tenant_id, id), RLS forced, one policy, granted to the app.
fn schema() -> Schema {
    let mut tenants = Table {
        columns: vec![column("id", "uuid"), column("name", "text")],
        primary_key: vec!["id".to_string()],
        ..Table::default()
    };
    tenants.row_level_security = Some((false, false));
    let orders = Table {
        columns: vec![column("tenant_id", "uuid"), column("id", "bigint")],
        primary_key: vec!["tenant_id".to_string(), "id".to_string()],
        foreign_keys: vec![fk(&["tenant_id"], "tenants", &["id"])],
        row_level_security: Some((true, true)),
        policies: vec![policy("orders_tenant", "ALL", FILTER)],
        grants: vec![(
            "app".to_string(),
            vec!["SELECT".to_string(), "INSERT".to_string()],
        )],
        ..Table::default()
    };
    let lines = Table {
        columns: vec![column("order_id", "bigint"), column("line", "int")],
        primary_key: vec!["order_id".to_string(), "line".to_string()],
        foreign_keys: vec![fk(&["order_id"], "orders", &["id"])],
        row_level_security: Some((true, true)),
        policies: vec![policy(
            "lines_through_orders",
            "ALL",
            "(EXISTS ( SELECT 1 FROM orders o WHERE (o.id = lines.order_id)))",
        )],
        grants: vec![("app".to_string(), vec!["SELECT".to_string()])],
        ..Table::default()
    };
    Schema {
        tables: BTreeMap::from([
            ("tenants".to_string(), tenants),
            ("orders".to_string(), orders),
            ("lines".to_string(), lines),
        ]),
        ..Schema::default()
    }
}

fn role() -> RoleFacts {
    RoleFacts {
        exists: true,
        ..RoleFacts::default()
    }
}

/// The failures of every rule, as "rule: problem".
fn failures(config: &Config, schema: &Schema, role: &RoleFacts) -> Vec<String> {
    let created_by = BTreeMap::new();
    static_rules(&RuleInput {
        config,
        schema,
        backend: Backend::Postgres,
        role: Some(role),
        created_by: &created_by,
        config_file: "tenantgate.toml",
    })
    .into_iter()
    .flat_map(|outcome| {
        outcome
            .failures
            .into_iter()
            .map(move |f| format!("{}: {}", outcome.name, f.render()))
    })
    .collect()
}

fn assert_fails(schema: &Schema, rule: &str, needle: &str) {
    let found = failures(&config(""), schema, &role());
    assert!(
        found
            .iter()
            .any(|f| f.starts_with(&format!("{rule}:")) && f.contains(needle)),
        "expected a `{rule}` failure containing {needle:?}, got {found:#?}"
    );
}

#[test]
fn a_uuid_tenant_composite_key_and_a_child_owned_through_its_parent_pass() {
    assert_eq!(
        failures(&config(""), &schema(), &role()),
        Vec::<String>::new()
    );
}

#[test]
fn a_missing_tenant_column_names_the_table_and_the_key_type() {
    let mut schema = schema();
    let orders = schema.tables.get_mut("orders").unwrap();
    orders.columns.remove(0);
    orders.foreign_keys.clear();
    orders.primary_key = vec!["id".to_string()];
    assert_fails(
        &schema,
        "tenant-column",
        "table `orders` has no `tenant_id` column",
    );
    assert_fails(
        &schema,
        "tenant-column",
        "tenant_id uuid NOT NULL REFERENCES tenants (id)",
    );
}

#[test]
fn a_per_table_tenant_column_is_used() {
    let mut schema = schema();
    let orders = schema.tables.get_mut("orders").unwrap();
    orders.columns[0].name = "org".to_string();
    orders.primary_key[0] = "org".to_string();
    orders.foreign_keys[0].columns = vec!["org".to_string()];
    orders.policies[0].using = Some(FILTER.replace("tenant_id", "org"));
    let declared = config("\n[[tables]]\nname = \"orders\"\ntenant_column = \"org\"\n");
    assert_eq!(failures(&declared, &schema, &role()), Vec::<String>::new());
    assert!(!failures(&config(""), &schema, &role()).is_empty());
}

#[test]
fn a_partial_index_is_not_the_tenant_index() {
    let mut schema = schema();
    let orders = schema.tables.get_mut("orders").unwrap();
    orders.primary_key = vec!["id".to_string()];
    orders.indexes.push(Index {
        name: "orders_open".to_string(),
        columns: vec![
            "tenant_id".to_string(),
            "where (closed IS NULL)".to_string(),
        ],
        unique: false,
        backs_constraint: false,
        partial: true,
    });
    assert_fails(&schema, "tenant-index", "a partial index serves only");
}

#[test]
fn a_global_unique_fails_and_a_tenant_scoped_one_passes() {
    let mut schema = schema();
    schema.tables.get_mut("orders").unwrap().uniques.push(Key {
        name: Some("orders_number_key".to_string()),
        columns: vec!["number".to_string()],
    });
    assert_fails(
        &schema,
        "tenant-unique",
        "`orders_number_key` on `orders` (number)",
    );
    schema.tables.get_mut("orders").unwrap().uniques[0]
        .columns
        .insert(0, "tenant_id".to_string());
    assert_eq!(
        failures(&config(""), &schema, &role()),
        Vec::<String>::new()
    );
}

#[test]
fn a_plain_reference_to_a_tenant_owned_parent_fails() {
    let mut schema = schema();
    let mut payments = schema.tables["orders"].clone();
    payments
        .foreign_keys
        .push(fk(&["order_id"], "orders", &["id"]));
    schema.tables.insert("payments".to_string(), payments);
    assert_fails(
        &schema,
        "tenant-foreign-key",
        "FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id)",
    );
}

#[test]
fn a_child_without_a_reference_to_its_parent_fails() {
    let mut schema = schema();
    schema.tables.get_mut("lines").unwrap().foreign_keys.clear();
    assert_fails(
        &schema,
        "tenant-column",
        "declared owned through `orders` but has no foreign key",
    );
}

#[test]
fn an_or_branch_a_second_permissive_policy_and_a_coalesce_fallback_all_leak() {
    for leaky in [
        format!("({FILTER} OR (current_setting('app.support'::text, true) = 'on'::text))"),
        "true".to_string(),
        "(tenant_id = (COALESCE(current_setting('app.tenant'::text, true), 'x'::text))::uuid)"
            .to_string(),
    ] {
        let mut schema = schema();
        schema.tables.get_mut("orders").unwrap().policies[0].using = Some(leaky.clone());
        assert_fails(
            &schema,
            "rls-policy",
            "policy `orders_tenant` on `orders` lets `app` SELECT rows of other tenants",
        );
    }
    let mut schema = schema();
    schema
        .tables
        .get_mut("orders")
        .unwrap()
        .policies
        .push(policy("orders_support", "SELECT", "(email IS NOT NULL)"));
    assert_fails(
        &schema,
        "rls-policy",
        "its USING admits `email IS NOT NULL`",
    );
}

#[test]
fn a_restrictive_tenant_policy_makes_a_loose_permissive_one_safe() {
    let mut schema = schema();
    let orders = schema.tables.get_mut("orders").unwrap();
    orders.policies[0].using = Some("true".to_string());
    let mut restrictive = policy("orders_restrict", "ALL", FILTER);
    restrictive.permissive = false;
    orders.policies.push(restrictive);
    assert_eq!(
        failures(&config(""), &schema, &role()),
        Vec::<String>::new()
    );
}

#[test]
fn a_command_no_policy_allows_is_denied_but_no_policy_at_all_is_reported() {
    let mut schema = schema();
    schema.tables.get_mut("orders").unwrap().policies[0].command = "SELECT".to_string();
    assert_eq!(
        failures(&config(""), &schema, &role()),
        Vec::<String>::new()
    );
    schema.tables.get_mut("orders").unwrap().policies.clear();
    assert_fails(&schema, "rls-policy", "no policy applies to `app`");
}

#[test]
fn rls_not_forced_and_public_grants_fail() {
    let mut schema = schema();
    let orders = schema.tables.get_mut("orders").unwrap();
    orders.row_level_security = Some((true, false));
    orders
        .grants
        .push(("PUBLIC".to_string(), vec!["SELECT".to_string()]));
    assert_fails(&schema, "rls-enabled", "enabled but not forced");
    assert_fails(&schema, "app-role-grants", "grants SELECT to PUBLIC");
}

#[test]
fn a_role_reaching_bypassrls_through_membership_fails() {
    let mut facts = role();
    facts.privileged_memberships = vec!["admin".to_string()];
    let found = failures(&config(""), &schema(), &facts);
    assert!(
        found.iter().any(|f| f.contains("is a member of `admin`")),
        "{found:#?}"
    );
}

#[test]
fn without_row_level_security_the_rls_rules_do_not_run() {
    let config = Config::embedded(&CONFIG.replace(
        "app_role = \"app\"",
        "row_level_security = false\nrow_level_security_reason = \"queries filter\"",
    ))
    .unwrap();
    let mut schema = schema();
    schema.tables.get_mut("orders").unwrap().row_level_security = Some((false, false));
    let created_by = BTreeMap::new();
    let outcomes = static_rules(&RuleInput {
        config: &config,
        schema: &schema,
        backend: Backend::Postgres,
        role: Some(&role()),
        created_by: &created_by,
        config_file: "tenantgate.toml",
    });
    assert!(
        outcomes
            .iter()
            .all(|o| !ROW_LEVEL_SECURITY_RULES.contains(&o.name))
    );
    assert!(outcomes.iter().all(|o| o.passed()));
}

#[test]
fn a_global_table_with_the_tenant_column_fails() {
    let config = config("\n[[global_tables]]\nname = \"orders\"\nreason = \"shared\"\n");
    let found = failures(&config, &schema(), &role());
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("global-tables:") && f.contains("has a `tenant_id` column")),
        "{found:#?}"
    );
}

fn function(security_definer: bool, search_path: Option<&str>) -> crate::schema::Function {
    crate::schema::Function {
        kind: "function".into(),
        returns: "SETOF orders".into(),
        language: "sql".into(),
        volatility: "stable".into(),
        security_definer,
        search_path: search_path.map(str::to_string),
        body: "0".into(),
        execute: vec!["PUBLIC".into()],
    }
}

fn view(materialized: bool, security_invoker: bool) -> crate::schema::View {
    crate::schema::View {
        materialized,
        security_invoker,
        definition: "SELECT * FROM orders".into(),
        grants: vec![("app".into(), vec!["SELECT".into()])],
    }
}

#[test]
fn a_view_or_materialized_view_the_app_role_reads_must_not_lift_row_level_security() {
    let mut schema = schema();
    schema
        .objects
        .views
        .insert("order_report".into(), view(false, false));
    schema
        .objects
        .views
        .insert("order_totals".into(), view(true, false));
    schema
        .objects
        .views
        .insert("my_orders".into(), view(false, true));
    schema
        .objects
        .views
        .insert("unreachable".into(), view(true, false));
    let role = RoleFacts {
        readable: vec![
            "order_report".into(),
            "order_totals".into(),
            "my_orders".into(),
        ],
        ..role()
    };
    let found = failures(&config(""), &schema, &role);
    let reach: Vec<&String> = found
        .iter()
        .filter(|f| f.starts_with("reachable-objects:"))
        .collect();
    assert_eq!(reach.len(), 2, "{reach:#?}");
    assert!(
        reach
            .iter()
            .any(|f| f.contains("view `order_report`") && f.contains("security_invoker = true"))
    );
    assert!(
        reach
            .iter()
            .any(|f| f.contains("materialized view `order_totals`"))
    );
    // Declared global: it holds no tenant's data.
    let declared = config(
        "[[global_tables]]\nname = \"order_totals\"\nreason = \"sums over every tenant, by design\"\n",
    );
    let found = failures(&declared, &schema, &role);
    assert!(
        !found.iter().any(|f| f.contains("order_totals")),
        "{found:#?}"
    );
}

#[test]
fn a_security_definer_function_the_app_role_can_run_must_be_declared_and_every_function_fixes_its_search_path()
 {
    let mut schema = schema();
    schema.objects.functions.insert(
        "customer_search(text)".into(),
        function(true, Some("public, pg_temp")),
    );
    schema
        .objects
        .functions
        .insert("touch()".into(), function(false, None));
    let role = RoleFacts {
        executable: vec!["customer_search(text)".into(), "touch()".into()],
        ..role()
    };
    let found = failures(&config(""), &schema, &role);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("security-definer:") && f.contains("`customer_search(text)`")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("function-search-path:") && f.contains("`touch()`")),
        "{found:#?}"
    );
    assert!(
        !found
            .iter()
            .any(|f| f.starts_with("function-search-path:") && f.contains("customer_search"))
    );
    let declared = config(
        "[[functions]]\nname = \"customer_search\"\nreason = \"filters by the current tenant inside\"\n\n[[functions]]\nname = \"touch()\"\nreason = \"a trigger function that calls nothing\"\n",
    );
    let found = failures(&declared, &schema, &role);
    assert!(
        !found
            .iter()
            .any(|f| f.contains("customer_search(text)") || f.contains("`touch()`")),
        "{found:#?}"
    );
}
