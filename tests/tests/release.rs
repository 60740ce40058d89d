//! `cargo xtask release` refuses to cut a build when a migration breaks tenant isolation,
//! naming the gate, the table and the rule. (The full release, with its release build, is
//! run by `.github/workflows/release.yml` and measured in the closing notes.)

use tenantgate::Backend;
use tenantgate_harness::commands::PgArgs;
use tenantgate_harness::commands::release::{Outcome, Release};
use tenantgate_tests::Scratch;
use tenantgate_tests::scenarios::{PLAIN_FK, add_loyalty_cards};

fn release_with(scratch: &Scratch) -> Outcome {
    Release {
        allow_dirty: true,
        config: Some(scratch.config_path()),
        pg: PgArgs::default(),
    }
    .run(&tenantgate_tests::demo_project())
    .unwrap()
}

#[test]
fn a_plain_foreign_key_between_tenants_refuses_the_release_at_migrate_test() {
    let scratch = Scratch::new().unwrap();
    add_loyalty_cards(&scratch, PLAIN_FK);
    let outcome = release_with(&scratch);
    let (gate, reason) = outcome.refused.expect("the release is refused");
    assert_eq!(gate, "migrate-test");
    assert!(reason.contains("tenant-foreign-key"), "{reason}");
    assert!(reason.contains("`loyalty_cards`"), "{reason}");
    assert!(
        reason.contains("postgres") && reason.contains("sqlite"),
        "{reason}"
    );
    assert!(outcome.binary.is_none() && outcome.manifest.is_none());
    let names: Vec<&str> = outcome.gates.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        names,
        ["clean-tree", "format", "lints", "migrate-test"],
        "gates stop at the first failure"
    );
}

#[test]
fn a_table_without_the_tenant_column_refuses_the_release() {
    let scratch = Scratch::new().unwrap();
    for backend in Backend::ALL {
        scratch
            .add_migration(
                backend,
                "0008",
                "create_audit_log",
                "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, line TEXT NOT NULL);\n",
                "DROP TABLE audit_log;\n",
            )
            .unwrap();
    }
    let outcome = release_with(&scratch);
    let (gate, reason) = outcome.refused.expect("the release is refused");
    assert_eq!(gate, "migrate-test");
    assert!(
        reason.contains("tenant-column") && reason.contains("`audit_log`"),
        "{reason}"
    );
}
