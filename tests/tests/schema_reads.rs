//! A read of what changed ([`Schema::read_changed`]) is the whole read: after each of a
//! series of statements on a real PostgreSQL (and SQLite), the schema read from the previous read's
//! model and marks equals a whole read. The statements are the ones whose effect reaches
//! past the table they name: renames that change other tables' foreign keys, defaults,
//! policies, partitions and column types; renamed types, functions, roles and schemas;
//! dropped indexes, policies and columns; a changed search path; views, sequences and
//! functions whose text changes with no change to their own catalog row.

use tenantgate::Backend;
use tenantgate::db::{Conn, Scope};
use tenantgate::schema::{Marks, Schema};

/// Each step, and whether it changes the schema's text (a step that does not is there to
/// show that an unchanged text is read as unchanged).
const STEPS: &[(&str, bool)] = &[
    (
        "CREATE TABLE a (id int PRIMARY KEY, name text);
         CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a (id));
         CREATE SEQUENCE s;
         CREATE TABLE c (id int DEFAULT nextval('s'), tenant int, note text)",
        true,
    ),
    ("ALTER TABLE a RENAME COLUMN id TO a_key", true),
    ("ALTER TABLE a RENAME TO a2", true),
    ("ALTER SEQUENCE s RENAME TO s2", true),
    (
        "ALTER TABLE c ENABLE ROW LEVEL SECURITY;
         CREATE POLICY by_tenant ON c USING (tenant IN (SELECT a_key FROM a2))",
        true,
    ),
    ("ALTER TABLE a2 RENAME TO a3", true),
    ("ALTER TABLE a3 RENAME COLUMN a_key TO k", true),
    ("CREATE INDEX c_tenant ON c (tenant)", true),
    ("ALTER INDEX c_tenant RENAME TO c_by_tenant", true),
    ("DROP INDEX c_by_tenant", true),
    ("DROP POLICY by_tenant ON c", true),
    ("COMMENT ON TABLE c IS 'no part of the schema text'", false),
    (
        "CREATE TYPE mood AS ENUM ('calm', 'busy');
         ALTER TABLE c ADD COLUMN m mood",
        true,
    ),
    ("ALTER TYPE mood RENAME TO feeling", true),
    ("ALTER TYPE feeling ADD VALUE 'closed'", true),
    (
        "CREATE FUNCTION positive(value int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT value > 0';
         ALTER TABLE c ADD CONSTRAINT tenant_positive CHECK (positive(tenant))",
        true,
    ),
    ("ALTER FUNCTION positive(int) RENAME TO above_zero", true),
    (
        "CREATE TABLE parted (id int, tenant int) PARTITION BY LIST (tenant);
         CREATE TABLE part_one PARTITION OF parted FOR VALUES IN (1)",
        true,
    ),
    ("ALTER TABLE parted RENAME TO parted_by_tenant", true),
    ("CREATE TABLE d (id int, row_of a3, rows_of a3[])", true),
    ("ALTER TABLE a3 RENAME TO a4", true),
    (
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
         CREATE TRIGGER c_touch BEFORE UPDATE ON c FOR EACH ROW EXECUTE FUNCTION touch()",
        true,
    ),
    ("ALTER TRIGGER c_touch ON c RENAME TO c_touched", true),
    ("ALTER FUNCTION touch() RENAME TO touched", true),
    ("DROP TRIGGER c_touched ON c", true),
    ("ALTER TABLE c ALTER COLUMN tenant SET NOT NULL", true),
    ("ALTER TABLE c ALTER COLUMN id DROP DEFAULT", true),
    ("CREATE VIEW v AS SELECT id, note FROM c", true),
    ("ALTER TABLE c RENAME COLUMN note TO remark", true),
    // Views, sequences and functions are read again only when they changed.
    (
        "CREATE OR REPLACE VIEW v AS SELECT id, remark AS note FROM c WHERE tenant > 0",
        true,
    ),
    ("CREATE VIEW w AS SELECT id FROM v", true),
    ("ALTER VIEW v RENAME TO v2", true),
    ("ALTER VIEW v2 SET (security_invoker = true)", true),
    ("CREATE MATERIALIZED VIEW mv AS SELECT id FROM c", true),
    ("CREATE SEQUENCE counter", true),
    ("ALTER SEQUENCE counter OWNED BY c.id", true),
    (
        "CREATE TABLE e (id int);
         CREATE FUNCTION all_e() RETURNS SETOF e LANGUAGE sql AS 'SELECT * FROM e'",
        true,
    ),
    ("ALTER TABLE e RENAME TO e2", true),
    ("ALTER EXTENSION plpgsql ADD FUNCTION all_e()", true),
    ("ALTER EXTENSION plpgsql DROP FUNCTION all_e()", true),
    ("ALTER TABLE b DROP COLUMN a_id", true),
    (
        "CREATE SCHEMA other;
         CREATE TABLE other.t (id int REFERENCES public.b (id))",
        true,
    ),
    ("ALTER TABLE b RENAME TO b2", true),
    ("ALTER SCHEMA other RENAME TO elsewhere", true),
    ("SET search_path TO elsewhere, public", true),
    ("RESET search_path", true),
    ("DROP TABLE b2 CASCADE", true),
    ("INSERT INTO c (id, tenant) VALUES (1, 1)", false),
];

#[tokio::test]
async fn a_read_of_what_changed_is_the_whole_read_after_every_statement() -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let mut conn = Conn::connect(Backend::Postgres, &database.url).await?;
        // A role of this test alone (roles belong to the whole server), dropped at the end.
        let role = format!("tg_reads_{}", std::process::id());
        let role_steps = [
            (
                format!("CREATE ROLE {role}; GRANT SELECT ON c TO {role}"),
                true,
            ),
            (format!("ALTER ROLE {role} RENAME TO {role}_renamed"), true),
            (format!("REVOKE SELECT ON c FROM {role}_renamed"), true),
        ];
        let steps = STEPS
            .iter()
            .map(|(sql, changes)| (sql.to_string(), *changes))
            .take(3)
            .chain(role_steps)
            .chain(
                STEPS
                    .iter()
                    .skip(3)
                    .map(|(sql, changes)| (sql.to_string(), *changes)),
            );
        let outcome = async {
            let (mut model, mut marks) =
                Schema::read_changed(&mut conn, "_sqlx_migrations", None).await?;
            let mut partial_reads = 0;
            for (sql, changes) in steps {
                (model, marks) = step(&mut conn, &sql, changes, (model, marks)).await?;
                if marks.tables_read_again().is_some() {
                    partial_reads += 1;
                }
            }
            // Most steps re-read a few tables, not all: the marks work.
            anyhow::ensure!(
                partial_reads >= 20,
                "only {partial_reads} reads took tables from the previous model"
            );
            Ok(())
        }
        .await;
        for name in [role.clone(), format!("{role}_renamed")] {
            // Whichever exists, with whatever it was granted here.
            let _ = conn.execute(&format!("DROP OWNED BY {name}")).await;
            let _ = conn.execute(&format!("DROP ROLE IF EXISTS {name}")).await;
        }
        conn.close().await;
        outcome
    })
    .await
}

/// A read sets its own planner settings (no sequential scans, generic plans, no JIT, …)
/// and gives the session back its values afterwards: the migrations applied between two
/// reads run as the app's would. Both with a few schemas and with many (whose read keeps
/// the session's sequential scans and plan cache mode).
#[tokio::test]
async fn a_read_gives_the_session_back_its_planner_settings() -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let mut conn = Conn::connect(Backend::Postgres, &database.url).await?;
        let settings = "SELECT current_setting('enable_seqscan') || ' ' || current_setting('plan_cache_mode') || ' ' || current_setting('work_mem') || ' ' || current_setting('jit') || ' ' || current_setting('max_parallel_workers_per_gather')";
        let outcome = async {
            conn.execute(
                "SET enable_seqscan = on; SET plan_cache_mode = force_custom_plan; SET work_mem = '3MB'; SET jit = on; SET max_parallel_workers_per_gather = 3; CREATE TABLE t (id int PRIMARY KEY)",
            )
            .await?;
            let before = conn.texts(settings).await?;
            assert_eq!(before, ["on force_custom_plan 3MB on 3"]);
            let (model, marks) = Schema::read_changed(&mut conn, "_sqlx_migrations", None).await?;
            assert!(model.tables.contains_key("t"), "{:?}", model.tables.keys());
            assert_eq!(conn.texts(settings).await?, before, "after a whole read");
            conn.execute("ALTER TABLE t ADD COLUMN note text").await?;
            Schema::read_changed(&mut conn, "_sqlx_migrations", Some((&model, &marks))).await?;
            assert_eq!(conn.texts(settings).await?, before, "after a read of what changed");
            // Many schemas: a read of every one of them.
            for index in 0..10 {
                conn.execute(&format!("CREATE SCHEMA s{index}; CREATE TABLE s{index}.t (id int)"))
                    .await?;
            }
            let model = Schema::read(&mut conn, "_sqlx_migrations", &Scope::Database).await?;
            assert!(model.tables.contains_key("s9.t"), "{:?}", model.tables.keys());
            assert_eq!(conn.texts(settings).await?, before, "after a read of many schemas");
            anyhow::Ok(())
        }
        .await;
        conn.close().await;
        outcome
    })
    .await
}

/// SQLite's statements whose effect reaches past the table they name: a rename rewrites
/// the foreign keys of the tables that reference it; a rebuild drops and renames.
const SQLITE_STEPS: &[(&str, bool)] = &[
    (
        "CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a (id));
         CREATE TABLE c (id INTEGER PRIMARY KEY, tenant INTEGER NOT NULL CHECK (tenant > 0))",
        true,
    ),
    ("ALTER TABLE a RENAME TO a2", true),
    ("ALTER TABLE a2 RENAME COLUMN id TO a_key", true),
    ("ALTER TABLE c ADD COLUMN note TEXT", true),
    ("CREATE INDEX c_tenant ON c (tenant)", true),
    ("DROP INDEX c_tenant", true),
    (
        "CREATE TRIGGER c_touch AFTER UPDATE ON c BEGIN SELECT 1; END",
        true,
    ),
    ("DROP TRIGGER c_touch", true),
    (
        "CREATE TABLE c_new (id INTEGER PRIMARY KEY, tenant INTEGER NOT NULL);
         INSERT INTO c_new SELECT id, tenant FROM c;
         DROP TABLE c;
         ALTER TABLE c_new RENAME TO c",
        true,
    ),
    ("CREATE VIEW v AS SELECT id FROM c", false),
    ("INSERT INTO c (id, tenant) VALUES (1, 1)", false),
    ("DROP TABLE b", true),
];

#[tokio::test]
async fn a_read_of_what_changed_is_the_whole_read_on_sqlite() -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Sqlite, async |database| {
        let mut conn = Conn::connect(Backend::Sqlite, &database.url).await?;
        let (mut model, mut marks) =
            Schema::read_changed(&mut conn, "_sqlx_migrations", None).await?;
        let mut partial_reads = 0;
        for (sql, changes) in SQLITE_STEPS {
            (model, marks) = step(&mut conn, sql, *changes, (model, marks)).await?;
            if marks.tables_read_again().is_some() {
                partial_reads += 1;
            }
        }
        anyhow::ensure!(
            partial_reads == SQLITE_STEPS.len(),
            "{partial_reads} partial reads"
        );
        conn.close().await;
        Ok(())
    })
    .await
}

/// Runs `sql`, then reads the schema from `previous` (what changed) and whole: the two
/// must be the same, and differ from `previous`'s exactly when `changes` says so.
async fn step(
    conn: &mut Conn,
    sql: &str,
    changes: bool,
    (model, marks): (Schema, Marks),
) -> anyhow::Result<(Schema, Marks)> {
    conn.execute(sql).await?;
    let (read, new_marks) =
        Schema::read_changed(conn, "_sqlx_migrations", Some((&model, &marks))).await?;
    let whole = Schema::read(conn, "_sqlx_migrations", &Scope::Database).await?;
    let (read_text, whole_text) = (read.render(), whole.render());
    anyhow::ensure!(
        read_text == whole_text,
        "after `{sql}`, the read of what changed differs from the whole read:\n{}",
        similar::TextDiff::from_lines(&whole_text, &read_text).unified_diff()
    );
    anyhow::ensure!(read == whole, "after `{sql}`: same text, different models");
    anyhow::ensure!(
        (model.render() != whole_text) == changes,
        "after `{sql}`: the schema text {} (the step is here to change it: {changes})",
        if changes { "did not change" } else { "changed" }
    );
    Ok((read, new_marks))
}
