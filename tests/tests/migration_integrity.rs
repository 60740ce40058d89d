//! The lock files, backend parity and `new-migration`, on scratch copies of the
//! repository's migrations (no database needed: these run before one exists).

use tenantgate::Backend;
use tenantgate_harness::folder::{Folder, create_migration};
use tenantgate_harness::lock;
use tenantgate_tests::{Scratch, assert_fails_with, failures, rehearse};

fn integrity(scratch: &Scratch, backend: Backend) -> lock::Integrity {
    lock::check(&Folder::read(&scratch.migrations_dir(backend)).unwrap())
}

/// Every integrity failure message, one string each.
fn messages(integrity: &lock::Integrity) -> Vec<String> {
    integrity.failures.iter().map(|f| f.render()).collect()
}

fn assert_reported(integrity: &lock::Integrity, needles: &[&str]) {
    let messages = messages(integrity);
    assert!(
        messages
            .iter()
            .any(|m| needles.iter().all(|n| m.contains(n))),
        "expected a failure containing {needles:?}, got {messages:#?}"
    );
}

#[test]
fn the_repository_lock_files_are_current() {
    let config = tenantgate::config::Config::load(&tenantgate_tests::demo_config_path()).unwrap();
    let mut stale = Vec::new();
    for backend in Backend::ALL {
        let folder = Folder::read(config.migrations_dir(backend).unwrap()).unwrap();
        let on_disk = std::fs::read_to_string(lock::path(&folder.dir)).unwrap_or_default();
        if on_disk != lock::render(&folder) {
            stale.push(backend.name());
        }
        let integrity = lock::check(&folder);
        assert!(integrity.failures.is_empty(), "{:#?}", messages(&integrity));
    }
    assert!(
        stale.is_empty(),
        "stale lock files for {stale:?}: run `cargo xtask migrations lock` and commit them"
    );
}

#[test]
fn an_edited_locked_migration_is_refused() {
    let scratch = Scratch::new().unwrap();
    scratch
        .edit(
            Backend::Postgres,
            "0003_create_service_desk.up.sql",
            "description TEXT NOT NULL",
            "description TEXT",
        )
        .unwrap();
    assert_reported(
        &integrity(&scratch, Backend::Postgres),
        &[
            "0003_create_service_desk.up.sql",
            "has been modified",
            "previously applied",
            "cargo xtask new-migration",
        ],
    );
    assert!(integrity(&scratch, Backend::Sqlite).failures.is_empty());
}

#[test]
fn a_deleted_locked_migration_is_refused() {
    let scratch = Scratch::new().unwrap();
    let dir = scratch.migrations_dir(Backend::Sqlite);
    for suffix in ["up", "down"] {
        std::fs::remove_file(dir.join(format!("0007_enable_row_level_security.{suffix}.sql")))
            .unwrap();
    }
    assert_reported(
        &integrity(&scratch, Backend::Sqlite),
        &["0007_enable_row_level_security.up.sql", "was deleted"],
    );
}

#[test]
fn a_renamed_or_renumbered_locked_migration_is_refused() {
    let scratch = Scratch::new().unwrap();
    let dir = scratch.migrations_dir(Backend::Postgres);
    for suffix in ["up", "down"] {
        std::fs::rename(
            dir.join(format!("0007_enable_row_level_security.{suffix}.sql")),
            dir.join(format!("0007_enable_rls.{suffix}.sql")),
        )
        .unwrap();
    }
    assert_reported(
        &integrity(&scratch, Backend::Postgres),
        &[
            "0007_enable_row_level_security",
            "was renamed",
            "0007_enable_rls",
        ],
    );
    for suffix in ["up", "down"] {
        std::fs::rename(
            dir.join(format!("0007_enable_rls.{suffix}.sql")),
            dir.join(format!("0009_enable_row_level_security.{suffix}.sql")),
        )
        .unwrap();
    }
    assert_reported(
        &integrity(&scratch, Backend::Postgres),
        &[
            "0007_enable_row_level_security",
            "was renumbered to",
            "0009_",
        ],
    );
}

#[test]
fn two_branches_adding_the_same_version_are_refused() {
    let scratch = Scratch::new().unwrap();
    for name in ["add_loyalty", "add_reviews"] {
        scratch
            .add_migration(
                Backend::Postgres,
                "0008",
                name,
                "SELECT 1;\n",
                "SELECT 1;\n",
            )
            .unwrap();
    }
    let found = integrity(&scratch, Backend::Postgres);
    assert_reported(
        &found,
        &[
            "two migrations have version 8",
            "0008_add_loyalty.up.sql",
            "0008_add_reviews.up.sql",
        ],
    );
    // Locking refuses to paper over it.
    let folder = Folder::read(&scratch.migrations_dir(Backend::Postgres)).unwrap();
    let error = lock::write(&folder).unwrap_err().to_string();
    assert!(error.contains("renumber it before locking"), "{error}");
}

#[test]
fn a_migration_older_than_the_newest_locked_one_is_out_of_order() {
    let scratch = Scratch::new().unwrap();
    // main locked 0009; this branch still carries its 0008.
    scratch
        .add_migration(
            Backend::Sqlite,
            "0009",
            "from_main",
            "SELECT 1;\n",
            "SELECT 1;\n",
        )
        .unwrap();
    lock::write(&Folder::read(&scratch.migrations_dir(Backend::Sqlite)).unwrap()).unwrap();
    scratch
        .add_migration(
            Backend::Sqlite,
            "0008",
            "from_branch",
            "SELECT 2;\n",
            "SELECT 1;\n",
        )
        .unwrap();
    let found = integrity(&scratch, Backend::Sqlite);
    assert_reported(
        &found,
        &[
            "0008_from_branch.up.sql",
            "out of order",
            "newest locked migration (9)",
            "renumber it after 9",
        ],
    );
    assert!(
        found.new.is_empty(),
        "an out-of-order migration is not new work"
    );
}

#[test]
fn a_stale_or_conflicted_or_missing_lock_file_is_refused() {
    let scratch = Scratch::new().unwrap();
    let path = lock::path(&scratch.migrations_dir(Backend::Postgres));
    let text = std::fs::read_to_string(&path).unwrap();
    // A hand edit of one entry.
    let edited = text.replacen("sha384:4", "sha384:5", 1);
    assert_ne!(edited, text);
    std::fs::write(&path, &edited).unwrap();
    assert_reported(
        &integrity(&scratch, Backend::Postgres),
        &["tenantgate.sum is stale", "cargo xtask migrations lock"],
    );
    // A merge conflict left in the file.
    std::fs::write(
        &path,
        text.replacen(
            "0007_",
            "<<<<<<< HEAD\n0008_a sha384:00\n=======\n0008_b sha384:11\n>>>>>>> branch\n0007_",
            1,
        ),
    )
    .unwrap();
    assert_reported(
        &integrity(&scratch, Backend::Postgres),
        &["has a merge conflict", "renumber"],
    );
    // No lock file at all: every migration is new work, and the fix is named.
    std::fs::remove_file(&path).unwrap();
    let found = integrity(&scratch, Backend::Postgres);
    assert_reported(&found, &["cannot be read", "cargo xtask migrations lock"]);
    assert_eq!(found.new.len(), 7);
}

#[test]
fn a_migration_on_one_backend_only_breaks_parity_unless_exempted() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "add_pg_trgm",
            "CREATE EXTENSION IF NOT EXISTS pg_trgm;\n",
            "DROP EXTENSION IF EXISTS pg_trgm;\n",
        )
        .unwrap();
    let config = scratch.config().unwrap();
    let postgres = Folder::read(&scratch.migrations_dir(Backend::Postgres)).unwrap();
    let sqlite = Folder::read(&scratch.migrations_dir(Backend::Sqlite)).unwrap();
    let found = tenantgate_harness::parity::check(&config, Backend::Postgres, &postgres, &sqlite);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .render()
            .contains("0008_add_pg_trgm.up.sql has no sqlite counterpart")
    );
    assert!(found[0].render().contains("[[parity_exemptions]]"));

    scratch
        .exempt_from_parity("0008_add_pg_trgm", Backend::Postgres)
        .unwrap();
    let config = scratch.config().unwrap();
    assert!(
        tenantgate_harness::parity::check(&config, Backend::Postgres, &postgres, &sqlite)
            .is_empty()
    );

    // An exemption whose migration is gone is stale.
    for suffix in ["up", "down"] {
        std::fs::remove_file(
            scratch
                .migrations_dir(Backend::Postgres)
                .join(format!("0008_add_pg_trgm.{suffix}.sql")),
        )
        .unwrap();
    }
    let postgres = Folder::read(&scratch.migrations_dir(Backend::Postgres)).unwrap();
    let found = tenantgate_harness::parity::check(&config, Backend::Postgres, &postgres, &sqlite);
    assert!(
        found.iter().any(|f| f.render().contains("is stale")),
        "{found:#?}"
    );
}

#[test]
fn the_same_version_under_two_names_breaks_parity() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "add_notes",
            "SELECT 1;",
            "SELECT 1;",
        )
        .unwrap();
    scratch
        .add_migration(
            Backend::Sqlite,
            "0008",
            "add_note",
            "SELECT 1;",
            "SELECT 1;",
        )
        .unwrap();
    let config = scratch.config().unwrap();
    let postgres = Folder::read(&scratch.migrations_dir(Backend::Postgres)).unwrap();
    let sqlite = Folder::read(&scratch.migrations_dir(Backend::Sqlite)).unwrap();
    let found = tenantgate_harness::parity::check(&config, Backend::Sqlite, &sqlite, &postgres);
    assert!(
        found
            .iter()
            .any(|f| f.render().contains("share version 8 but not a name")),
        "{found:#?}"
    );
}

#[test]
fn new_migration_creates_the_pair_in_both_folders_with_the_next_version() {
    let scratch = Scratch::new().unwrap();
    let dirs = [
        scratch.migrations_dir(Backend::Postgres),
        scratch.migrations_dir(Backend::Sqlite),
    ];
    let dirs: Vec<&std::path::Path> = dirs.iter().map(|d| d.as_path()).collect();
    let created = create_migration(&dirs, "add_loyalty_cards").unwrap();
    let names: Vec<String> = created
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "0008_add_loyalty_cards.up.sql",
            "0008_add_loyalty_cards.down.sql",
            "0008_add_loyalty_cards.up.sql",
            "0008_add_loyalty_cards.down.sql",
        ]
    );
    // New work: not locked, in parity, and the linter asks for a real down migration.
    let config = scratch.config().unwrap();
    for backend in Backend::ALL {
        let folder = Folder::read(&scratch.migrations_dir(backend)).unwrap();
        let found = lock::check(&folder);
        assert!(found.failures.is_empty(), "{:#?}", messages(&found));
        assert_eq!(found.new.len(), 1);
        let findings =
            tenantgate_harness::lint::lint_migration(&config, backend, &folder, &found.new[0]);
        assert!(
            findings.iter().any(|f| f.rule == "missing-down-migration"),
            "{findings:#?}"
        );
    }
    // The next one gets the next version; a taken name or a bad one is refused.
    let next = create_migration(&dirs, "add_reviews").unwrap();
    assert!(next[0].ends_with("0009_add_reviews.up.sql"), "{next:?}");
    let taken = create_migration(&dirs, "add_reviews")
        .unwrap_err()
        .to_string();
    assert!(taken.contains("already exists"), "{taken}");
    let bad = create_migration(&dirs, "Add Reviews")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("not a migration name"), "{bad}");
}

#[tokio::test]
async fn migrate_test_reports_integrity_parity_and_lint_per_backend() {
    let scratch = Scratch::new().unwrap();
    // A new PostgreSQL-only migration with an unsafe statement, and an edited locked one.
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "rename_number",
            "ALTER TABLE orders RENAME COLUMN number TO order_number;\n",
            "ALTER TABLE orders RENAME COLUMN order_number TO number;\n",
        )
        .unwrap();
    scratch
        .edit(
            Backend::Sqlite,
            "0001_create_catalog.up.sql",
            "-- ",
            "-- edited: ",
        )
        .unwrap();
    let reports = rehearse(&scratch.config().unwrap(), &Backend::ALL).await;
    let postgres = &reports[0];
    assert_fails_with(
        postgres,
        "lint",
        &["0008_rename_number.up.sql:1", "renaming-column"],
    );
    assert_fails_with(
        postgres,
        "parity",
        &["0008_rename_number.up.sql", "no sqlite counterpart"],
    );
    let sqlite = &reports[1];
    assert_fails_with(
        sqlite,
        "integrity",
        &["0001_create_catalog.up.sql", "has been modified"],
    );
    assert!(
        !failures(sqlite).iter().any(|f| f.starts_with("lint:")),
        "{:#?}",
        failures(sqlite)
    );
    let table = tenantgate_harness::report::safety_table(&reports);
    assert!(table.contains("integrity"), "{table}");
    let postgres_row = table.lines().find(|l| l.starts_with("postgres")).unwrap();
    assert!(
        postgres_row.contains("FAIL: 1 finding(s) in 1 new file(s)"),
        "{table}"
    );
}
