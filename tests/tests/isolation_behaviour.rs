//! The behavioural isolation cases on real databases: generated from the schema, run as
//! the application role (PostgreSQL) and through the app's tenant-scoped API (both), and
//! failing when a table leaks, a reference crosses tenants, or the role could bypass RLS.

use app::Db;
use tenantgate::Backend;
use tenantgate::checks::Failure;
use tenantgate::config::{Config, Isolation};
use tenantgate::db::{Conn, Scope};
use tenantgate::schema::Schema;
use tenantgate_harness::isolation::{BehaviourInput, BehaviourReport, Model, run_behaviour};
use tenantgate_tests::scenarios::{COMPOSITE_FK, PLAIN_FK, add_loyalty_cards, loyalty_cards};
use tenantgate_tests::{Scratch, assert_fails_with, failures, rehearse, with_fresh_database};

/// Migrates a fresh database with the app's embedded migrations (no fixture: every table
/// is populated by the generator), runs `then` on it, and runs the cases as `role`, or
/// the app role. Also the schema they ran on.
async fn cases_on_fresh_database(
    backend: Backend,
    role: Option<&str>,
    then: &str,
) -> (BehaviourReport, Schema) {
    let mut config = Config::load(&tenantgate_tests::demo_config_path()).unwrap();
    let mut result = None;
    with_fresh_database(backend, async |database| {
        let db = Db::connect(&database.url).await?;
        db.migrate().await?;
        db.close().await;
        let mut conn = Conn::connect(backend, &database.url).await?;
        if !then.is_empty() {
            conn.execute(then).await?;
        }
        let role = match role {
            Some("current_user") => Some(conn.texts("SELECT current_user::text").await?.remove(0)),
            Some(role) => Some(role.to_string()),
            None => None,
        };
        if let (Some(role), Isolation::RowLevelSecurity(rls)) =
            (role, &mut config.tenancy.isolation)
        {
            rls.app_role = role;
        }
        let schema = Schema::read(&mut conn, "_sqlx_migrations", &Scope::Database).await?;
        let input = BehaviourInput {
            url: &database.url,
            config: &config,
            schema: &schema,
            api: Some(&app::api::SHOP_API),
        };
        result = Some((run_behaviour(&mut conn, &input).await, schema.clone()));
        conn.close().await;
        Ok(())
    })
    .await
    .unwrap();
    result.unwrap()
}

#[tokio::test]
async fn every_tenant_owned_table_is_covered_for_three_tenants_on_both_backends() {
    for backend in Backend::ALL {
        let (report, _) = cases_on_fresh_database(backend, None, "").await;
        let messages: Vec<String> = report.failures.iter().map(|f| f.render()).collect();
        assert!(messages.is_empty(), "{backend}: {messages:#?}");
        assert_eq!(report.tenants.len(), 3, "{backend}");
        assert_eq!(report.tables, 12, "{backend}: every tenant-owned table");
        // Per table and tenant at least: a read, a foreign insert, update and delete, a
        // move, through the API; on PostgreSQL the same again as raw SQL, plus fail-closed.
        let minimum = 12 * 3 * if backend == Backend::Postgres { 10 } else { 6 };
        assert!(
            report.cases >= minimum,
            "{backend}: only {} cases",
            report.cases
        );
    }
}

#[tokio::test]
async fn running_the_cases_as_a_superuser_is_refused() {
    let (report, _) = cases_on_fresh_database(Backend::Postgres, Some("current_user"), "").await;
    assert_eq!(report.cases, 0, "no case may run as a superuser");
    let message = &report.failures[0].render();
    assert!(
        message.contains("refusing to run the isolation cases"),
        "{message}"
    );
    assert!(message.contains("is a superuser"), "{message}");
}

#[tokio::test]
async fn the_apps_migrations_pass_the_cases_inside_migrate_test() {
    let config = Config::load(&tenantgate_tests::demo_config_path()).unwrap();
    for report in rehearse(&config, &Backend::ALL).await {
        assert!(
            report.passed(),
            "{}: {:#?}",
            report.backend,
            failures(&report)
        );
        assert!(
            report.isolation_cases > 200,
            "{}: {}",
            report.backend,
            report.isolation_cases
        );
    }
}

#[tokio::test]
async fn a_table_without_row_level_security_leaks_and_the_cases_show_it() {
    let scratch = Scratch::new().unwrap();
    let mut up = loyalty_cards(Backend::Postgres, COMPOSITE_FK, false);
    up.push_str("GRANT SELECT, INSERT, UPDATE, DELETE ON loyalty_cards TO tenantgate_app;\n");
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "create_loyalty_cards",
            &up,
            "DROP TABLE loyalty_cards;\n",
        )
        .unwrap();
    let reports = rehearse(&scratch.config().unwrap(), &[Backend::Postgres]).await;
    let report = &reports[0];
    assert_fails_with(
        report,
        "isolation-behaviour",
        &["SELECT from `loyalty_cards` saw", "of them not tenant"],
    );
    assert_fails_with(
        report,
        "isolation-behaviour",
        &[
            "inserting a row of tenant",
            "`loyalty_cards`",
            "was not refused",
        ],
    );
    assert_fails_with(
        report,
        "isolation-behaviour",
        &["DELETE of tenant", "`loyalty_cards` changed them"],
    );
    assert_fails_with(
        report,
        "isolation-behaviour",
        &["with no tenant set", "`loyalty_cards`", "fail closed"],
    );
}

#[tokio::test]
async fn a_policy_that_opens_the_table_fails_the_static_rule_and_the_cases() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "widen_orders_policy",
            "DROP POLICY orders_tenant_isolation ON orders;
CREATE POLICY orders_tenant_isolation ON orders
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint OR total_cents > 0)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint);
",
            "SELECT 1;\n",
        )
        .unwrap();
    let reports = rehearse(&scratch.config().unwrap(), &[Backend::Postgres]).await;
    let report = &reports[0];
    // The rule reads what the policy means: the OR branch admits other tenants' rows.
    assert_fails_with(
        report,
        "rls-policy",
        &[
            "policy `orders_tenant_isolation` on `orders`",
            "admits `total_cents > 0`",
        ],
    );
    assert_fails_with(
        report,
        "isolation-behaviour",
        &["SELECT from `orders` saw", "of them not tenant"],
    );
}

#[tokio::test]
async fn a_plain_foreign_key_lets_a_child_reference_another_tenant_on_both_backends() {
    let scratch = Scratch::new().unwrap();
    add_loyalty_cards(&scratch, PLAIN_FK);
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert_fails_with(
            &report,
            "isolation-behaviour",
            &[
                "`loyalty_cards`",
                "reference",
                "`customers` (customer_id)",
                "FOREIGN KEY (tenant_id, customer_id)",
            ],
        );
    }
}

/// The cases as the application role run on two connections at once, every other table's
/// on the second: a leak in every table is found in every table, on both connections,
/// and reported in the tables' order as from one connection.
#[tokio::test]
async fn leaks_found_on_both_connections_are_reported_in_the_tables_order() {
    let open_every_table = "DO $$ DECLARE t record; BEGIN
        FOR t IN SELECT relname FROM pg_class WHERE relrowsecurity AND relnamespace = 'public'::regnamespace LOOP
            EXECUTE format('ALTER TABLE %I DISABLE ROW LEVEL SECURITY', t.relname);
        END LOOP;
    END $$";
    let (report, schema) = cases_on_fresh_database(Backend::Postgres, None, open_every_table).await;
    let config = Config::load(&tenantgate_tests::demo_config_path()).unwrap();
    let model = Model::new(&config, &schema, Backend::Postgres).unwrap();
    // The table of each read that saw another tenant's rows, in the order reported.
    let mut leaking: Vec<String> = report
        .failures
        .iter()
        .map(Failure::render)
        .filter(|message| message.contains(" saw ") && message.contains("not tenant"))
        .filter_map(|message| Some(message.split('`').nth(3)?.to_string()))
        .collect();
    leaking.dedup();
    let tables: Vec<&str> = model.tables.iter().map(|table| table.name).collect();
    assert_eq!(tables.len(), 12);
    assert_eq!(leaking, tables);
}
