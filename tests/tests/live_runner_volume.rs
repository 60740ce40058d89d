//! The live runner at volume: back up, apply and verify the tenancy migrations on generated
//! rows, then roll back a failing migration, and print the time of each step.
//! TENANTGATE_LIVE_ROWS sets the rows per table (default 1000; the closing note of the
//! live-runner issue used 100000). Run with `--no-capture` to see the table.

use tenantgate::Backend;
use tenantgate::config::Config;
use tenantgate::live::{Outcome, Report, Source, Target};
use tenantgate_tests::Scratch;
use tenantgate_tests::live::{options, prepare, scratch_source, state};

fn rows() -> u64 {
    std::env::var("TENANTGATE_LIVE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn seconds(report: &Report, step: &str) -> f64 {
    report.step(step).map(|s| s.seconds).unwrap_or(f64::NAN)
}

async fn at_volume(backend: Backend) -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(backend, async |database| {
        let dir = tempfile::tempdir()?;
        let config = Config::load(&tenantgate_tests::demo_config_path())?;
        prepare(
            &database.url,
            config.fixtures.as_ref().unwrap().seed_at_version,
            dir.path(),
        )
        .await?;
        let target = Target::new(&database.url)?;
        let mut conn = target.connect(false).await?;
        let schema = tenantgate::schema::Schema::read(
            &mut conn,
            "_sqlx_migrations",
            &tenantgate::db::Scope::Database,
        )
        .await?;
        let started = std::time::Instant::now();
        tenantgate_harness::volume::generate(&mut conn, &config, &schema, rows(), 1)
            .await
            .map_err(|f| anyhow::format_err!(f.render()))?;
        let generated = started.elapsed().as_secs_f64();
        conn.close().await;

        let migrated = tenantgate::live::migrate(&Source::of(&app::TENANTGATE, backend)?, &config, &target, &options(dir.path()), &mut |_| {}).await;
        assert_eq!(migrated.outcome, Outcome::Migrated, "{}", migrated.render());

        // A migration after the tenancy ones fails halfway: restored from the backup.
        let scratch = Scratch::new()?;
        std::fs::remove_file(scratch.dir.path().join(format!("migrations/snapshots/{}.snap", backend.name())))?;
        scratch.add_migration(
            backend,
            "0008",
            "fails",
            "UPDATE customers SET full_name = upper(full_name);\nALTER TABLE customers ADD COLUMN x TEXT;\nSELECT no_such_function();\n",
            "ALTER TABLE customers DROP COLUMN x;\n",
        )?;
        let before = state(&database.url).await?;
        let failed = tenantgate::live::migrate(&scratch_source(&scratch, backend).await?, &config, &target, &options(dir.path()), &mut |_| {}).await;
        assert_eq!(failed.outcome, Outcome::RolledBack, "{}", failed.render());
        assert_eq!(state(&database.url).await?, before);

        let backup = migrated.backup.as_ref().expect("a backup");
        println!(
            "{backend}: {} rows/table (generated in {generated:.1} s); backup {:.2} s ({:.1} MB); apply {:.2} s; verify {:.2} s; \
             failing run: backup {:.2} s, rollback {:.2} s",
            rows(),
            seconds(&migrated, "backup"),
            backup.bytes as f64 / 1e6,
            seconds(&migrated, "apply"),
            seconds(&migrated, "verify"),
            seconds(&failed, "backup"),
            seconds(&failed, "rollback"),
        );
        for run in &migrated.migrations {
            println!("{backend}:   {:<40} {:.2} s", run.file, run.seconds);
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn postgres_backup_apply_verify_and_rollback_at_volume() -> anyhow::Result<()> {
    at_volume(Backend::Postgres).await
}

#[tokio::test]
async fn sqlite_backup_apply_verify_and_rollback_at_volume() -> anyhow::Result<()> {
    at_volume(Backend::Sqlite).await
}

/// Introspection turns JIT and parallel workers off for its catalog queries (they cost
/// more than they save on a catalog of a thousand schemas) and gives the connection its
/// own settings back: the live runner applies the next migration on it.
#[tokio::test]
async fn introspection_leaves_the_sessions_planner_settings_as_they_were() -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let mut conn = tenantgate::db::Conn::connect(Backend::Postgres, &database.url).await?;
        let tenantgate::db::Conn::Postgres(pg) = &mut conn else {
            unreachable!("a PostgreSQL connection")
        };
        sqlx::raw_sql("SET jit = on; SET max_parallel_workers_per_gather = 3")
            .execute(&mut *pg)
            .await?;
        let schema = tenantgate::schema::Schema::read(
            &mut conn,
            "_sqlx_migrations",
            &tenantgate::db::Scope::Database,
        )
        .await?;
        assert!(schema.tables.is_empty(), "a fresh database has no table");
        let tenantgate::db::Conn::Postgres(pg) = &mut conn else {
            unreachable!("a PostgreSQL connection")
        };
        let (jit, workers): (String, String) = sqlx::query_as(
            "SELECT current_setting('jit'), current_setting('max_parallel_workers_per_gather')",
        )
        .fetch_one(&mut *pg)
        .await?;
        assert_eq!((jit.as_str(), workers.as_str()), ("on", "3"));
        conn.close().await;
        Ok(())
    })
    .await
}
