//! The static tenant-isolation rules on real databases: each way a new migration can open
//! a gap between tenants makes the rehearsal fail, naming the table and the rule.

use tenantgate::Backend;
use tenantgate_harness::rehearsal::BackendReport;
use tenantgate_harness::rehearsal::Options;
use tenantgate_tests::scenarios::{
    COMPOSITE_FK, ORDERS_POLICY, PLAIN_FK, add_loyalty_cards, disable_rls, enable_rls,
    loyalty_cards,
};
use tenantgate_tests::{
    Scratch, assert_fails_with, assert_notes, failures, rehearse, rehearse_with,
};

/// The rule failures of a report, as "rule: message" lines, for exact comparisons.
fn rules_failed(report: &BackendReport) -> Vec<&'static str> {
    let mut rules: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name)
        .collect();
    rules.dedup();
    rules
}

#[tokio::test]
async fn a_correctly_isolated_new_table_passes_every_rule() {
    let scratch = Scratch::new().unwrap();
    add_loyalty_cards(&scratch, COMPOSITE_FK);
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        // Only the snapshot differs: the table is new.
        assert_eq!(
            rules_failed(&report),
            ["schema-snapshot"],
            "{}: {:#?}",
            report.backend,
            failures(&report)
        );
    }
}

#[tokio::test]
async fn a_new_table_without_row_level_security_fails_on_postgres() {
    let scratch = Scratch::new().unwrap();
    let up = loyalty_cards(Backend::Postgres, COMPOSITE_FK, false);
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
        "rls-enabled",
        &[
            "`loyalty_cards`",
            "not enabled",
            "ENABLE ROW LEVEL SECURITY",
            "0008_create_loyalty_cards.up.sql",
        ],
    );
    // With row-level security off, no policy applies: the rls-enabled failure says it
    // once, and rls-policy does not repeat it.
    assert!(
        !failures(report)
            .iter()
            .any(|f| f.starts_with("rls-policy:") && f.contains("`loyalty_cards`")),
        "{:#?}",
        failures(report)
    );
}

#[tokio::test]
async fn enabled_but_not_forced_row_level_security_fails() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "unforce",
            "ALTER TABLE orders NO FORCE ROW LEVEL SECURITY;\n",
            "ALTER TABLE orders FORCE ROW LEVEL SECURITY;\n",
        )
        .unwrap();
    let reports = rehearse(&scratch.config().unwrap(), &[Backend::Postgres]).await;
    assert_fails_with(
        &reports[0],
        "rls-enabled",
        &["`orders`", "not forced", "owner bypasses"],
    );
}

/// A unique index on `customers (email)` without the tenant column, as migration `version`
/// on both backends: made by the up (or, with `drop`, by the down).
fn unique_customer_email(scratch: &Scratch, version: &str, drop: bool) {
    let create = "CREATE UNIQUE INDEX customers_email_everywhere ON customers (email);\n";
    let remove = "DROP INDEX customers_email_everywhere;\n";
    let (name, up, down) = if drop {
        ("drop_unique_customer_email", remove, create)
    } else {
        ("unique_customer_email", create, remove)
    };
    for backend in Backend::ALL {
        scratch
            .add_migration(backend, version, name, up, down)
            .unwrap();
    }
}

#[tokio::test]
async fn a_global_unique_index_fails_on_both_backends() {
    let scratch = Scratch::new().unwrap();
    unique_customer_email(&scratch, "0008", false);
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert_fails_with(
            &report,
            "tenant-unique",
            &[
                "`customers_email_everywhere`",
                "`customers`",
                "(email)",
                "UNIQUE (tenant_id, email)",
            ],
        );
    }
}

/// Without the reversibility pass the steps are still checked, each on the schema as that
/// step left it (read again only where it changed): a global unique index that one
/// migration adds and the next drops is caught at the first, on both backends.
#[tokio::test]
async fn a_step_gap_is_caught_without_the_reversibility_pass() {
    let scratch = Scratch::new().unwrap();
    unique_customer_email(&scratch, "0008", false);
    unique_customer_email(&scratch, "0009", true);
    let options = Options {
        reversibility: false,
        ..Options::default()
    };
    for report in rehearse_with(&scratch.config().unwrap(), &Backend::ALL, options).await {
        let up = format!("{}/0008_unique_customer_email.up.sql", report.backend);
        assert_fails_with(
            &report,
            "isolation-steps",
            &[
                &format!("{up}, tenant-unique"),
                "`customers_email_everywhere`",
                "deployed between",
            ],
        );
        // The final schema has no such index (the linter still names both files), and
        // the step after it is clean.
        let failed = rules_failed(&report);
        assert!(
            failed.contains(&"isolation-steps") && !failed.contains(&"tenant-unique"),
            "{}: {:#?}",
            report.backend,
            failures(&report)
        );
        let steps = report.check("isolation-steps").unwrap();
        assert_eq!(steps.failures.len(), 1, "{:#?}", steps.failures);
        assert_notes(&report, "reversibility: not checked (--no-reversibility)");
    }
}

#[tokio::test]
async fn a_plain_foreign_key_between_tenant_owned_tables_fails_on_both_backends() {
    let scratch = Scratch::new().unwrap();
    add_loyalty_cards(&scratch, PLAIN_FK);
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert_fails_with(
            &report,
            "tenant-foreign-key",
            &[
                "`loyalty_cards`",
                "(customer_id) → `customers` (id)",
                "FOREIGN KEY (tenant_id, customer_id)",
                "0008_create_loyalty_cards.up.sql",
            ],
        );
    }
}

#[tokio::test]
async fn a_nullable_tenant_column_without_a_reference_to_tenants_fails() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Sqlite,
            "0008",
            "create_notes",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, tenant_id INTEGER, body TEXT NOT NULL, UNIQUE (tenant_id, id));\n",
            "DROP TABLE notes;\n",
        )
        .unwrap();
    let reports = rehearse(&scratch.config().unwrap(), &[Backend::Sqlite]).await;
    assert_fails_with(
        &reports[0],
        "tenant-column",
        &["`notes.tenant_id` is nullable", "SET NOT NULL"],
    );
    assert_fails_with(
        &reports[0],
        "tenant-column",
        &["`notes.tenant_id` does not reference `tenants`"],
    );
}

#[tokio::test]
async fn dropping_a_policy_is_caught() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "drop_orders_policy",
            "DROP POLICY orders_tenant_isolation ON orders;\n",
            ORDERS_POLICY,
        )
        .unwrap();
    let reports = rehearse(&scratch.config().unwrap(), &[Backend::Postgres]).await;
    assert_fails_with(
        &reports[0],
        "rls-policy",
        &[
            "`orders`",
            "no policy applies",
            "CREATE POLICY orders_tenant_isolation",
        ],
    );
}

#[tokio::test]
async fn a_write_policy_without_the_tenant_filter_is_caught_naming_the_policy() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "narrow_orders_policy",
            "DROP POLICY orders_tenant_isolation ON orders;
CREATE POLICY orders_read ON orders FOR SELECT
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint);
CREATE POLICY orders_write ON orders FOR INSERT WITH CHECK (true);
",
            &format!("DROP POLICY orders_read ON orders;\nDROP POLICY orders_write ON orders;\n{ORDERS_POLICY}"),
        )
        .unwrap();
    let reports = rehearse(&scratch.config().unwrap(), &[Backend::Postgres]).await;
    assert_fails_with(
        &reports[0],
        "rls-policy",
        &[
            "policy `orders_write` on `orders`",
            "INSERT rows of other tenants",
            "its WITH CHECK admits `true`",
        ],
    );
    assert_fails_with(
        &reports[0],
        "isolation-behaviour",
        &["inserting a row of tenant", "into `orders` was not refused"],
    );
}

#[tokio::test]
async fn a_policy_for_reads_only_denies_writes_which_isolates() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "read_only_orders",
            "DROP POLICY orders_tenant_isolation ON orders;
CREATE POLICY orders_read ON orders FOR SELECT
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint);
",
            &format!("DROP POLICY orders_read ON orders;\n{ORDERS_POLICY}"),
        )
        .unwrap();
    scratch
        .exempt_from_parity("0008_read_only_orders", Backend::Postgres)
        .unwrap();
    let reports = rehearse(&scratch.config().unwrap(), &[Backend::Postgres]).await;
    let report = &reports[0];
    let isolation: Vec<String> = failures(report)
        .into_iter()
        .filter(|f| {
            tenantgate::rules::RULES
                .iter()
                .any(|r| f.starts_with(&format!("{r}:")))
                || f.starts_with("isolation-")
        })
        .collect();
    assert!(isolation.is_empty(), "{isolation:#?}");
    assert!(report.isolation_cases > 0);
}

#[tokio::test]
async fn a_gap_opened_by_one_migration_and_closed_by_the_next_is_caught() {
    let scratch = Scratch::new().unwrap();
    let table = loyalty_cards(Backend::Postgres, COMPOSITE_FK, false);
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "create_loyalty_cards",
            &table,
            "DROP TABLE loyalty_cards;\n",
        )
        .unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0009",
            "secure_loyalty_cards",
            &enable_rls("loyalty_cards"),
            &disable_rls("loyalty_cards"),
        )
        .unwrap();
    for stem in ["0008_create_loyalty_cards", "0009_secure_loyalty_cards"] {
        scratch.exempt_from_parity(stem, Backend::Postgres).unwrap();
    }
    let reports = rehearse(&scratch.config().unwrap(), &[Backend::Postgres]).await;
    let report = &reports[0];
    assert_fails_with(
        report,
        "isolation-steps",
        &[
            "postgres/0008_create_loyalty_cards.up.sql, rls-enabled",
            "rls-enabled",
            "`loyalty_cards`",
            "deployed between",
        ],
    );
    // The final schema is isolated: only the step gap and the new table's snapshot differ.
    assert_eq!(
        rules_failed(report),
        ["isolation-steps", "schema-snapshot"],
        "{:#?}",
        failures(report)
    );
    // The steps were checked on the second database, beside the final checks on the
    // first: the gap was carried over to them.
    assert_notes(report, "rehearsed on a second database of the server");
}

#[tokio::test]
async fn the_app_role_owning_a_tenant_owned_table_is_caught() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "hand_stores_to_the_app",
            "ALTER TABLE stores OWNER TO tenantgate_app;\n",
            "SELECT 1;\n",
        )
        .unwrap();
    let reports = rehearse(&scratch.config().unwrap(), &[Backend::Postgres]).await;
    assert_fails_with(
        &reports[0],
        "app-role",
        &[
            "`tenantgate_app`",
            "owns tenant-owned tables, or is a member of their owner (stores)",
            "NOSUPERUSER NOBYPASSRLS",
        ],
    );
}

#[tokio::test]
async fn a_missing_app_role_is_caught() {
    let scratch = Scratch::new().unwrap();
    let path = scratch.config_path();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "app_role = \"tenantgate_app\"",
        "app_role = \"tenantgate_web\"",
    );
    std::fs::write(&path, text).unwrap();
    let reports = rehearse(&scratch.config().unwrap(), &[Backend::Postgres]).await;
    assert_fails_with(
        &reports[0],
        "app-role",
        &["`tenantgate_web`", "does not exist", "tenancy.app_role"],
    );
}

#[tokio::test]
async fn a_global_table_that_carries_the_tenant_column_is_an_error() {
    let scratch = Scratch::new().unwrap();
    let path = scratch.config_path();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[[global_tables]]\nname = \"stores\"\nreason = \"shared by mistake\"\n");
    std::fs::write(&path, text).unwrap();
    let reports = rehearse(&scratch.config().unwrap(), &[Backend::Sqlite]).await;
    assert_fails_with(
        &reports[0],
        "global-tables",
        &[
            "`stores`",
            "has a `tenant_id` column",
            "remove it from [[global_tables]]",
        ],
    );
}
