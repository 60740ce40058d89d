//! Every path to tenant data the application role has besides a tenant table's policies:
//! functions, views, materialized views, other schemas, partitions, role membership. Each
//! leaking migration of the hostile trial fails `migrate-test` naming the object and the
//! rule; the corrected or declared form passes the same rule; and `app verify` reports the
//! same change made by hand on a live database.

use tenantgate::Backend;
use tenantgate::live::{Outcome, Source, Target};
use tenantgate_harness::provision::PgOptions;
use tenantgate_harness::rehearsal::{BackendReport, Options};
use tenantgate_tests::live::{options, prepare};
use tenantgate_tests::{Scratch, assert_fails_with, failures};

/// The demo with one PostgreSQL migration 0008 added, rehearsed on PostgreSQL.
async fn with_0008(up: &str, extra_config: &str) -> BackendReport {
    with_0008_on(up, extra_config, &PgOptions::from_env()).await
}

async fn with_0008_on(up: &str, extra_config: &str, pg: &PgOptions) -> BackendReport {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(Backend::Postgres, "0008", "scenario", up, "SELECT 1;\n")
        .unwrap();
    scratch
        .exempt_from_parity("0008_scenario", Backend::Postgres)
        .unwrap();
    if !extra_config.is_empty() {
        scratch.append_config(extra_config).unwrap();
    }
    let options = Options {
        reversibility: false,
        ..Options::default()
    };
    let app = tenantgate_tests::scratch_app(scratch.config().unwrap());
    tenantgate_tests::rehearse_app_on(&app, &[Backend::Postgres], options, pg)
        .await
        .remove(0)
}

/// Every check passed but the snapshot, which a scratch migration 0008 changes.
fn assert_only_the_snapshot_differs(report: &BackendReport) {
    let unexpected: Vec<String> = failures(report)
        .into_iter()
        .filter(|f| !f.starts_with("schema-snapshot:"))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}

fn rule_failures(report: &BackendReport, rule: &str) -> Vec<String> {
    failures(report)
        .into_iter()
        .filter(|f| f.starts_with(&format!("{rule}:")))
        .collect()
}

const SECURITY_DEFINER_SEARCH: &str =
    "CREATE FUNCTION customer_search(pattern text) RETURNS SETOF customers
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT * FROM customers WHERE full_name LIKE pattern $$;
GRANT EXECUTE ON FUNCTION customer_search(text) TO tenantgate_app;
";

#[tokio::test]
async fn a_security_definer_function_granted_to_the_app_role_fails_until_it_is_an_invoker() {
    let report = with_0008(SECURITY_DEFINER_SEARCH, "").await;
    assert_fails_with(
        &report,
        "security-definer",
        &["`customer_search(pattern text)`", "tenantgate_app"],
    );
    let invoker = SECURITY_DEFINER_SEARCH.replace("SECURITY DEFINER", "SECURITY INVOKER");
    let report = with_0008(&invoker, "").await;
    assert!(
        rule_failures(&report, "security-definer").is_empty(),
        "{:#?}",
        failures(&report)
    );
}

#[tokio::test]
async fn a_materialized_view_granted_to_the_app_role_fails() {
    let report = with_0008(
        "CREATE MATERIALIZED VIEW customer_counts AS SELECT tenant_id, count(*) AS customers FROM customers GROUP BY tenant_id;
CREATE MATERIALIZED VIEW customer_directory AS SELECT tenant_id, full_name FROM customers;
GRANT SELECT ON customer_counts, customer_directory TO tenantgate_app;
",
        "",
    )
    .await;
    assert_fails_with(
        &report,
        "reachable-objects",
        &["materialized view `customer_counts`", "tenantgate_app"],
    );
    assert!(
        !rule_failures(&report, "reachable-objects")
            .iter()
            .any(|f| f.contains("`customer_directory`") && !f.contains("materialized")),
        "{:#?}",
        failures(&report)
    );
    // The canaries, refreshed into the copy, come back to every tenant.
    assert_fails_with(
        &report,
        "isolation-behaviour",
        &[
            "canary cases",
            "materialized view public.customer_directory returned",
        ],
    );
}

#[tokio::test]
async fn a_view_created_by_dynamic_sql_is_judged_on_the_catalog() {
    let definer = "DO $$ BEGIN
    EXECUTE 'CREATE VIEW customer_emails AS SELECT tenant_id, email FROM customers';
    EXECUTE 'GRANT SELECT ON customer_emails TO tenantgate_app';
END $$;
";
    let report = with_0008(definer, "").await;
    assert_fails_with(
        &report,
        "reachable-objects",
        &["view `customer_emails`", "security_invoker = true"],
    );
    // The view reads with its owner's rights: the canaries see tenant rows come through.
    assert_fails_with(
        &report,
        "isolation-behaviour",
        &["canary cases", "view public.customer_emails returned"],
    );
    let invoker = definer.replace(
        "CREATE VIEW customer_emails AS",
        "CREATE VIEW customer_emails WITH (security_invoker = true) AS",
    );
    let report = with_0008(&invoker, "").await;
    assert!(
        rule_failures(&report, "reachable-objects").is_empty(),
        "{:#?}",
        failures(&report)
    );
}

#[tokio::test]
async fn a_copy_of_tenant_rows_in_another_schema_fails_naming_it() {
    let report = with_0008(
        "CREATE SCHEMA reporting;
CREATE TABLE reporting.customer_export AS SELECT id, full_name FROM customers;
GRANT USAGE ON SCHEMA reporting TO tenantgate_app;
GRANT SELECT ON reporting.customer_export TO tenantgate_app;
",
        "",
    )
    .await;
    assert_fails_with(&report, "tenant-column", &["`reporting.customer_export`"]);
    // The corrected form: the copy carries the tenant and is isolated like its source.
    let report = with_0008(
        &format!(
            "CREATE SCHEMA reporting;
CREATE TABLE reporting.customer_export (
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    id bigint NOT NULL,
    full_name text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
INSERT INTO reporting.customer_export SELECT tenant_id, id, full_name FROM customers;
ALTER TABLE reporting.customer_export ENABLE ROW LEVEL SECURITY;
ALTER TABLE reporting.customer_export FORCE ROW LEVEL SECURITY;
CREATE POLICY customer_export_tenant_isolation ON reporting.customer_export
    USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT});
GRANT USAGE ON SCHEMA reporting TO tenantgate_app;
GRANT SELECT ON reporting.customer_export TO tenantgate_app;
"
        ),
        "",
    )
    .await;
    assert_only_the_snapshot_differs(&report);
}

#[tokio::test]
async fn an_app_role_that_can_set_role_to_a_bypassrls_role_fails() {
    // The membership is the whole server's: on a server of its own, or every other test
    // on the shared one would see its app role reach BYPASSRLS.
    let report = with_0008_on(
        "DO $$ BEGIN CREATE ROLE support_admin NOLOGIN BYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT support_admin TO tenantgate_app;
",
        "",
        &tenantgate_tests::own_server(),
    )
    .await;
    assert_fails_with(&report, "app-role", &["`support_admin`", "SET ROLE"]);
}

#[tokio::test]
async fn a_partition_without_its_own_row_level_security_fails_and_a_function_needs_a_search_path() {
    let report = with_0008(
        "CREATE TABLE events (
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    id bigint NOT NULL,
    PRIMARY KEY (tenant_id, id)
) PARTITION BY LIST (tenant_id);
CREATE TABLE events_1 PARTITION OF events FOR VALUES IN (1);
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY events_tenant_isolation ON events
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint);
GRANT SELECT, INSERT, UPDATE, DELETE ON events, events_1 TO tenantgate_app;
CREATE FUNCTION event_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM events $$;
",
        "",
    )
    .await;
    assert_fails_with(&report, "rls-enabled", &["`events_1`"]);
    assert_fails_with(&report, "function-search-path", &["`event_count()`"]);
    assert!(
        !rule_failures(&report, "rls-enabled")
            .iter()
            .any(|f| f.contains("`events`")),
        "the partitioned table itself is isolated: {:#?}",
        failures(&report)
    );
}

/// `app verify` on a live database judges the catalog: each leak of the hostile trial,
/// made by hand after the migrations, is reported as drift and by the tenancy rules,
/// naming the object.
#[tokio::test]
async fn app_verify_reports_objects_made_by_hand_on_a_live_database() -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 3, dir.path()).await?;
        let source = Source::of(&app::TENANTGATE, Backend::Postgres)?;
        let config = app::TENANTGATE.config()?;
        let target = Target::new(&database.url)?;
        let migrated =
            tenantgate::live::migrate(&source, &config, &target, &options(dir.path()), &mut |_| {}).await;
        assert_eq!(migrated.outcome, Outcome::Migrated, "{}", migrated.render());
        let mut conn = target.connect(false).await?;
        conn.execute(SECURITY_DEFINER_SEARCH).await?;
        conn.execute("CREATE MATERIALIZED VIEW customer_counts AS SELECT tenant_id, count(*) FROM customers GROUP BY 1; GRANT SELECT ON customer_counts TO tenantgate_app")
            .await?;
        conn.execute("DO $$ BEGIN EXECUTE 'CREATE VIEW customer_emails AS SELECT tenant_id, email FROM customers'; EXECUTE 'GRANT SELECT ON customer_emails TO tenantgate_app'; END $$")
            .await?;
        conn.execute("CREATE SCHEMA reporting; CREATE TABLE reporting.customer_export AS SELECT id, full_name FROM customers; GRANT USAGE ON SCHEMA reporting TO tenantgate_app; GRANT SELECT ON reporting.customer_export TO tenantgate_app")
            .await?;
        conn.execute("CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM orders $$")
            .await?;
        conn.execute(&format!(
            "DROP POLICY products_tenant_isolation ON products; CREATE POLICY products_tenant_isolation ON products USING (tenant_id = {TENANT} OR current_setting('app.support_mode', true) = 'on') WITH CHECK (tenant_id = {TENANT})"
        ))
        .await?;
        conn.close().await;
        let verified = tenantgate::live::verify_database(&source, &config, &target).await;
        let text = verified.render();
        assert_ne!(verified.outcome, Outcome::UpToDate, "{text}");
        for (object, rule) in [
            ("customer_search", "security-definer"),
            ("customer_counts", "reachable-objects"),
            ("customer_emails", "reachable-objects"),
            ("reporting.customer_export", "tenant-column"),
            ("order_count()", "function-search-path"),
            ("products_tenant_isolation", "rls-policy"),
        ] {
            assert!(
                text.lines().any(|line| line.contains(rule) && line.contains(object)),
                "`{object}` should be reported by `{rule}`:\n{text}"
            );
        }
        // A schema the configuration names as other software's is left out.
        let mut config = config.clone();
        config.tenancy.other_software_schemas = vec!["reporting".to_string()];
        let verified = tenantgate::live::verify_database(&source, &config, &target).await;
        let text = verified.render();
        assert!(!text.contains("reporting.customer_export"), "{text}");
        assert!(text.contains("customer_search"), "{text}");
        Ok(())
    })
    .await
}

/// The canaries go in as a prefix of a text column, or as a suffix where a CHECK refuses
/// the prefix: a station's name must start with a capital letter, so its canary goes at
/// the end, and every other table keeps its own.
#[tokio::test]
async fn a_canary_a_check_refuses_as_a_prefix_goes_in_as_a_suffix() {
    let report = with_0008(
        "ALTER TABLE stations ADD CONSTRAINT stations_name_capitalised CHECK (name ~ '^[A-Z]');\n",
        "",
    )
    .await;
    let canaries = report
        .notes
        .iter()
        .find(|n| n.starts_with("canary cases:"))
        .unwrap_or_else(|| panic!("{:#?}", report.notes));
    assert!(
        canaries.contains("canaries in 9 of 12 tenant-owned tables")
            && !canaries.contains("`stations`"),
        "{canaries}"
    );
    assert!(
        rule_failures(&report, "isolation-behaviour").is_empty(),
        "{:#?}",
        failures(&report)
    );
}

/// A SECURITY DEFINER function declared with a reason passes the static rule, so only
/// what it returns can judge it: the canaries of the other tenants in its output fail the
/// run naming it; the same function filtering by the current tenant passes.
#[tokio::test]
async fn a_declared_security_definer_function_that_leaks_is_caught_by_the_canaries() {
    let declared = "\n[[functions]]\nname = \"customer_search\"\nreason = \"the search box; reads past row-level security for speed\"\n";
    let report = with_0008(SECURITY_DEFINER_SEARCH, declared).await;
    assert!(
        rule_failures(&report, "security-definer").is_empty(),
        "declared: {:#?}",
        failures(&report)
    );
    assert_fails_with(
        &report,
        "isolation-behaviour",
        &[
            "canary cases",
            "SECURITY DEFINER function public.customer_search(pattern text)",
        ],
    );
    let filtered = SECURITY_DEFINER_SEARCH.replace(
        "WHERE full_name LIKE pattern",
        "WHERE full_name LIKE pattern AND tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint",
    );
    let report = with_0008(&filtered, declared).await;
    assert_only_the_snapshot_differs(&report);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("canary cases") && n.contains("called 1 function")),
        "{:#?}",
        report.notes
    );
}

/// A `[[functions]]` entry naming no function of any step is stale, and says so.
#[tokio::test]
async fn a_declaration_of_a_function_no_migration_makes_is_named() {
    let report = with_0008(
        "SELECT 1;\n",
        "\n[[functions]]\nname = \"gone\"\nreason = \"dropped long ago\"\n",
    )
    .await;
    assert_fails_with(
        &report,
        "function-search-path",
        &[
            "[[functions]] names `gone`",
            "no such function exists after any migration",
        ],
    );
}

const TENANT: &str = "NULLIF(current_setting('app.tenant_id', true), '')::bigint";

/// Each policy pitfall of the hostile trial, as a scratch migration on `customers`: the
/// static `rls-policy` rule fails naming the policy, on the semantics of the policies
/// together (an OR branch, a second permissive policy, a fallback tenant, none at all).
#[tokio::test]
async fn every_policy_that_loses_the_tenant_condition_fails_naming_it() {
    let replace = |using: &str| {
        format!(
            "DROP POLICY customers_tenant_isolation ON customers;
CREATE POLICY customers_tenant_isolation ON customers USING ({using}) WITH CHECK (tenant_id = {TENANT});
"
        )
    };
    let scenarios = [
        (
            "an OR branch on another setting",
            replace(&format!(
                "tenant_id = {TENANT} OR current_setting('app.support_mode', true) = 'on'"
            )),
            "customers_tenant_isolation",
        ),
        (
            "an OR branch on a column",
            replace(&format!("tenant_id = {TENANT} OR email IS NOT NULL")),
            "customers_tenant_isolation",
        ),
        (
            "a fallback tenant when the setting is unset",
            replace("tenant_id = coalesce(current_setting('app.tenant_id', true), '1')::bigint"),
            "customers_tenant_isolation",
        ),
        (
            "a second permissive policy USING (true)",
            "CREATE POLICY customers_support ON customers FOR SELECT USING (true);\n".to_string(),
            "customers_support",
        ),
        (
            "a second permissive policy without the tenant",
            "CREATE POLICY customers_marketing ON customers FOR SELECT USING (phone IS NOT NULL);\n"
                .to_string(),
            "customers_marketing",
        ),
    ];
    for (label, up, policy) in scenarios {
        let report = with_0008(&up, "").await;
        let found = rule_failures(&report, "rls-policy");
        assert!(
            found
                .iter()
                .any(|f| f.contains(&format!("`{policy}`")) && f.contains("`customers`")),
            "{label}: expected an rls-policy failure naming `{policy}`, got {:#?}",
            failures(&report)
        );
    }
    // Row-level security enabled and no policy left: every row denied, reported.
    let report = with_0008("DROP POLICY customers_tenant_isolation ON customers;\n", "").await;
    assert!(
        failures(&report)
            .iter()
            .any(|f| f.contains("`customers`") && f.contains("no policy")),
        "{:#?}",
        failures(&report)
    );
}

/// A function that hands back what it was given (normalising a name) is no leak, though
/// the canaries call it with the other tenants' canaries.
#[tokio::test]
async fn a_function_that_echoes_its_argument_is_no_leak() {
    let report = with_0008(
        "CREATE FUNCTION normalize_name(name text) RETURNS text LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog AS $$ SELECT lower(trim(name)) $$;
",
        "",
    )
    .await;
    assert_only_the_snapshot_differs(&report);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("canary cases") && n.contains("called 1 function")),
        "{:#?}",
        report.notes
    );
}
