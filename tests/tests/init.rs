//! `cargo xtask init` on the example apps' migrations alone (no configuration, no lock
//! files, no snapshots): the configuration it writes passes `migrate-test` once the
//! reasons it leaves empty are written, and it says what it could not decide.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use tenantgate::Config;
use tenantgate_tests::{EXAMPLES, copy_dir, example_dir};

/// The harness's command line as an adopting workspace's xtask has it (no embedded app),
/// run in `dir`.
fn xtask(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bare_xtask"))
        .args(args)
        .current_dir(dir)
        .env("CI", "true")
        .output()
        .expect("run the xtask")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A folder holding only the example's migrations (and its sqlx.toml, which is the app's).
fn migrations_only(name: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("tenantgate-init-{name}-"))
        .tempdir()
        .unwrap();
    let source = example_dir(name);
    copy_dir(&source.join("migrations"), &dir.path().join("migrations")).unwrap();
    if source.join("sqlx.toml").is_file() {
        std::fs::copy(source.join("sqlx.toml"), dir.path().join("sqlx.toml")).unwrap();
    }
    for lock in walk(dir.path()).filter(|p| p.ends_with("tenantgate.sum")) {
        std::fs::remove_file(lock).unwrap();
    }
    dir
}

fn walk(dir: &Path) -> impl Iterator<Item = std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found.into_iter()
}

#[test]
fn init_writes_a_configuration_that_passes_once_the_reasons_are_written() {
    for name in EXAMPLES {
        let dir = migrations_only(name);
        let started = Instant::now();
        let init = xtask(dir.path(), &["init"]);
        assert!(
            init.status.success(),
            "{name}: init failed:\n{}",
            text(&init)
        );
        let written = dir.path().join("tenantgate.toml");
        let config_text = std::fs::read_to_string(&written).unwrap();
        let original = Config::load(&example_dir(name).join("tenantgate.toml")).unwrap();

        // What init inferred is what the example's authors wrote.
        let inferred = config_text.replace("reason = \"\"", "reason = \"written by the test\"");
        let inferred = inferred.replace(
            "row_level_security_reason = \"\"",
            "row_level_security_reason = \"written by the test\"",
        );
        std::fs::write(&written, &inferred).unwrap();
        let config = Config::load(&written).unwrap_or_else(|e| panic!("{name}: {e:#}\n{inferred}"));
        assert_eq!(config.tenancy.column, original.tenancy.column, "{name}");
        assert!(
            tenantgate::config::same_table(
                &config.tenancy.tenants_table,
                &original.tenancy.tenants_table
            ),
            "{name}: {}",
            config.tenancy.tenants_table
        );
        assert_eq!(config.backends(), original.backends(), "{name}");
        assert_eq!(
            config.row_level_security().map(|r| r.app_role.clone()),
            original.row_level_security().map(|r| r.app_role.clone()),
            "{name}"
        );
        for global in &original.global_tables {
            assert!(
                config.is_global(&global.name),
                "{name}: `{}` is not declared global:\n{inferred}",
                global.name
            );
        }
        for table in &original.tables {
            assert_eq!(
                config
                    .owner_of(&table.name)
                    .and_then(|t| t.owned_through.clone()),
                table.owned_through,
                "{name}: `{}`",
                table.name
            );
        }
        // Init locked the migrations and took the snapshots.
        for backend in config.backends() {
            let folder = config.migrations_dir(backend).unwrap();
            assert!(
                folder.join("tenantgate.sum").is_file(),
                "{name}: no lock file"
            );
            assert!(
                config
                    .migrations
                    .snapshots
                    .join(format!("{backend}.snap"))
                    .is_file(),
                "{name}: no {backend} snapshot"
            );
        }

        let test = xtask(dir.path(), &["migrate-test"]);
        let output = text(&test);
        assert!(
            test.status.success(),
            "{name}: migrate-test failed:\n{output}"
        );
        assert!(output.contains("migrate-test: PASS"), "{name}:\n{output}");
        assert!(
            output.contains("cases") && !output.contains(" 0 passed"),
            "{name}: no isolation case ran:\n{output}"
        );
        eprintln!(
            "{name}: init to first PASS in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn init_lists_what_only_a_person_can_write_and_the_gate_refuses_it_unwritten() {
    let dir = migrations_only("adopted-history");
    let init = xtask(dir.path(), &["init"]);
    let output = text(&init);
    assert!(init.status.success(), "{output}");
    assert!(
        output.contains("[[global_tables]] `plans`") && output.contains("`legacy_rates`"),
        "{output}"
    );
    let refused = xtask(dir.path(), &["migrate-test"]);
    let output = text(&refused);
    assert!(!refused.status.success(), "{output}");
    assert!(output.contains("needs a one-line `reason`"), "{output}");

    let again = xtask(dir.path(), &["init"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("pass --force"), "{}", text(&again));
}

#[test]
fn init_on_a_folder_it_cannot_read_says_which_file_or_what_to_pass() {
    let dir = migrations_only("born-multitenant");
    std::fs::write(
        dir.path().join("migrations/0003_add_tags.sql.bak"),
        "CREATE TABLE tags (id bigint);",
    )
    .unwrap();
    std::fs::write(
        dir.path()
            .join("migrations/20261201093000123456_add_tags.up.sql"),
        "SELECT 1;",
    )
    .unwrap();
    let bad = xtask(dir.path(), &["init"]);
    let output = text(&bad);
    assert!(!bad.status.success(), "{output}");
    assert!(output.contains("0003_add_tags.sql.bak"), "{output}");
    assert!(
        output.contains("20261201093000123456_add_tags.up.sql"),
        "{output}"
    );
    assert!(!dir.path().join("tenantgate.toml").exists());

    let flat = tempfile::tempdir().unwrap();
    std::fs::create_dir(flat.path().join("migrations")).unwrap();
    std::fs::write(
        flat.path().join("migrations/0001_notes.sql"),
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text);",
    )
    .unwrap();
    let untenanted = xtask(flat.path(), &["init"]);
    let output = text(&untenanted);
    assert!(!untenanted.status.success(), "{output}");
    assert!(output.contains("--column"), "{output}");
    assert!(!flat.path().join("tenantgate.toml").exists());
}
