//! One snapshot, several PostgreSQL majors: `migrate-test --pg-versions 15,17,18` on real
//! servers of each major (the images `cargo xtask pg-image --version <major>` builds;
//! `.ci/run` builds all three before the tests).

use std::process::{Command, Output};

use tenantgate::Backend;
use tenantgate_tests::Scratch;

fn migrate_test(scratch: &Scratch, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bare_xtask"))
        .arg("migrate-test")
        .args(["--backend", "postgres", "--config"])
        .arg(scratch.config_path())
        .args(args)
        .env("CI", "true")
        .output()
        .expect("bare_xtask runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A migration that makes an index only on PostgreSQL 18 (as a team's migration that asks
/// for the server's version does): 15 and 17 read the schema as the snapshot accepted on
/// 15, 18 does not, and the run says which majors differ and how.
#[test]
fn a_schema_only_postgresql_18_reads_differently_is_reported_with_the_versions() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "index_on_18",
            "DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 180000 THEN
        CREATE INDEX customers_tenant_created ON customers (tenant_id, created_at);
    END IF;
END
$$;
",
            "DROP INDEX IF EXISTS customers_tenant_created;\n",
        )
        .unwrap();
    scratch
        .exempt_from_parity("0008_index_on_18", Backend::Postgres)
        .unwrap();

    let accepted = migrate_test(&scratch, &["--pg-versions", "15", "--accept"]);
    assert!(
        accepted.status.success(),
        "accepting the snapshot on 15 failed:\n{}",
        text(&accepted)
    );
    let snapshot = std::fs::read_to_string(
        scratch
            .dir
            .path()
            .join("migrations/snapshots/postgres.snap"),
    )
    .unwrap();
    assert!(snapshot.contains("PostgreSQL 15"), "{snapshot}");
    assert!(!snapshot.contains("customers_tenant_created"), "{snapshot}");

    let output = migrate_test(&scratch, &["--pg-versions", "15,17,18"]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains(
            "postgres 15 and postgres 17 read as the snapshot, postgres 18 reads differently"
        ),
        "{all}"
    );
    // The difference itself, on the one major that made it.
    assert!(all.contains("customers_tenant_created"), "{all}");
    let verdicts: Vec<&str> = all
        .lines()
        .filter(|line| line.contains("schema-snapshot"))
        .collect();
    assert!(
        verdicts.iter().any(|line| line.contains("postgres 18")),
        "{verdicts:#?}\n{all}"
    );
    assert!(
        !verdicts
            .iter()
            .any(|line| line.contains("postgres 15") || line.contains("postgres 17")),
        "{verdicts:#?}\n{all}"
    );
}

/// The majors run at once and share one snapshot file: accepting on all three writes it
/// once, as accepted on the first, with every major in its header, and the next run on
/// all three passes against it.
#[test]
fn majors_rehearsed_at_once_accept_and_pass_one_snapshot() {
    let scratch = Scratch::new().unwrap();
    let snapshot_file = scratch
        .dir
        .path()
        .join("migrations/snapshots/postgres.snap");
    std::fs::remove_file(&snapshot_file).unwrap();
    let accepted = migrate_test(&scratch, &["--pg-versions", "15,17,18", "--accept"]);
    assert!(accepted.status.success(), "{}", text(&accepted));
    let snapshot = std::fs::read_to_string(&snapshot_file).unwrap();
    assert!(
        snapshot.contains("Verified on PostgreSQL 15, 17, 18."),
        "{snapshot}"
    );
    let output = migrate_test(&scratch, &["--pg-versions", "15,17,18"]);
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    for major in [15, 17, 18] {
        assert!(
            all.contains(&format!("postgres {major}  database ready")),
            "{all}"
        );
    }
    assert!(
        all.contains("PASS — postgres 15 + postgres 17 + postgres 18"),
        "{all}"
    );
    assert!(!all.contains("was left to be checked"), "{all}");
}
