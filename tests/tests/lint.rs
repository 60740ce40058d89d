//! `cargo xtask lint`: every rule fires on a bad example and stays quiet on the safe form,
//! each as a new migration (0008) on a scratch copy of the repository's migrations.

use std::collections::BTreeSet;

use tenantgate::Backend;
use tenantgate_harness::folder::Folder;
use tenantgate_harness::lint::{Finding, Status, lint_migration};
use tenantgate_tests::Scratch;

/// Lints `up` (with `down`) as migration 0008 of `backend`.
fn lint(backend: Backend, up: &str, down: &str) -> Vec<Finding> {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(backend, "0008", "change", up, down)
        .unwrap();
    let config = scratch.config().unwrap();
    let folder = Folder::read(&scratch.migrations_dir(backend)).unwrap();
    let migration = folder.get(8).expect("0008 was added");
    lint_migration(&config, backend, &folder, migration)
}

/// The rules that fail the lint for `up`.
fn errors(backend: Backend, up: &str) -> BTreeSet<String> {
    lint(backend, up, "SELECT 1;\n")
        .into_iter()
        .filter(|f| f.status == Status::Error)
        .map(|f| f.rule)
        .collect()
}

/// `rule` fires on `bad` and not on `safe`.
fn check(backend: Backend, rule: &str, bad: &str, safe: &str) {
    let fired = errors(backend, bad);
    assert!(
        fired.contains(rule),
        "{backend}: `{rule}` should fire on:\n{bad}\nfired: {fired:?}"
    );
    let quiet = errors(backend, safe);
    assert!(
        !quiet.contains(rule),
        "{backend}: `{rule}` should stay quiet on:\n{safe}\nfired: {quiet:?}"
    );
}

#[test]
fn a_not_null_column_without_a_default() {
    check(
        Backend::Postgres,
        "adding-required-field",
        "ALTER TABLE orders ADD COLUMN note TEXT NOT NULL;",
        "ALTER TABLE orders ADD COLUMN note TEXT NOT NULL DEFAULT '';",
    );
}

#[test]
fn setting_not_null_without_a_validated_check() {
    check(
        Backend::Postgres,
        "adding-not-nullable-field",
        "ALTER TABLE orders ALTER COLUMN station_id SET NOT NULL;",
        "ALTER TABLE orders ADD CONSTRAINT orders_station_id_not_null CHECK (station_id IS NOT NULL) NOT VALID;",
    );
}

#[test]
fn an_index_on_an_existing_table_without_concurrently() {
    check(
        Backend::Postgres,
        "require-concurrent-index-creation",
        "CREATE INDEX orders_status_idx ON orders (tenant_id, status);",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY orders_status_idx ON orders (tenant_id, status);",
    );
}

#[test]
fn concurrently_inside_sqlx_transaction_needs_no_transaction() {
    check(
        Backend::Postgres,
        "ban-concurrent-index-creation-in-transaction",
        "CREATE INDEX CONCURRENTLY orders_status_idx ON orders (tenant_id, status);",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY orders_status_idx ON orders (tenant_id, status);",
    );
    let findings = lint(
        Backend::Postgres,
        "CREATE INDEX CONCURRENTLY orders_status_idx ON orders (tenant_id, status);",
        "SELECT 1;",
    );
    let finding = findings
        .iter()
        .find(|f| f.rule == "ban-concurrent-index-creation-in-transaction")
        .unwrap();
    assert!(
        finding.help.contains("-- no-transaction"),
        "{}",
        finding.help
    );
}

#[test]
fn a_foreign_key_without_not_valid() {
    check(
        Backend::Postgres,
        "adding-foreign-key-constraint",
        "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id);",
        "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id) NOT VALID;",
    );
}

#[test]
fn a_check_without_not_valid() {
    check(
        Backend::Postgres,
        "constraint-missing-not-valid",
        "ALTER TABLE orders ADD CONSTRAINT orders_total_small CHECK (total_cents < 100000000);",
        "ALTER TABLE orders ADD CONSTRAINT orders_total_small CHECK (total_cents < 100000000) NOT VALID;",
    );
}

#[test]
fn changing_a_column_type_rewrites_the_table() {
    check(
        Backend::Postgres,
        "changing-column-type",
        "ALTER TABLE orders ALTER COLUMN number TYPE varchar(40);",
        "ALTER TABLE orders ADD COLUMN number_v2 TEXT;",
    );
}

#[test]
fn renaming_breaks_the_running_app() {
    check(
        Backend::Postgres,
        "renaming-column",
        "ALTER TABLE orders RENAME COLUMN number TO order_number;",
        "ALTER TABLE orders ADD COLUMN order_number TEXT;",
    );
    check(
        Backend::Postgres,
        "renaming-table",
        "ALTER TABLE promotions RENAME TO discounts;",
        "ALTER TABLE promotions ADD COLUMN note TEXT;",
    );
}

#[test]
fn dropping_is_destructive_unless_acknowledged() {
    check(
        Backend::Postgres,
        "ban-drop-column",
        "ALTER TABLE orders DROP COLUMN station_id;",
        "-- tenantgate:allow(ban-drop-column): stations were retired in 4.2 and nothing reads it\nALTER TABLE orders DROP COLUMN station_id;",
    );
    check(
        Backend::Postgres,
        "ban-drop-table",
        "DROP TABLE promotions;",
        "-- tenantgate:allow(ban-drop-table): promotions moved to the pricing service\nDROP TABLE promotions;",
    );
    // Acknowledged findings are reported with their reason, not hidden.
    let findings = lint(
        Backend::Postgres,
        "-- tenantgate:allow(ban-drop-table): promotions moved to the pricing service\nDROP TABLE promotions;",
        "SELECT 1;",
    );
    let finding = findings
        .iter()
        .find(|f| f.rule == "ban-drop-table")
        .unwrap();
    assert_eq!(
        finding.status,
        Status::Acknowledged("promotions moved to the pricing service".to_string())
    );
    assert_eq!(finding.line, 2, "the line of the statement");
}

#[test]
fn a_new_tenant_owned_table_without_the_tenant_column() {
    for backend in Backend::ALL {
        check(
            backend,
            "tenant-table-without-tenant-column",
            "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL);",
            "CREATE TABLE notes (id BIGINT PRIMARY KEY, tenant_id BIGINT NOT NULL REFERENCES tenants (id), body TEXT NOT NULL);",
        );
    }
    // A table the configuration lists as global is not tenant-owned.
    let scratch = Scratch::new().unwrap();
    let findings = {
        scratch
            .add_migration(
                Backend::Postgres,
                "0008",
                "change",
                "CREATE TABLE currencies_history (code TEXT NOT NULL, name TEXT NOT NULL);",
                "DROP TABLE currencies_history;",
            )
            .unwrap();
        let path = scratch.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!(
                "{text}\n[[global_tables]]\nname = \"currencies_history\"\nreason = \"reference data\"\n"
            ),
        )
        .unwrap();
        let folder = Folder::read(&scratch.migrations_dir(Backend::Postgres)).unwrap();
        lint_migration(
            &scratch.config().unwrap(),
            Backend::Postgres,
            &folder,
            folder.get(8).unwrap(),
        )
    };
    assert!(
        !findings
            .iter()
            .any(|f| f.rule == "tenant-table-without-tenant-column"),
        "{findings:#?}"
    );
}

#[test]
fn enabling_row_level_security_without_force() {
    check(
        Backend::Postgres,
        "rls-enable-without-force",
        "ALTER TABLE promotions ENABLE ROW LEVEL SECURITY;",
        "ALTER TABLE promotions ENABLE ROW LEVEL SECURITY;\nALTER TABLE promotions FORCE ROW LEVEL SECURITY;",
    );
}

#[test]
fn disabling_or_unforcing_row_level_security() {
    let safe = "ALTER TABLE orders ENABLE ROW LEVEL SECURITY;\nALTER TABLE orders FORCE ROW LEVEL SECURITY;";
    check(
        Backend::Postgres,
        "rls-disabled",
        "ALTER TABLE orders DISABLE ROW LEVEL SECURITY;",
        safe,
    );
    check(
        Backend::Postgres,
        "rls-disabled",
        "ALTER TABLE orders NO FORCE ROW LEVEL SECURITY;",
        safe,
    );
}

#[test]
fn dropping_a_policy_without_a_replacement() {
    check(
        Backend::Postgres,
        "policy-dropped-without-replacement",
        "DROP POLICY orders_tenant_isolation ON orders;",
        "CREATE POLICY orders_tenant_isolation_v2 ON orders
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint);
DROP POLICY orders_tenant_isolation ON orders;",
    );
}

#[test]
fn granting_a_tenant_owned_table_to_public() {
    check(
        Backend::Postgres,
        "grant-to-public",
        "GRANT SELECT ON orders TO PUBLIC;",
        "GRANT SELECT ON orders TO tenantgate_app;",
    );
    // Global reference data may be public.
    assert!(
        !errors(Backend::Postgres, "GRANT SELECT ON currencies TO PUBLIC;")
            .contains("grant-to-public")
    );
}

#[test]
fn a_security_definer_function_without_a_fixed_search_path() {
    check(
        Backend::Postgres,
        "security-definer-without-search-path",
        "CREATE FUNCTION order_total(bigint) RETURNS bigint LANGUAGE sql SECURITY DEFINER
    AS $$ SELECT total_cents FROM public.orders WHERE id = $1 $$;",
        "CREATE FUNCTION order_total(bigint) RETURNS bigint LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT total_cents FROM public.orders WHERE id = $1 $$;",
    );
}

#[test]
fn a_view_over_tenant_owned_tables_without_security_invoker() {
    check(
        Backend::Postgres,
        "view-without-security-invoker",
        "CREATE VIEW open_orders AS SELECT * FROM orders WHERE status = 'open';",
        "CREATE VIEW open_orders WITH (security_invoker = true) AS SELECT * FROM orders WHERE status = 'open';",
    );
}

#[test]
fn a_global_unique_on_a_tenant_owned_table() {
    check(
        Backend::Postgres,
        "tenant-global-unique",
        "-- no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY orders_number_idx ON orders (number);",
        "-- no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY orders_number_idx ON orders (tenant_id, number);",
    );
    check(
        Backend::Sqlite,
        "tenant-global-unique",
        "CREATE UNIQUE INDEX orders_number_idx ON orders (number);",
        "CREATE UNIQUE INDEX orders_number_idx ON orders (tenant_id, number);",
    );
    check(
        Backend::Postgres,
        "tenant-global-unique",
        "CREATE TABLE notes (id BIGINT PRIMARY KEY, tenant_id BIGINT NOT NULL REFERENCES tenants (id), slug TEXT NOT NULL UNIQUE);",
        "CREATE TABLE notes (id BIGINT PRIMARY KEY, tenant_id BIGINT NOT NULL REFERENCES tenants (id), slug TEXT NOT NULL, UNIQUE (tenant_id, slug));",
    );
}

#[test]
fn a_missing_or_empty_down_migration() {
    for backend in Backend::ALL {
        for down in ["", "-- nothing to undo\n"] {
            let findings = lint(backend, "ALTER TABLE orders ADD COLUMN note TEXT;", down);
            let finding = findings
                .iter()
                .find(|f| f.rule == "missing-down-migration")
                .unwrap_or_else(|| panic!("{backend}: {findings:#?}"));
            assert_eq!(finding.status, Status::Error);
            assert!(finding.help.contains("tenantgate:irreversible"));
        }
        // The safe forms: a real down, or an explicit, reasoned irreversible marker.
        let with_down = lint(
            backend,
            "ALTER TABLE orders ADD COLUMN note TEXT;",
            "ALTER TABLE orders DROP COLUMN note;",
        );
        assert!(!with_down.iter().any(|f| f.rule == "missing-down-migration"));
        let marked = lint(
            backend,
            "ALTER TABLE orders ADD COLUMN note TEXT;",
            "-- tenantgate:irreversible: notes cannot be recovered once dropped\n",
        );
        let finding = marked
            .iter()
            .find(|f| f.rule == "missing-down-migration")
            .unwrap();
        assert_eq!(
            finding.status,
            Status::Acknowledged("notes cannot be recovered once dropped".to_string())
        );
    }
}

#[test]
fn alter_table_forms_sqlite_does_not_support() {
    let safe = "ALTER TABLE orders ADD COLUMN note TEXT NOT NULL DEFAULT '';";
    for bad in [
        "ALTER TABLE orders ADD COLUMN note TEXT NOT NULL;",
        "ALTER TABLE orders ADD COLUMN paid_at TEXT DEFAULT CURRENT_TIMESTAMP;",
        "ALTER TABLE orders ADD COLUMN code TEXT UNIQUE;",
        "ALTER TABLE orders ADD CONSTRAINT orders_total_small CHECK (total_cents < 100000000);",
        "ALTER TABLE orders ALTER COLUMN number SET NOT NULL;",
    ] {
        check(Backend::Sqlite, "sqlite-unsupported-alter", bad, safe);
    }
}

#[test]
fn a_sqlite_rebuild_that_drops_foreign_keys() {
    let rebuild = |foreign_key: &str| {
        format!(
            "CREATE TABLE new_stations (
    id INTEGER PRIMARY KEY,
    store_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    label TEXT,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, store_id, name){foreign_key}
);
INSERT INTO new_stations (id, store_id, name, tenant_id) SELECT id, store_id, name, tenant_id FROM stations;
DROP TABLE stations;
ALTER TABLE new_stations RENAME TO stations;"
        )
    };
    check(
        Backend::Sqlite,
        "sqlite-rebuild-drops-foreign-keys",
        &rebuild(""),
        &rebuild(",\n    FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id)"),
    );
    let findings = lint(Backend::Sqlite, &rebuild(""), "SELECT 1;");
    let finding = findings
        .iter()
        .find(|f| f.rule == "sqlite-rebuild-drops-foreign-keys")
        .unwrap();
    assert!(
        finding.render().contains("`stations`") && finding.render().contains("stores"),
        "{}",
        finding.message
    );
}

#[test]
fn acknowledgments_must_name_a_rule_give_a_reason_and_match_something() {
    let rules = |up: &str| errors(Backend::Postgres, up);
    assert!(
        rules("-- tenantgate:allow(ban-drop-table)\nDROP TABLE promotions;")
            .contains("allow-without-reason")
    );
    assert!(
        rules("-- tenantgate:allow(ban-drop-tabel): typo\nDROP TABLE promotions;")
            .contains("unknown-allow")
    );
    assert!(rules("-- tenantgate:allow(ban-drop-column): nothing dropped here\nALTER TABLE orders ADD COLUMN note TEXT;").contains("unused-allow"));
    // An acknowledgment covers the statement after it, not the rest of the file.
    let findings = errors(
        Backend::Postgres,
        "-- tenantgate:allow(ban-drop-table): moved to the pricing service\nDROP TABLE promotions;\nDROP TABLE gift_cards;",
    );
    assert!(findings.contains("ban-drop-table"), "{findings:?}");
}

#[test]
fn findings_name_the_file_and_line_and_fit_github_annotations() {
    let findings = lint(
        Backend::Postgres,
        "-- a comment\n\nALTER TABLE orders RENAME COLUMN number TO order_number;",
        "SELECT 1;",
    );
    let finding = findings
        .iter()
        .find(|f| f.rule == "renaming-column")
        .unwrap();
    assert!(
        finding
            .file
            .ends_with("migrations/postgres/0008_change.up.sql"),
        "{}",
        finding.file
    );
    assert_eq!(finding.line, 3);
    let annotations = tenantgate_harness::lint::github_annotations(&findings);
    let line = annotations
        .lines()
        .find(|l| l.contains("renaming-column"))
        .unwrap();
    assert!(line.starts_with("::error file="), "{line}");
    assert!(
        line.contains(",line=3,title=postgres renaming-column::"),
        "{line}"
    );
    assert!(!line.contains('\n'));
}

#[test]
fn the_repository_migrations_have_no_unacknowledged_findings_in_new_work() {
    // Every migration of the repository is locked: the lint of new work is empty, and the
    // lint of everything reports history without failing.
    let config = tenantgate::config::Config::load(&tenantgate_tests::demo_config_path()).unwrap();
    for backend in Backend::ALL {
        let folder = Folder::read(config.migrations_dir(backend).unwrap()).unwrap();
        let integrity = tenantgate_harness::lock::check(&folder);
        assert!(integrity.new.is_empty(), "{backend}: unlocked migrations");
        let locked: BTreeSet<i64> = folder.migrations.iter().map(|m| m.version).collect();
        let all = tenantgate_harness::lint::lint_folder(
            &config,
            backend,
            &folder,
            &tenantgate_harness::lint::Selection::All { locked: &locked },
        );
        assert!(all.iter().all(|f| f.status != Status::Error), "{backend}");
    }
}

#[test]
fn a_partition_or_a_child_table_carries_its_parents_tenant_column() {
    let parent = "CREATE TABLE events (tenant_id BIGINT NOT NULL REFERENCES tenants (id), id BIGINT NOT NULL, PRIMARY KEY (tenant_id, id)) PARTITION BY LIST (tenant_id);\n";
    for child in [
        "CREATE TABLE events_1 PARTITION OF events FOR VALUES IN (1);",
        "CREATE TABLE archived_events (archived_at TIMESTAMPTZ) INHERITS (events);",
    ] {
        let fired = errors(Backend::Postgres, &format!("{parent}{child}"));
        assert!(
            !fired.contains("tenant-table-without-tenant-column"),
            "{child}: {fired:?}"
        );
    }
    // The parent itself is still judged.
    assert!(
        errors(
            Backend::Postgres,
            "CREATE TABLE events (id BIGINT NOT NULL) PARTITION BY RANGE (id);"
        )
        .contains("tenant-table-without-tenant-column")
    );
}

#[test]
fn a_function_without_a_fixed_search_path() {
    check(
        Backend::Postgres,
        "function-without-search-path",
        "CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM orders $$;",
        "CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$ SELECT count(*) FROM orders $$;",
    );
    check(
        Backend::Postgres,
        "function-without-search-path",
        "CREATE PROCEDURE close_orders() LANGUAGE sql AS $$ UPDATE orders SET status = 'closed' $$;",
        "CREATE PROCEDURE close_orders() LANGUAGE sql SET search_path = pg_catalog, public AS $$ UPDATE orders SET status = 'closed' $$;",
    );
}

#[test]
fn a_materialized_view_over_tenant_owned_tables() {
    check(
        Backend::Postgres,
        "materialized-view-over-tenant-tables",
        "CREATE MATERIALIZED VIEW order_totals AS SELECT tenant_id, sum(total_cents) FROM orders GROUP BY tenant_id;",
        "CREATE MATERIALIZED VIEW currency_names AS SELECT code, name FROM currencies;",
    );
}

#[test]
fn a_do_block_that_creates_objects_is_reported_not_failed() {
    let findings = lint(
        Backend::Postgres,
        "DO $$ BEGIN EXECUTE 'CREATE VIEW order_numbers AS SELECT number FROM orders'; END $$;\n",
        "SELECT 1;\n",
    );
    let notice = findings
        .iter()
        .find(|f| f.rule == "not-statically-checkable")
        .expect("reported");
    assert_eq!(notice.status, Status::Notice);
    assert!(
        notice.message.contains("the catalog rules will judge"),
        "{}",
        notice.message
    );
    assert!(
        findings.iter().all(|f| f.status != Status::Error),
        "{findings:#?}"
    );
    // A DO block that only raises or checks is nothing to report.
    assert!(
        lint(
            Backend::Postgres,
            "DO $$ BEGIN IF (SELECT count(*) FROM orders) < 0 THEN RAISE 'impossible'; END IF; END $$;\n",
            "SELECT 1;\n",
        )
        .iter()
        .all(|f| f.rule != "not-statically-checkable")
    );
}

/// The advice follows the production major (`[postgres] version`), like strong_migrations'
/// target_version: on 18 a NOT NULL constraint NOT VALID, then VALIDATE.
#[test]
fn the_advice_follows_the_production_postgres_major() {
    let help = |version: Option<u32>| {
        let scratch = Scratch::new().unwrap();
        scratch
            .add_migration(
                Backend::Postgres,
                "0008",
                "change",
                "ALTER TABLE orders ALTER COLUMN station_id SET NOT NULL;",
                "SELECT 1;\n",
            )
            .unwrap();
        if let Some(version) = version {
            scratch
                .append_config(&format!("\n[postgres]\nversion = {version}\n"))
                .unwrap();
        }
        let config = scratch.config().unwrap();
        let folder = Folder::read(&scratch.migrations_dir(Backend::Postgres)).unwrap();
        lint_migration(&config, Backend::Postgres, &folder, folder.get(8).unwrap())
            .into_iter()
            .find(|f| f.rule == "adding-not-nullable-field")
            .expect("the rule fires")
            .help
    };
    let on_18 = help(Some(18));
    assert!(on_18.contains("NOT NULL <column> NOT VALID"), "{on_18}");
    assert!(on_18.contains("VALIDATE CONSTRAINT"), "{on_18}");
    let on_15 = help(Some(15));
    assert!(!on_15.contains("NOT NULL <column> NOT VALID"), "{on_15}");
    assert!(on_15.contains("PostgreSQL 15"), "{on_15}");
    let unset = help(None);
    assert!(unset.contains("set [postgres] version"), "{unset}");
}
