//! Invariants of the repository, enforced by plain `cargo test`.

use tenantgate::Backend;
use tenantgate::config::Config;
use tenantgate_harness::migration_set::{MigrationSet, compare_with_embedded};
use tenantgate_tests::Scratch;

fn demo_dir(backend: Backend) -> std::path::PathBuf {
    Config::load(&tenantgate_tests::demo_config_path())
        .unwrap()
        .migrations_dir(backend)
        .unwrap()
        .to_path_buf()
}

#[tokio::test]
async fn the_embedded_migrations_are_the_files_on_disk() {
    let config = Config::load(&tenantgate_tests::demo_config_path()).unwrap();
    for backend in Backend::ALL {
        let set = MigrationSet::load(&config, backend, Some(&app::TENANTGATE))
            .await
            .unwrap();
        assert!(
            set.embedded,
            "{backend}: the harness must use the migrator embedded in app"
        );
        assert_eq!(set.ups().count(), 7);
    }
}

#[tokio::test]
async fn an_edited_file_is_named_when_it_differs_from_the_embedded_copy() {
    let scratch = Scratch::new().unwrap();
    scratch
        .edit(
            Backend::Postgres,
            "0002_create_sales.up.sql",
            "CREATE TABLE promotions",
            "CREATE TABLE promos",
        )
        .unwrap();
    std::fs::remove_file(
        scratch
            .migrations_dir(Backend::Postgres)
            .join("0007_enable_row_level_security.down.sql"),
    )
    .unwrap();
    let error = compare_with_embedded(
        &scratch.config().unwrap(),
        Backend::Postgres,
        &app::TENANTGATE,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("0002_create_sales.up.sql differs from the copy embedded in the app"),
        "{error}"
    );
    assert!(
        error.contains("embedded in the app but no longer on disk"),
        "{error}"
    );
    assert!(error.contains("rebuild the app (`cargo build`)"), "{error}");
}

#[test]
fn both_backends_carry_the_same_versions_and_names() {
    let names = |backend: Backend| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(demo_dir(backend))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(Backend::Postgres), names(Backend::Sqlite));
}

#[test]
fn every_migration_has_a_non_empty_down_migration() {
    let mut missing = Vec::new();
    for backend in Backend::ALL {
        for entry in std::fs::read_dir(demo_dir(backend)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".up.sql") {
                let down = path.with_file_name(format!("{stem}.down.sql"));
                if std::fs::read_to_string(&down)
                    .map(|t| t.trim().is_empty())
                    .unwrap_or(true)
                {
                    missing.push(down.display().to_string());
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "missing or empty down migrations: {missing:#?}"
    );
}

#[test]
fn a_bad_configuration_says_what_is_wrong() {
    let scratch = Scratch::new().unwrap();
    let path = scratch.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("column = \"tenant_id\"", "colum = \"tenant_id\""),
    )
    .unwrap();
    let error = format!("{:#}", Config::load(&path).unwrap_err());
    assert!(
        error.contains("tenantgate.toml is not a valid Tenantgate configuration"),
        "{error}"
    );
    assert!(error.contains("colum"), "{error}");

    std::fs::write(
        &path,
        text.replace(
            "seed = \"../tests/fixtures/seed.sql\"",
            "seed = \"nowhere.sql\"",
        ),
    )
    .unwrap();
    let error = format!("{:#}", Config::load(&path).unwrap_err());
    assert!(
        error.contains("`fixtures.seed` names") && error.contains("nowhere.sql"),
        "{error}"
    );
}

/// The dependency direction: app → runtime; xtask → harness → runtime; nothing → the demo.
#[test]
fn the_libraries_depend_on_neither_the_demo_app_nor_each_other_backwards() {
    let root = tenantgate_harness::workspace::root();
    let dependencies = |crate_dir: &str| -> Vec<String> {
        let text = std::fs::read_to_string(root.join(crate_dir).join("Cargo.toml")).unwrap();
        let manifest: toml::Table = text.parse().unwrap();
        ["dependencies", "dev-dependencies", "build-dependencies"]
            .iter()
            .filter_map(|section| manifest.get(*section).and_then(|d| d.as_table()))
            .flat_map(|table| table.keys().cloned())
            .collect()
    };
    let runtime = dependencies("crates/tenantgate");
    let harness = dependencies("crates/tenantgate-harness");
    assert!(
        !runtime
            .iter()
            .any(|d| d == "app" || d == "tenantgate-harness"),
        "{runtime:?}"
    );
    assert!(!harness.iter().any(|d| d == "app"), "{harness:?}");
    assert!(harness.iter().any(|d| d == "tenantgate"), "{harness:?}");
}

/// Both libraries are publishable: `cargo package` takes each with its README, and
/// nothing of this repository's demo.
#[test]
fn both_libraries_package_with_their_readme() {
    let output = tenantgate_harness::workspace::cargo()
        .args([
            "package",
            "-p",
            "tenantgate",
            "-p",
            "tenantgate-harness",
            "--allow-dirty",
            "--list",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{listing}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(listing.matches("README.md").count() >= 2, "{listing}");
    assert!(
        listing.lines().any(|l| l == "src/init/infer.rs"),
        "{listing}"
    );
    assert!(!listing.contains("migrations/"), "{listing}");
}
