//! A team adopts Tenantgate in a brand-new workspace, as README.md's guide says: its own
//! app crate (`ledger`) and migrations, an xtask of a few lines depending on the harness
//! by path, `cargo xtask init`, the app embedding what init wrote, then `cargo xtask
//! migrate-test` passing, and failing with the table named once a migration forgets the
//! tenant column.
//!
//! The workspace builds in this repository's target directory with its Cargo.lock and
//! profiles, so the dependencies compiled for the tests are reused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const XTASK_WITHOUT_APP: &str = r#"//! This workspace's migration harness: `cargo xtask init`, `migrate-test`, `release`.
fn main() -> std::process::ExitCode {
    tenantgate_harness::main(tenantgate_harness::Project {
        package: "ledger",
        config: "tenantgate.toml",
        app: None,
        api: None,
    })
}
"#;

const LIB_RS: &str = r#"//! Ledger: invoices per organization.

/// The migrations, embedded.
pub static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// What the app hands Tenantgate: its migrations, snapshot and configuration.
pub static TENANTGATE: tenantgate::App = tenantgate::App {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    config: include_str!("../../tenantgate.toml"),
    postgres: Some(tenantgate::Embedded {
        migrator: &POSTGRES,
        snapshot: Some(include_str!("../../snapshots/postgres.snap")),
    }),
    sqlite: None,
};
"#;

const MIGRATIONS: [(&str, &str); 4] = [
    (
        "0001_create_orgs.up.sql",
        "CREATE TABLE orgs (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL UNIQUE);\n\
         CREATE TABLE currencies (code text PRIMARY KEY, name text NOT NULL);\n\
         DO $$ BEGIN CREATE ROLE ledger_app NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n\
         GRANT SELECT ON orgs, currencies TO ledger_app;\n",
    ),
    (
        "0001_create_orgs.down.sql",
        "DROP TABLE currencies;\nDROP TABLE orgs;\n",
    ),
    (
        "0002_create_invoices.up.sql",
        "CREATE TABLE invoices (\n\
         \x20   org_id uuid NOT NULL REFERENCES orgs (id),\n\
         \x20   id bigint GENERATED ALWAYS AS IDENTITY,\n\
         \x20   number text NOT NULL,\n\
         \x20   currency text NOT NULL REFERENCES currencies (code),\n\
         \x20   PRIMARY KEY (org_id, id),\n\
         \x20   UNIQUE (org_id, number)\n\
         );\n\
         ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE invoices FORCE ROW LEVEL SECURITY;\n\
         CREATE POLICY invoices_by_org ON invoices\n\
         \x20   USING (org_id = NULLIF(current_setting('ledger.org', true), '')::uuid)\n\
         \x20   WITH CHECK (org_id = NULLIF(current_setting('ledger.org', true), '')::uuid);\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON invoices TO ledger_app;\n",
    ),
    ("0002_create_invoices.down.sql", "DROP TABLE invoices;\n"),
];

/// The workspace's files, as README.md's guide writes them.
fn write_workspace(dir: &Path, repository: &Path) {
    let path = |p: &Path| p.display().to_string().replace('\\', "/");
    let main_manifest = std::fs::read_to_string(repository.join("Cargo.toml")).unwrap();
    // The repository's profiles, so that the shared target directory's builds are reused
    // (a test economy, not a step of the guide); the two libraries, members there, keep
    // their member settings here (`-O0`, which the dependencies' `-O1` would otherwise
    // give them: compiling them again took 90 s). For the same reason its xtask asks for the runtime's
    // `failpoints` feature, as this repository's does (xtask/Cargo.toml).
    let profiles = &main_manifest[main_manifest.find("[profile.dev]").unwrap()..];
    let files = [
        (
            "Cargo.toml",
            format!(
                "[workspace]\nresolver = \"3\"\nmembers = [\"ledger\", \"xtask\"]\n\n{profiles}\n\
                 [profile.dev.package.tenantgate]\ndebug = \"line-tables-only\"\nopt-level = 0\n\n\
                 [profile.dev.package.tenantgate-harness]\ndebug = \"line-tables-only\"\nopt-level = 0\n"
            ),
        ),
        (
            ".cargo/config.toml",
            "[alias]\nxtask = \"run --quiet --package xtask --\"\n".to_string(),
        ),
        (
            "ledger/Cargo.toml",
            format!(
                "[package]\nname = \"ledger\"\nversion = \"0.3.0\"\nedition = \"2024\"\n\n[dependencies]\n\
                 tenantgate = {{ path = \"{}\" }}\n\
                 sqlx = {{ version = \"0.9.0\", default-features = false, features = [\"postgres\", \"migrate\", \"macros\"] }}\n",
                path(&repository.join("crates/tenantgate"))
            ),
        ),
        (
            "ledger/build.rs",
            "fn main() {\n    println!(\"cargo:rerun-if-changed=../migrations\");\n}\n".to_string(),
        ),
        ("ledger/src/lib.rs", "//! Ledger: invoices per organization.\n".to_string()),
        (
            "ledger/src/main.rs",
            "fn main() -> std::process::ExitCode {\n    tenantgate::cli::main(&ledger::TENANTGATE)\n}\n"
                .to_string(),
        ),
        (
            "xtask/Cargo.toml",
            format!(
                // Its binary is named apart from this repository's `xtask`: the two share
                // a target directory, where `target/debug/xtask` is one file.
                "[package]\nname = \"xtask\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
                 [[bin]]\nname = \"ledger-xtask\"\npath = \"src/main.rs\"\n\n[dependencies]\n\
                 ledger = {{ path = \"../ledger\" }}\n\
                 tenantgate-harness = {{ path = \"{}\" }}\n\
                 # A test economy, as this repository's xtask does: the tests' features.\n\
                 tenantgate = {{ path = \"{}\", features = [\"failpoints\"] }}\n",
                path(&repository.join("crates/tenantgate-harness")),
                path(&repository.join("crates/tenantgate"))
            ),
        ),
        ("xtask/src/main.rs", XTASK_WITHOUT_APP.to_string()),
    ];
    for (file, text) in files {
        let target = dir.join(file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, text).unwrap();
    }
    std::fs::create_dir_all(dir.join("migrations")).unwrap();
    for (file, sql) in MIGRATIONS {
        std::fs::write(dir.join("migrations").join(file), sql).unwrap();
    }
    std::fs::copy(repository.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
}

fn target_dir(repository: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository.join("target"))
}

fn cargo_xtask(dir: &Path, repository: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = std::time::Instant::now();
    let mut command = Command::new(cargo);
    tenantgate_harness::workspace::as_the_developer_runs_it(&mut command);
    let output = command
        .arg("xtask")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir(repository))
        .env("CARGO_NET_OFFLINE", "true")
        .env("CI", "true")
        .output()
        .expect("run cargo xtask");
    eprintln!(
        "cargo xtask {}: {:.1} s",
        args.join(" "),
        started.elapsed().as_secs_f64()
    );
    output
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_new_workspace_adopts_tenantgate_with_init_and_a_short_xtask() {
    let repository = tenantgate_harness::workspace::root().to_path_buf();
    let dir = tempfile::Builder::new()
        .prefix("tenantgate-adoption-")
        .tempdir()
        .unwrap();
    let dir = dir.path();
    write_workspace(dir, &repository);
    let xtask_lines = XTASK_WITHOUT_APP.lines().count();
    assert!(xtask_lines <= 30, "the xtask has {xtask_lines} lines");

    // 1. init: the starter configuration, the lock file and the snapshot.
    let init = cargo_xtask(dir, &repository, &["init"]);
    let output = text(&init);
    assert!(init.status.success(), "init failed:\n{output}");
    assert!(output.contains("`currencies`"), "{output}");
    let config = dir.join("tenantgate.toml");
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("column = \"org_id\""), "{written}");
    assert!(written.contains("app_role = \"ledger_app\""), "{written}");
    std::fs::write(
        &config,
        written.replace(
            "reason = \"\"",
            "reason = \"ISO 4217 codes, the same for every organization\"",
        ),
    )
    .unwrap();
    assert!(dir.join("snapshots/postgres.snap").is_file());
    assert!(dir.join("migrations/tenantgate.sum").is_file());

    // 2. The app embeds what init wrote; the xtask hands it to the harness.
    std::fs::write(dir.join("ledger/src/lib.rs"), LIB_RS).unwrap();
    let xtask = XTASK_WITHOUT_APP.replace("app: None", "app: Some(&ledger::TENANTGATE)");
    std::fs::write(dir.join("xtask/src/main.rs"), &xtask).unwrap();
    let passed = cargo_xtask(dir, &repository, &["migrate-test"]);
    let output = text(&passed);
    assert!(passed.status.success(), "migrate-test failed:\n{output}");
    assert!(output.contains("migrate-test: PASS"), "{output}");

    // 3. A migration that forgets the tenant column fails, naming the table and file.
    std::fs::write(
        dir.join("migrations/0003_create_payments.up.sql"),
        "CREATE TABLE payments (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, amount_cents bigint NOT NULL);\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("migrations/0003_create_payments.down.sql"),
        "DROP TABLE payments;\n",
    )
    .unwrap();
    let failed = cargo_xtask(dir, &repository, &["migrate-test"]);
    let output = text(&failed);
    assert!(!failed.status.success(), "{output}");
    assert!(
        output.lines().any(|l| l.contains("tenant-column")
            && l.contains("`payments`")
            && l.contains("0003_create_payments.up.sql")),
        "{output}"
    );
    assert!(output.contains("migrate-test: FAIL"), "{output}");
    eprintln!("the adopting workspace's xtask: {xtask_lines} lines");
}
