//! The example apps under `tests/examples`, none of them shaped like the demo shop: each
//! passes `migrate-test` as written, and one scratch migration that breaks it four ways (a
//! table without the tenant column, a unique index across tenants, a foreign key that
//! ignores the tenant, row-level security no longer forced) fails it naming every table
//! and rule.

use tenantgate::Backend;
use tenantgate_harness::AppUnderTest;
use tenantgate_harness::rehearsal::{BackendReport, Options};
use tenantgate_tests::{EXAMPLES, Scratch, assert_fails_with, example_dir, failures, rehearse_app};

async fn rehearse_example(scratch: &Scratch, options: Options) -> Vec<BackendReport> {
    let config = scratch.config().expect("the example's configuration loads");
    let backends = config.backends();
    let reports = rehearse_app(&AppUnderTest::from_config(config), &backends, options).await;
    assert_eq!(reports.len(), backends.len());
    reports
}

#[tokio::test]
async fn every_example_app_passes_with_isolation_cases_that_ran() {
    for name in EXAMPLES {
        let scratch = Scratch::example(name).unwrap();
        let has_fixture = scratch.config().unwrap().fixtures.is_some();
        for report in rehearse_example(&scratch, Options::default()).await {
            assert!(
                report.passed(),
                "{name} on {}: {:#?}",
                report.backend,
                failures(&report)
            );
            assert!(
                report.isolation_cases > 0,
                "{name} on {}: no behavioural isolation case ran",
                report.backend
            );
            assert_eq!(report.steps.len(), report.migrations_total, "{name}");
            let mut checks = vec!["tenant-column", "schema-snapshot", "reversibility"];
            if has_fixture {
                checks.push("row-counts");
            } else {
                assert!(
                    report
                        .notes
                        .iter()
                        .any(|n| n.starts_with("row-counts, default-tenant: not applicable")),
                    "{name}: without a fixture the row counts must say why they did not run: {:#?}",
                    report.notes
                );
            }
            for check in checks {
                assert!(
                    report.check(check).is_some_and(|c| c.checked > 0),
                    "{name} on {}: {check} checked nothing",
                    report.backend
                );
            }
        }
    }
}

/// How to break one example: where its next migration goes and what it can break.
struct Breakage {
    example: &'static str,
    version: &'static str,
    /// A tenant-owned table given a unique index without the tenant column.
    unique_on: (&'static str, &'static str),
    /// A tenant-owned table given a reference to `unique_on` without the tenant column.
    references_from: &'static str,
    /// The column type of that reference.
    reference_type: &'static str,
    /// A tenant-owned table whose row-level security is no longer forced.
    unforced: &'static str,
}

const BREAKAGES: [Breakage; 5] = [
    Breakage {
        example: "uuid-orgs",
        version: "0005",
        unique_on: ("projects", "name"),
        references_from: "tasks",
        reference_type: "text",
        unforced: "tasks",
    },
    Breakage {
        example: "text-accounts",
        version: "0004",
        unique_on: ("vehicles", "plate"),
        references_from: "repairs",
        reference_type: "text",
        unforced: "parts",
    },
    Breakage {
        example: "born-multitenant",
        version: "0003",
        unique_on: ("documents", "title"),
        references_from: "comments",
        reference_type: "text",
        unforced: "comments",
    },
    Breakage {
        example: "adopted-history",
        version: "0005",
        unique_on: ("invoices", "number"),
        references_from: "invoices",
        reference_type: "text",
        unforced: "invoices",
    },
    Breakage {
        example: "membership",
        version: "0003",
        unique_on: ("notes", "body"),
        references_from: "basejump.account_user",
        reference_type: "text",
        unforced: "notes",
    },
];

impl Breakage {
    fn up(&self, backend: Backend) -> String {
        let (table, column) = self.unique_on;
        let bare = |name: &str| name.rsplit('.').next().unwrap().to_string();
        let mut sql = match backend {
            Backend::Postgres => {
                "CREATE TABLE widgets (id BIGINT PRIMARY KEY, label TEXT NOT NULL);\n".to_string()
            }
            Backend::Sqlite => {
                "CREATE TABLE widgets (id INTEGER PRIMARY KEY, label TEXT NOT NULL);\n".to_string()
            }
        };
        sql.push_str(&format!(
            "CREATE UNIQUE INDEX {}_{column}_everywhere ON {table} ({column});\n",
            bare(table)
        ));
        sql.push_str(&format!(
            "ALTER TABLE {} ADD COLUMN stray_{column} {} REFERENCES {table} ({column});\n",
            self.references_from, self.reference_type
        ));
        if backend == Backend::Postgres {
            sql.push_str(&format!(
                "ALTER TABLE {} NO FORCE ROW LEVEL SECURITY;\n",
                self.unforced
            ));
        }
        sql
    }

    fn down(&self, backend: Backend) -> String {
        let (table, column) = self.unique_on;
        let bare = |name: &str| name.rsplit('.').next().unwrap().to_string();
        let schema = table
            .rsplit_once('.')
            .map(|(s, _)| format!("{s}."))
            .unwrap_or_default();
        let mut sql = String::new();
        if backend == Backend::Postgres {
            sql.push_str(&format!(
                "ALTER TABLE {} FORCE ROW LEVEL SECURITY;\n",
                self.unforced
            ));
        }
        sql.push_str(&format!(
            "ALTER TABLE {} DROP COLUMN stray_{column};\n",
            self.references_from
        ));
        sql.push_str(&format!(
            "DROP INDEX {schema}{}_{column}_everywhere;\n",
            bare(table)
        ));
        sql.push_str("DROP TABLE widgets;\n");
        sql
    }
}

#[tokio::test]
async fn one_broken_migration_fails_every_example_naming_each_table_and_rule() {
    for breakage in &BREAKAGES {
        let scratch = Scratch::example(breakage.example).unwrap();
        let config = scratch.config().unwrap();
        for backend in config.backends() {
            scratch
                .add_migration(
                    backend,
                    breakage.version,
                    "break_isolation",
                    &breakage.up(backend),
                    &breakage.down(backend),
                )
                .unwrap();
        }
        let options = Options {
            reversibility: false,
            ..Options::default()
        };
        let file = format!("{}_break_isolation.up.sql", breakage.version);
        for report in rehearse_example(&scratch, options).await {
            let context = format!("{} on {}", breakage.example, report.backend);
            assert!(!report.passed(), "{context}: the broken migration passed");
            assert!(
                report.fatal.is_none(),
                "{context}: {:#?}",
                failures(&report)
            );
            let (table, _) = breakage.unique_on;
            assert_fails_with(&report, "tenant-column", &["`widgets`", &file]);
            assert_fails_with(&report, "tenant-unique", &[&format!("`{table}`"), &file]);
            assert_fails_with(
                &report,
                "tenant-foreign-key",
                &[
                    &format!("`{}`", breakage.references_from),
                    &format!("`{table}`"),
                ],
            );
            if report.backend == Backend::Postgres {
                assert_fails_with(
                    &report,
                    "rls-enabled",
                    &[&format!("`{}`", breakage.unforced), "FORCE", &file],
                );
            }
        }
    }
}

#[tokio::test]
async fn a_membership_policy_that_admits_everyone_is_caught() {
    let scratch = Scratch::example("membership").unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0003",
            "share_notes",
            "CREATE POLICY notes_shared ON notes FOR SELECT USING (true);\n",
            "DROP POLICY notes_shared ON notes;\n",
        )
        .unwrap();
    let options = Options {
        reversibility: false,
        ..Options::default()
    };
    let reports = rehearse_example(&scratch, options).await;
    let report = &reports[0];
    assert!(!report.passed(), "a policy admitting everyone passed");
    assert_fails_with(report, "rls-policy", &["`notes`", "notes_shared"]);
    assert_fails_with(report, "isolation-behaviour", &["`notes`"]);
}

#[test]
fn the_born_multitenant_example_records_migrations_where_its_sqlx_toml_says() {
    let scratch = Scratch::example("born-multitenant").unwrap();
    let config = scratch.config().unwrap();
    assert_eq!(config.sqlx_settings().unwrap().table, "schema_history");
    // The snapshot the rehearsal compares with leaves out the migrations table only if
    // the rehearsal created it under that name.
    let snapshot =
        std::fs::read_to_string(example_dir("born-multitenant").join("snapshots/postgres.snap"))
            .unwrap();
    assert!(!snapshot.contains("_sqlx_migrations") && !snapshot.contains("schema_history"));
}
