//! `cargo xtask bench`, small: every number it reports comes from a real database, and the
//! JSON holds what the table shows.

use tenantgate_harness::bench::{Bench, Section};

/// A bench of `only`, writing its JSON into `dir`.
fn small(only: Vec<Section>, dir: &tempfile::TempDir) -> Bench {
    Bench {
        // One timed run: these tests check that every number is measured and reported,
        // not how steady it is (the suite's time is CI's budget).
        runs: 1,
        only,
        rows: vec![500],
        schemas: vec![3],
        jobs: Some(2),
        tenant_jobs: Vec::new(),
        history: 10,
        xtask: Some(env!("CARGO_BIN_EXE_bare_xtask").into()),
        pg_image: None,
        json: Some(dir.path().join("bench.json")),
    }
}

#[test]
fn template_volume_and_tenant_sections_measure_real_databases_and_write_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let bench = small(
        vec![Section::Template, Section::Volume, Section::Tenants],
        &dir,
    );
    let results = bench.run(&tenantgate_tests::demo_project()).unwrap();

    // A clone and a re-migration per backend, each timed twice per run.
    for name in [
        "postgres: CREATE DATABASE … TEMPLATE migrated",
        "sqlite: copy the migrated file",
    ] {
        let m = results
            .measurement(Section::Template, name)
            .unwrap_or_else(|| panic!("no `{name}` in {:#?}", results.measurements));
        assert_eq!(m.stats.runs, 2);
        assert!(m.stats.median_ms > 0.0 && m.stats.min_ms <= m.stats.max_ms);
        assert!(m.comparison.as_deref().unwrap().ends_with("× faster"));
    }

    // The rehearsal at volume passed on both backends, with a time per tenancy migration
    // and, on PostgreSQL, the strongest lock 0005 held while it rewrote the tables.
    assert_eq!(results.volume.len(), 2);
    for run in &results.volume {
        assert!(run.passed, "{run:#?}");
        assert_eq!(run.migrations.len(), 4, "0004–0007: {run:#?}");
    }
    let postgres = &results.volume[0];
    let tenant_id = postgres
        .migrations
        .iter()
        .find(|m| m.file.contains("0005_add_tenant_id"))
        .unwrap();
    assert_eq!(
        tenant_id.strongest_lock.as_deref(),
        Some("AccessExclusiveLock")
    );
    assert!(tenant_id.lock_held_seconds.unwrap() > 0.0);

    // Three tenant schemas, nothing pending and one trivial migration, 1 and 2 jobs.
    assert_eq!(results.tenants.len(), 4, "{:#?}", results.tenants);
    assert!(
        results.tenants.iter().all(|r| r.ok && r.schemas == 3),
        "{:#?}",
        results.tenants
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bench.json_path()).unwrap()).unwrap();
    assert_eq!(
        json["measurements"].as_array().unwrap().len(),
        results.measurements.len()
    );
    assert_eq!(json["tenants"].as_array().unwrap().len(), 4);
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    let table = results.render();
    assert!(
        table.contains("a fresh migrated database per test"),
        "{table}"
    );
    assert!(table.contains("bench: "), "{table}");
    let written_to = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        results.verdict().contains(&written_to),
        "the verdict names the JSON it wrote: {}",
        results.verdict()
    );
}

/// A history of the app's migrations and ten generated ones passes `migrate-test`, timed,
/// with each pass's cost per migration on each backend.
#[test]
fn the_history_section_times_migrate_test_of_a_generated_history_per_pass() {
    let dir = tempfile::tempdir().unwrap();
    let bench = small(vec![Section::History], &dir);
    let results = bench.run(&tenantgate_tests::demo_project()).unwrap();
    let whole = results
        .measurements
        .iter()
        .find(|m| m.section == Section::History)
        .unwrap_or_else(|| panic!("{:#?}", results.measurements));
    assert!(whole.name.contains("17 migrations"), "{}", whole.name);
    assert_eq!(whole.stats.runs, 1);
    assert_eq!(results.history.len(), 4, "{:#?}", results.history);
    for pass in &results.history {
        assert_eq!(pass.migrations, 17, "{pass:#?}");
        assert!(
            pass.seconds > 0.0 && pass.per_migration_ms > 0.0,
            "{pass:#?}"
        );
    }
    assert!(
        results
            .targets
            .iter()
            .any(|t| t.target.starts_with("migrate-test of 17 migrations")),
        "{:#?}",
        results.targets
    );
    assert!(results.render().contains("per migration"));
}

#[test]
fn bad_flags_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut bench = small(vec![Section::Template], &dir);
    bench.runs = 0;
    let error = bench
        .run(&tenantgate_tests::demo_project())
        .unwrap_err()
        .to_string();
    assert!(error.contains("--runs must be at least 1"), "{error}");
    let mut bench = small(vec![Section::Volume], &dir);
    bench.rows = vec![0];
    let error = bench
        .run(&tenantgate_tests::demo_project())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("--rows takes positive row counts"),
        "{error}"
    );
}
