//! The reversibility pass on real databases: up → down must restore the schema exactly and
//! keep every row, then up runs again; and `--rows N` volume on both backends.

use tenantgate::Backend;
use tenantgate_harness::rehearsal::{BackendReport, Options};
use tenantgate_tests::{
    Scratch, assert_fails_with, assert_notes, failures, own_server, rehearse, rehearse_app_on,
    rehearse_with, scratch_app,
};

/// Adds migration 0008 to both backends.
fn add_both(scratch: &Scratch, name: &str, up: &str, down: &str) {
    add_version(scratch, "0008", name, up, down);
}

/// Declares `tables` in the scratch configuration as global (a test's reference data).
fn declare_global(scratch: &Scratch, tables: &[&str]) {
    for table in tables {
        scratch
            .append_config(&format!(
                "[[global_tables]]\nname = \"{table}\"\nreason = \"a test's reference data\"\n"
            ))
            .unwrap();
    }
}

fn failed_checks(report: &BackendReport) -> Vec<&'static str> {
    report
        .checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name)
        .collect()
}

#[tokio::test]
async fn the_repository_migrations_reverse_cleanly_on_both_backends() {
    let config = tenantgate::config::Config::load(&tenantgate_tests::demo_config_path()).unwrap();
    for report in rehearse(&config, &Backend::ALL).await {
        let outcome = report
            .checks
            .iter()
            .find(|c| c.name == "reversibility")
            .expect("the pass runs by default");
        assert_eq!(outcome.checked, 7, "{}", report.backend);
        assert!(
            report.passed(),
            "{}: {:#?}",
            report.backend,
            failures(&report)
        );
    }
}

#[tokio::test]
async fn a_down_migration_that_leaves_a_column_behind_fails_with_the_diff() {
    let scratch = Scratch::new().unwrap();
    add_both(
        &scratch,
        "add_store_notes",
        "ALTER TABLE stores ADD COLUMN notes TEXT;\nALTER TABLE stores ADD COLUMN region TEXT;\n",
        "ALTER TABLE stores DROP COLUMN notes;\n",
    );
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert_fails_with(
            &report,
            "reversibility",
            &[
                "0008_add_store_notes.down.sql",
                "does not restore the schema as it was before",
                "0008_add_store_notes.up.sql",
                "region",
                "--- before the up migration",
            ],
        );
        // The diff shows the column the down migration left behind.
        let failure = report
            .failures()
            .find(|(check, _)| *check == "reversibility")
            .unwrap()
            .1
            .problem
            .clone();
        assert!(
            failure
                .lines()
                .any(|l| l.starts_with('+') && l.contains("region")),
            "{}: {failure}",
            report.backend
        );
        // Up cannot run again over the leftover column: the rehearsal stops and says so,
        // and nothing after it counts (on PostgreSQL the final checks and the cases ran
        // on the other database meanwhile).
        assert_fails_with(
            &report,
            "rehearsal",
            &[
                "0008_add_store_notes.up.sql",
                "applying it again after its down migration",
            ],
        );
        assert!(
            report.check("isolation-behaviour").is_none()
                && report.check("schema-snapshot").is_none(),
            "{}: {:#?}",
            report.backend,
            report.checks.iter().map(|c| c.name).collect::<Vec<_>>()
        );
        assert_eq!(report.steps.len(), 8, "{}", report.backend);
    }
}

const ARCHIVE_UP: &str = "CREATE TABLE gift_cards_archive AS SELECT * FROM gift_cards;
DELETE FROM gift_cards;
";

#[tokio::test]
async fn a_down_migration_that_drops_moved_data_is_caught_by_the_row_counts() {
    let scratch = Scratch::new().unwrap();
    add_both(
        &scratch,
        "archive_gift_cards",
        ARCHIVE_UP,
        "DROP TABLE gift_cards_archive;\n",
    );
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert_fails_with(
            &report,
            "reversibility",
            &[
                "0008_archive_gift_cards.down.sql loses data",
                "`gift_cards` had 60 rows before the up migration, 0 after the down",
                "tenantgate:irreversible",
            ],
        );
    }
}

#[tokio::test]
async fn a_down_migration_that_moves_the_data_back_passes() {
    let scratch = Scratch::new().unwrap();
    add_both(
        &scratch,
        "archive_gift_cards",
        ARCHIVE_UP,
        "INSERT INTO gift_cards SELECT * FROM gift_cards_archive;\nDROP TABLE gift_cards_archive;\n",
    );
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert!(
            !failed_checks(&report).contains(&"reversibility"),
            "{}: {:#?}",
            report.backend,
            failures(&report)
        );
        let outcome = report
            .checks
            .iter()
            .find(|c| c.name == "reversibility")
            .unwrap();
        assert_eq!(outcome.checked, 8);
    }
}

#[tokio::test]
async fn a_migration_marked_irreversible_is_reported_not_failed() {
    let scratch = Scratch::new().unwrap();
    add_both(
        &scratch,
        "archive_gift_cards",
        ARCHIVE_UP,
        "-- tenantgate:irreversible: archived cards are restored by support, by hand\nDROP TABLE gift_cards_archive;\n",
    );
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert!(
            !failed_checks(&report).contains(&"reversibility"),
            "{}: {:#?}",
            report.backend,
            failures(&report)
        );
        assert!(
            report.notes.iter().any(
                |n| n.contains("loses data, as its irreversible marker says")
                    && n.contains("archived cards are restored by support")
            ),
            "{}: {:#?}",
            report.backend,
            report.notes
        );
    }
}

#[tokio::test]
async fn a_missing_down_migration_fails_unless_marked() {
    let scratch = Scratch::new().unwrap();
    add_both(
        &scratch,
        "add_store_notes",
        "ALTER TABLE stores ADD COLUMN notes TEXT;\n",
        "",
    );
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert_fails_with(
            &report,
            "reversibility",
            &[
                "0008_add_store_notes.up.sql has no down migration",
                "tenantgate:irreversible",
            ],
        );
        assert_fails_with(&report, "lint", &["missing-down-migration"]);
    }
    let scratch = Scratch::new().unwrap();
    add_both(
        &scratch,
        "add_store_notes",
        "ALTER TABLE stores ADD COLUMN notes TEXT;\n",
        "-- tenantgate:irreversible: notes are kept forever\n",
    );
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert!(
            !failed_checks(&report).contains(&"reversibility")
                && !failed_checks(&report).contains(&"lint"),
            "{}: {:#?}",
            report.backend,
            failures(&report)
        );
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("marked irreversible (notes are kept forever); not reversed")),
            "{:#?}",
            report.notes
        );
    }
}

#[tokio::test]
async fn generated_volume_passes_every_check_on_both_backends() {
    let config = tenantgate::config::Config::load(&tenantgate_tests::demo_config_path()).unwrap();
    let options = Options {
        rows: 2_000,
        ..Options::default()
    };
    for report in rehearse_with(&config, &Backend::ALL, options).await {
        assert!(
            report.passed(),
            "{}: {:#?}",
            report.backend,
            failures(&report)
        );
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("volume: 2000 generated rows in each of 12 tables")),
            "{:#?}",
            report.notes
        );
        // Every migration was timed at that volume.
        assert_eq!(report.steps.len(), 7);
    }
}

#[tokio::test]
async fn generated_volume_exposes_a_backfill_that_only_covers_the_fixture() {
    // A backfill that only knows the fixture's 400 orders leaves the generated ones
    // without a tenant, which only a rehearsal at volume shows.
    let scratch = Scratch::new().unwrap();
    scratch
        .edit(
            Backend::Sqlite,
            "0005_add_tenant_id.up.sql",
            "UPDATE orders SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');",
            "UPDATE orders SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default') WHERE id <= 400;",
        )
        .unwrap();
    let config = scratch.config().unwrap();
    let plain = rehearse(&config, &[Backend::Sqlite]).await;
    assert!(
        !failed_checks(&plain[0]).contains(&"no-null-tenant"),
        "the fixture alone does not show it: {:#?}",
        failures(&plain[0])
    );
    let options = Options {
        rows: 1_000,
        ..Options::default()
    };
    let at_volume = rehearse_with(&config, &[Backend::Sqlite], options).await;
    assert!(!at_volume[0].passed());
    let all = failures(&at_volume[0]).join("\n");
    assert!(all.contains("orders"), "{all}");
}

/// Every generated row of every table, as text, after `--rows 300` with `seed`.
async fn generated_rows(backend: Backend, seed: u64) -> Vec<String> {
    let config = tenantgate::config::Config::load(&tenantgate_tests::demo_config_path()).unwrap();
    let mut rows = Vec::new();
    tenantgate_tests::with_fresh_database(backend, async |database| {
        let mut conn = tenantgate::db::Conn::connect(backend, &database.url).await?;
        let migrator = app::TENANTGATE.embedded(backend).unwrap().migrator;
        match &mut conn {
            tenantgate::db::Conn::Postgres(c) => migrator.run_to(3, c).await?,
            tenantgate::db::Conn::Sqlite(c) => migrator.run_to(3, c).await?,
        }
        let schema = tenantgate::schema::Schema::read(
            &mut conn,
            "_sqlx_migrations",
            &tenantgate::db::Scope::Database,
        )
        .await?;
        let tables = tenantgate_harness::volume::generate(&mut conn, &config, &schema, 300, seed)
            .await
            .map_err(|failure| anyhow::anyhow!(failure.render()))?;
        for table in tables {
            let columns: Vec<String> = schema.tables[&table]
                .columns
                .iter()
                .map(|c| {
                    format!(
                        "coalesce(CAST({} AS TEXT), 'NULL')",
                        tenantgate::db::quote(&c.name)
                    )
                })
                .collect();
            let sql = format!(
                "SELECT {} FROM {} ORDER BY 1",
                columns.join(" || '|' || "),
                tenantgate::db::quote(&table)
            );
            rows.extend(conn.texts(&sql).await?);
        }
        conn.close().await;
        Ok(())
    })
    .await
    .unwrap();
    rows
}

#[tokio::test]
async fn generated_rows_are_a_function_of_the_seed() {
    for backend in Backend::ALL {
        let first = generated_rows(backend, 7).await;
        assert_eq!(first.len(), 12 * 300, "{backend}");
        assert_eq!(
            first,
            generated_rows(backend, 7).await,
            "{backend}: same seed"
        );
        assert_ne!(
            first,
            generated_rows(backend, 8).await,
            "{backend}: other seed"
        );
    }
}

/// A down that restores the shape but not the data (`UPDATE … SET email = NULL`, down
/// `SELECT 1`) fails naming the table and the column: the pass compares what the tables
/// hold, not only how many rows.
#[tokio::test]
async fn a_down_migration_that_does_not_restore_changed_values_fails_naming_the_column() {
    let scratch = Scratch::new().unwrap();
    add_both(
        &scratch,
        "forget_emails",
        "UPDATE customers SET email = NULL;\n",
        "SELECT 1;\n",
    );
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert_fails_with(
            &report,
            "reversibility",
            &[
                "0008_forget_emails.down.sql loses data",
                "`customers`: column(s) `email` no longer hold the values they held",
            ],
        );
    }
}

/// Adds migration `version` to both backends.
fn add_version(scratch: &Scratch, version: &str, name: &str, up: &str, down: &str) {
    for backend in Backend::ALL {
        scratch
            .add_migration(backend, version, name, up, down)
            .unwrap();
    }
}

/// The pass keeps the digests of a table nothing wrote to since the last read (rows'
/// `xmin` on PostgreSQL, SQLite's update hook): a down migration that changes a table
/// its up never touched must still be caught.
#[tokio::test]
async fn a_down_migration_that_changes_a_table_its_up_never_touched_is_caught() {
    let scratch = Scratch::new().unwrap();
    add_both(
        &scratch,
        "add_store_notes",
        "ALTER TABLE stores ADD COLUMN notes TEXT;\n",
        "ALTER TABLE stores DROP COLUMN notes;\nUPDATE customers SET email = 'lost-' || email;\n",
    );
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert_fails_with(
            &report,
            "reversibility",
            &[
                "0008_add_store_notes.down.sql loses data",
                "`customers`: column(s) `email` no longer hold the values they held",
            ],
        );
    }
}

/// A table rebuilt under another name and renamed back (SQLite's way of changing a
/// table) has new rows the update hook saw under the other name; one whose rows nothing
/// wrote to at all (WITHOUT ROWID, which the hook does not see) is digested every time.
#[tokio::test]
async fn a_table_rebuilt_or_without_rowid_that_a_down_migration_changes_is_caught() {
    let scratch = Scratch::new().unwrap();
    declare_global(&scratch, &["labels", "tags"]);
    for backend in Backend::ALL {
        let without_rowid = if backend == Backend::Sqlite {
            " WITHOUT ROWID"
        } else {
            ""
        };
        scratch
            .add_migration(
                backend,
                "0008",
                "create_labels",
                &format!(
                    "CREATE TABLE labels (id BIGINT PRIMARY KEY, body TEXT NOT NULL);\n\
                     INSERT INTO labels VALUES (1, 'a'), (2, 'b');\n\
                     CREATE TABLE tags (name TEXT PRIMARY KEY){without_rowid};\n\
                     INSERT INTO tags VALUES ('x'), ('y');\n"
                ),
                "DROP TABLE tags;\nDROP TABLE labels;\n",
            )
            .unwrap();
    }
    add_version(
        &scratch,
        "0009",
        "rebuild_labels",
        "ALTER TABLE stores ADD COLUMN region TEXT;\n",
        "ALTER TABLE stores DROP COLUMN region;\n\
         CREATE TABLE labels_new (id BIGINT PRIMARY KEY, body TEXT NOT NULL);\n\
         INSERT INTO labels_new SELECT id, upper(body) FROM labels;\n\
         DROP TABLE labels;\n\
         ALTER TABLE labels_new RENAME TO labels;\n",
    );
    add_version(
        &scratch,
        "0010",
        "shout_tags",
        "ALTER TABLE stores ADD COLUMN zone TEXT;\n",
        "ALTER TABLE stores DROP COLUMN zone;\nUPDATE tags SET name = upper(name);\n",
    );
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert_fails_with(
            &report,
            "reversibility",
            &[
                "0009_rebuild_labels.down.sql loses data",
                "`labels`: column(s) `body` no longer hold the values they held",
            ],
        );
        assert_fails_with(
            &report,
            "reversibility",
            &[
                "0010_shout_tags.down.sql loses data",
                "`tags`: column(s) `name` no longer hold the values they held",
            ],
        );
    }
}

/// Rows changed by a foreign key's action (here ON UPDATE CASCADE into a child the
/// migrations never name) are written rows too: the digests of the child are not reused.
#[tokio::test]
async fn a_down_migration_whose_cascade_changes_a_child_table_is_caught() {
    let scratch = Scratch::new().unwrap();
    declare_global(&scratch, &["kinds", "kind_notes"]);
    add_version(
        &scratch,
        "0008",
        "create_kinds",
        "CREATE TABLE kinds (code TEXT PRIMARY KEY);\n\
         CREATE TABLE kind_notes (id BIGINT PRIMARY KEY, kind TEXT NOT NULL REFERENCES kinds (code) ON UPDATE CASCADE);\n\
         INSERT INTO kinds VALUES ('a'), ('b');\n\
         INSERT INTO kind_notes VALUES (1, 'a'), (2, 'b');\n",
        "DROP TABLE kind_notes;\nDROP TABLE kinds;\n",
    );
    add_version(
        &scratch,
        "0009",
        "recode_kinds",
        "INSERT INTO kinds VALUES ('c');\n",
        "DELETE FROM kinds WHERE code = 'c';\nUPDATE kinds SET code = 'z' WHERE code = 'a';\nINSERT INTO kinds VALUES ('a');\nDELETE FROM kinds WHERE code = 'z' AND NOT EXISTS (SELECT 1 FROM kind_notes WHERE kind = 'z');\n",
    );
    for report in rehearse(&scratch.config().unwrap(), &Backend::ALL).await {
        assert_fails_with(
            &report,
            "reversibility",
            &[
                "0009_recode_kinds.down.sql loses data",
                "`kind_notes`: column(s) `kind` no longer hold the values they held",
            ],
        );
    }
}

/// The note that says `about`, and the four-digit version right after `before` in it.
fn version_in_note(report: &BackendReport, about: &str, before: &str) -> (String, i64) {
    let note = report
        .notes
        .iter()
        .find(|n| n.contains(about))
        .unwrap_or_else(|| panic!("no note about {about:?}: {:#?}", report.notes));
    let version = note
        .split(before)
        .nth(1)
        .and_then(|rest| rest.get(..4))
        .and_then(|version| version.parse().ok())
        .unwrap_or_else(|| panic!("no version after {before:?}: {note}"));
    (note.clone(), version)
}

/// The rehearsal failed and stopped at `file`, its error saying `what`.
fn assert_stops_at(report: &BackendReport, file: &str, what: &str) {
    assert!(!report.passed());
    let fatal = report.fatal.as_ref().expect("the rehearsal stops").render();
    assert!(fatal.contains(file) && fatal.contains(what), "{fatal}");
}

/// Adds `count` migrations from version 0008 to both backends, each creating a global
/// table with a row (dropped by its down); `extra(version)` adds to a migration's up and
/// down.
fn add_fillers(scratch: &Scratch, count: usize, extra: impl Fn(usize) -> (String, String)) {
    let names: Vec<String> = (0..count).map(|i| format!("filler_{i:03}")).collect();
    declare_global(
        scratch,
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for (i, table) in names.iter().enumerate() {
        let version = 8 + i;
        let (up, down) = extra(version);
        add_version(
            scratch,
            &format!("{version:04}"),
            &format!("create_{table}"),
            &format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, label TEXT);\nINSERT INTO {table} VALUES (1, 'one');\n{up}"
            ),
            &format!("DROP TABLE {table};\n{down}"),
        );
    }
}

/// A long PostgreSQL history is rehearsed in two halves on two databases at once: every
/// migration is applied, reversed and checked once, in order, and what a down migration
/// loses is reported whichever half it is in, and the rules run after the steps of both.
#[tokio::test]
async fn a_long_history_in_two_halves_reports_each_migration_once_and_in_order() {
    let scratch = Scratch::new().unwrap();
    add_fillers(&scratch, 44, |version| match version {
        // First half: a down that deletes rows its up never touched.
        10 => (String::new(), "DELETE FROM gift_cards;\n".to_string()),
        // Second half: one that rewrites a column.
        45 => (
            String::new(),
            "UPDATE customers SET email = 'lost-' || email;\n".to_string(),
        ),
        _ => (String::new(), String::new()),
    });
    add_version(
        &scratch,
        "0052",
        "create_unscoped_notes",
        "CREATE TABLE unscoped_notes (id BIGINT PRIMARY KEY, body TEXT);\n",
        "DROP TABLE unscoped_notes;\n",
    );
    let report = rehearse(&scratch.config().unwrap(), &[Backend::Postgres])
        .await
        .remove(0);
    // The first database rehearsed a part with 0010 in it, then applied the rest and
    // ran the cases beside the second's rehearsal of the part with 0045.
    let (note, end) = version_in_note(&report, "rehearsed in two halves at once", "0001–");
    assert!((10..45).contains(&end), "{note}");
    assert!(
        note.contains("ran the final checks and the cases"),
        "{note}"
    );
    assert!(report.isolation_cases > 0);
    let versions: Vec<i64> = report.steps.iter().map(|s| s.version).collect();
    assert_eq!(versions, (1..=52).collect::<Vec<i64>>());
    let outcome = report
        .checks
        .iter()
        .find(|c| c.name == "reversibility")
        .unwrap();
    assert_eq!(outcome.checked, 52);
    assert_fails_with(
        &report,
        "reversibility",
        &[
            "0010_create_filler_002.down.sql loses data",
            "`gift_cards` had 60 rows before the up migration, 0 after the down",
        ],
    );
    assert_fails_with(
        &report,
        "reversibility",
        &[
            "0045_create_filler_037.down.sql loses data",
            "`customers`: column(s) `email` no longer hold the values they held",
        ],
    );
    assert_eq!(outcome.failures.len(), 2, "{:#?}", failures(&report));
    // Every step from the isolation version on was checked, in both halves.
    assert_eq!(report.isolation_steps_checked, 52 - 6);
    assert!(
        failures(&report)
            .iter()
            .any(|f| f.contains("unscoped_notes") && f.contains("0052_create_unscoped_notes")),
        "{:#?}",
        failures(&report)
    );
}

/// A migration of the first half that does not apply again after its down stops the
/// history there, and the second database (which applied it plainly and went on) stops
/// too, its half moot, rather than rehearse it to the end.
#[tokio::test]
async fn a_long_history_stopped_in_its_first_half_stops_the_second_database_too() {
    let scratch = Scratch::new().unwrap();
    add_fillers(&scratch, 44, |version| match version {
        // The down leaves the sequence: the up fails when it runs again.
        10 => (
            "CREATE SEQUENCE filler_010_seq;\n".to_string(),
            String::new(),
        ),
        _ => (String::new(), String::new()),
    });
    let report = rehearse(&scratch.config().unwrap(), &[Backend::Postgres])
        .await
        .remove(0);
    assert_stops_at(&report, "0010_create_filler_002", "filler_010_seq");
    // The second database had a rehearsal of some forty migrations ahead of it when the
    // first failed nine in.
    let (note, reached) = version_in_note(&report, "the second database", "stopped after ");
    assert!(reached < 52, "{note}");
}

/// A migration of the second half that does not apply stops the history there, named
/// once, although the first database met it first (applying it plainly): the steps end
/// before it and what the first half's reversals found still counts.
#[tokio::test]
async fn a_long_history_stops_at_a_broken_migration_of_its_second_half() {
    let scratch = Scratch::new().unwrap();
    add_fillers(&scratch, 44, |version| match version {
        10 => (String::new(), "DELETE FROM gift_cards;\n".to_string()),
        45 => ("SELECT 1 / 0;\n".to_string(), String::new()),
        _ => (String::new(), String::new()),
    });
    let report = rehearse(&scratch.config().unwrap(), &[Backend::Postgres])
        .await
        .remove(0);
    assert_stops_at(&report, "0045_create_filler_037.up.sql", "division by zero");
    let versions: Vec<i64> = report.steps.iter().map(|s| s.version).collect();
    assert_eq!(versions, (1..=44).collect::<Vec<i64>>());
    assert_fails_with(
        &report,
        "reversibility",
        &["0010_create_filler_002.down.sql loses data"],
    );
    assert_eq!(
        report.isolation_cases, 0,
        "no cases after a stopped history"
    );
}

/// Roles belong to the whole server: a history that drops one is rehearsed on one
/// database, and says why.
#[tokio::test]
async fn a_long_history_that_drops_a_role_runs_on_one_database_and_says_why() {
    let scratch = Scratch::new().unwrap();
    add_fillers(&scratch, 41, |version| match version {
        30 => (
            "DROP ROLE IF EXISTS tenantgate_nobody;\n".to_string(),
            String::new(),
        ),
        _ => (String::new(), String::new()),
    });
    let report = rehearse(&scratch.config().unwrap(), &[Backend::Postgres])
        .await
        .remove(0);
    let outcome = report
        .checks
        .iter()
        .find(|c| c.name == "reversibility")
        .unwrap();
    assert!(outcome.passed(), "{:#?}", failures(&report));
    assert_eq!(outcome.checked, 48);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("rehearsed on one database")
                && n.contains("0030_create_filler_022.up.sql changes or drops a role")),
        "{:#?}",
        report.notes
    );
    assert!(
        !report
            .notes
            .iter()
            .any(|n| n.contains("rehearsed in two halves at once"))
    );
}

/// Two databases of one server never run the same migration at once: a migration that
/// creates a role unless it exists (a check, then the statement) would otherwise fail on
/// one of them, the other having created the role in between.
#[tokio::test]
async fn a_migration_that_creates_a_missing_role_runs_on_one_database_at_a_time() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "create_reporting_role",
            "DO $$\nBEGIN\n    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenantgate_reporting') THEN\n        PERFORM pg_sleep(1);\n        CREATE ROLE tenantgate_reporting NOLOGIN;\n    END IF;\nEND\n$$;\n",
            "SELECT 1;\n",
        )
        .unwrap();
    scratch
        .exempt_from_parity("0008_create_reporting_role", Backend::Postgres)
        .unwrap();
    // A server of its own: the role belongs to the whole server.
    let report = rehearse_app_on(
        &scratch_app(scratch.config().unwrap()),
        &[Backend::Postgres],
        Options::default(),
        &own_server(),
    )
    .await
    .remove(0);
    assert_notes(&report, "rehearsed on a second database of the server");
    assert!(report.fatal.is_none(), "{:#?}", failures(&report));
    assert_eq!(report.steps.len(), 8);
}

/// A down migration that empties a table its up never touched with TRUNCATE (which
/// PostgreSQL's row statistics do not count as deletes) is caught.
#[tokio::test]
async fn a_down_migration_that_truncates_a_table_its_up_never_touched_is_caught() {
    let scratch = Scratch::new().unwrap();
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "add_store_notes",
            "ALTER TABLE stores ADD COLUMN notes TEXT;\n",
            "ALTER TABLE stores DROP COLUMN notes;\nTRUNCATE gift_cards;\n",
        )
        .unwrap();
    let report = rehearse(&scratch.config().unwrap(), &[Backend::Postgres])
        .await
        .remove(0);
    assert_fails_with(
        &report,
        "reversibility",
        &[
            "0008_add_store_notes.down.sql loses data",
            "`gift_cards` had 60 rows before the up migration, 0 after the down",
        ],
    );
}

/// A migration whose transaction fails only at its COMMIT (a deferred foreign key) did
/// not apply, and the rehearsal says so, naming the file.
#[tokio::test]
async fn a_migration_that_fails_at_its_commit_is_a_failure_not_applied() {
    let scratch = Scratch::new().unwrap();
    declare_global(&scratch, &["deferred_notes"]);
    scratch
        .add_migration(
            Backend::Postgres,
            "0008",
            "deferred_notes",
            "CREATE TABLE deferred_notes (id BIGINT PRIMARY KEY, store_id BIGINT REFERENCES stores (id) DEFERRABLE INITIALLY DEFERRED);\n\
             INSERT INTO deferred_notes VALUES (1, -42);\n",
            "DROP TABLE deferred_notes;\n",
        )
        .unwrap();
    let report = rehearse(&scratch.config().unwrap(), &[Backend::Postgres])
        .await
        .remove(0);
    assert_stops_at(
        &report,
        "0008_deferred_notes.up.sql",
        "deferred_notes_store_id_fkey",
    );
    assert_eq!(report.steps.len(), 7, "0008 is not recorded as applied");
}

/// A rehearsal's SQLite database does without durability (its journal in memory, no
/// syncs), and the app's own migration PRAGMAs win over that: a migration sees the
/// journal mode the app asks for (it fails, `abs` overflowing, when it sees another).
#[tokio::test]
async fn the_app_s_migration_pragmas_win_over_the_rehearsal_s_own() {
    for (pragma, expected) in [(None, "memory"), (Some("journal_mode = \"wal\""), "wal")] {
        let scratch = Scratch::new().unwrap();
        if let Some(pragma) = pragma {
            let path = scratch.config_path();
            let text = std::fs::read_to_string(&path).unwrap();
            let edited = text.replacen(
                "[sqlite]\n",
                &format!("[sqlite]\nmigration_pragmas = {{ {pragma} }}\n"),
                1,
            );
            assert_ne!(edited, text, "the demo configuration has a [sqlite] table");
            std::fs::write(&path, edited).unwrap();
        }
        scratch
            .add_migration(
                Backend::Sqlite,
                "0008",
                "journal_mode_seen",
                &format!(
                    "SELECT CASE WHEN (SELECT journal_mode FROM pragma_journal_mode) = '{expected}' THEN 1 ELSE abs(-9223372036854775808) END;\n"
                ),
                "SELECT 1;\n",
            )
            .unwrap();
        scratch
            .exempt_from_parity("0008_journal_mode_seen", Backend::Sqlite)
            .unwrap();
        let report = rehearse(&scratch.config().unwrap(), &[Backend::Sqlite])
            .await
            .remove(0);
        assert!(
            report.fatal.is_none(),
            "{expected}: {}",
            report.fatal.as_ref().unwrap().render()
        );
        assert_eq!(report.steps.len(), 8, "{expected}");
    }
}

/// A migration as `sqlx::migrate!` would embed it.
fn migration(version: i64, sql: &'static str) -> sqlx::migrate::Migration {
    sqlx::migrate::Migration::new(
        version,
        format!("step {version}").into(),
        sqlx::migrate::MigrationType::ReversibleUp,
        sqlx::SqlSafeStr::into_sql_str(sql),
        false,
    )
}

/// The reversal pass applies each migration in one message ([`Conn::apply_tracked`]):
/// it must leave the row sqlx would, say which tables the migration wrote, survive a
/// script whose last line is a comment, and on a failure leave nothing of the script,
/// report the script's own error and hand back a usable connection.
#[tokio::test]
async fn a_tracked_apply_is_sqlx_s_transaction_in_one_message() {
    use tenantgate::db::Conn;
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let table = "_sqlx_migrations";
        let mut conn = Conn::connect(Backend::Postgres, &database.url).await?;
        conn.ensure_migrations_table(table).await?;
        let writes = conn.track_writes().await?.expect("PostgreSQL tracks writes");
        let first = migration(
            1,
            "CREATE TABLE notes (id int PRIMARY KEY, body text);
             CREATE TABLE other (id int);
             INSERT INTO notes VALUES (1, 'a'), (2, 'b');
             SELECT 42 AS a_row_of_the_script_s_own
             -- the last line is a comment, with no newline after it",
        );
        let mark = writes.mark();
        conn.apply_tracked(table, &first, true, Some(&writes)).await?;
        assert!(writes.since(mark).contains("notes"), "{:?}", writes.since(mark));
        let second = migration(2, "UPDATE notes SET body = 'c' WHERE id = 2");
        let mark = writes.mark();
        conn.apply_tracked(table, &second, true, Some(&writes)).await?;
        let written = writes.since(mark);
        assert!(written.contains("notes") && !written.contains("other"), "{written:?}");
        assert!(!writes.everything_since(mark), "the tracked path was not taken");

        // The rows sqlx writes: success, the checksum, a measured execution time.
        let rows = conn
            .texts(&format!(
                "SELECT version || ' ' || success || ' ' || encode(checksum, 'hex') || ' ' || (execution_time > 0) FROM {table} ORDER BY version"
            ))
            .await?;
        let hex = |m: &sqlx::migrate::Migration| {
            m.checksum.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        assert_eq!(
            rows,
            vec![
                format!("1 true {} true", hex(&first)),
                format!("2 true {} true", hex(&second))
            ]
        );

        let failing = migration(
            3,
            "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table",
        );
        let error = conn
            .apply_tracked(table, &failing, true, Some(&writes))
            .await
            .expect_err("the script fails");
        let text = format!("{error:#}");
        assert!(text.contains("no_such_table"), "{text}");
        let left = conn
            .count(&format!(
                "SELECT (SELECT count(*) FROM pg_class WHERE relname = 'half_done') + (SELECT count(*) FROM {table} WHERE version = 3)"
            ))
            .await?;
        assert_eq!(left, 0, "nothing of the failed migration stays");
        conn.close().await;
        Ok(())
    })
    .await
    .unwrap();
}
