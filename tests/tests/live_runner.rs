//! `app migrate` and `app verify` on real PostgreSQL 15 and SQLite: the safe live runner.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tenantgate::Backend;
use tenantgate::live::{Options, Outcome, Report, Source, Status, Target};
use tenantgate_tests::Scratch;
use tenantgate_tests::live::{applied_versions, options, prepare, scratch_source, state};

fn step<'r>(report: &'r Report, name: &str) -> &'r tenantgate::live::report::Step {
    report
        .step(name)
        .unwrap_or_else(|| panic!("no `{name}` step in:\n{}", report.render()))
}

fn failed_check<'r>(report: &'r Report, name: &str) -> &'r tenantgate::live::report::Check {
    report
        .failed_checks()
        .find(|(_, c)| c.name == name)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("no failed `{name}` check in:\n{}", report.render()))
}

/// Creates the empty schemas `tenant_00` … of a schema-per-tenant database.
async fn tenant_schemas(base: &Target, count: usize) -> anyhow::Result<()> {
    let mut conn = base.connect(false).await?;
    for i in 0..count {
        conn.execute(&format!("CREATE SCHEMA tenant_{i:02}"))
            .await?;
    }
    conn.close().await;
    Ok(())
}

/// What a process printed, stdout then stderr.
fn printed(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `app migrate` over the scratch migrations, in a process of its own (to be killed).
fn spawn_migrate(
    scratch: &Scratch,
    url: &str,
    backups: &Path,
) -> std::io::Result<tokio::process::Child> {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_scratch_app"))
        .args(["migrate", "--database-url", url, "--backup-dir"])
        .arg(backups)
        .env("TENANTGATE_SCRATCH", scratch.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

async fn run(source: &Source<'_>, url: &str, options: &Options) -> Report {
    let target = Target::new(url).expect("a url");
    tenantgate::live::migrate(
        source,
        &app::TENANTGATE.config().unwrap(),
        &target,
        options,
        &mut |_| {},
    )
    .await
}

async fn clean_run(backend: Backend) -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(backend, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 3, dir.path()).await?;
        let report = run(
            &Source::of(&app::TENANTGATE, backend).unwrap(),
            &database.url,
            &options(dir.path()),
        )
        .await;
        assert_eq!(report.outcome, Outcome::Migrated, "{}", report.render());
        for name in ["validate", "backup", "apply", "verify"] {
            assert_eq!(
                step(&report, name).status,
                Status::Pass,
                "{}",
                report.render()
            );
        }
        let verify = step(&report, "verify");
        for check in ["version", "drift", "tenancy", "foreign keys", "row counts"] {
            assert!(
                verify
                    .checks
                    .iter()
                    .any(|c| c.name == check && c.status == Status::Pass),
                "{check} did not pass: {}",
                report.render()
            );
        }
        assert_eq!((report.from_version, report.to_version), (Some(3), Some(7)));
        assert_eq!(report.migrations.len(), 4);

        // The backup is where the report says, with its sha256 beside it.
        let backup = report.backup.as_ref().expect("a backup");
        let (sha256, _) = tenantgate::live::backup::sha256_file(Path::new(&backup.path))?;
        assert_eq!(sha256, backup.sha256);
        let sum = std::fs::read_to_string(format!("{}.sha256", backup.path))?;
        assert!(sum.starts_with(&sha256), "{sum}");
        let name = Path::new(&backup.path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(&Target::new(&database.url)?.label()),
            "{name}"
        );
        // The JSON report is written beside it.
        let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            report.report_path.as_ref().unwrap(),
        )?)?;
        assert_eq!(written["outcome"], "migrated");
        assert_eq!(written["backup"]["sha256"], sha256.as_str());

        // Again: nothing pending, no backup, verified.
        let again = run(
            &Source::of(&app::TENANTGATE, backend).unwrap(),
            &database.url,
            &options(dir.path()),
        )
        .await;
        assert_eq!(again.outcome, Outcome::UpToDate, "{}", again.render());
        assert!(again.backup.is_none());
        let verified = tenantgate::live::verify_database(
            &Source::of(&app::TENANTGATE, backend).unwrap(),
            &app::TENANTGATE.config().unwrap(),
            &Target::new(&database.url)?,
        )
        .await;
        assert_eq!(verified.outcome, Outcome::UpToDate, "{}", verified.render());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn postgres_clean_run_validates_backs_up_applies_and_verifies() -> anyhow::Result<()> {
    clean_run(Backend::Postgres).await
}

#[tokio::test]
async fn sqlite_clean_run_validates_backs_up_applies_and_verifies() -> anyhow::Result<()> {
    clean_run(Backend::Sqlite).await
}

async fn dry_run(backend: Backend) -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(backend, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 3, dir.path()).await?;
        let before = state(&database.url).await?;
        let report = run(
            &Source::of(&app::TENANTGATE, backend).unwrap(),
            &database.url,
            &Options {
                dry_run: true,
                ..options(dir.path())
            },
        )
        .await;
        assert_eq!(report.outcome, Outcome::DryRun, "{}", report.render());
        assert_eq!(
            state(&database.url).await?,
            before,
            "the dry run changed the database"
        );
        assert!(
            !dir.path().join("backups").exists()
                || std::fs::read_dir(dir.path().join("backups"))?
                    .next()
                    .is_none()
        );
        let versions: Vec<i64> = report.migrations.iter().map(|m| m.version).collect();
        assert_eq!(versions, [4, 5, 6, 7]);
        let add_tenant_id = &report.migrations[1];
        match backend {
            Backend::Postgres => {
                assert!(
                    report.migrations.iter().all(|m| m.status == Status::Pass),
                    "{}",
                    report.render()
                );
                // 0005 backfills every row of the fixture, under an ACCESS EXCLUSIVE lock.
                assert!(
                    add_tenant_id.rows_affected.unwrap_or(0) > 0,
                    "{}",
                    report.render()
                );
                assert!(
                    add_tenant_id
                        .locks
                        .iter()
                        .any(|l| l == "customers: AccessExclusiveLock"),
                    "{:?}",
                    add_tenant_id.locks
                );
            }
            Backend::Sqlite => {
                // 0006 rebuilds tables with foreign keys off: it cannot run in a transaction.
                let rebuild = &report.migrations[2];
                assert_eq!(rebuild.status, Status::Skip);
                assert!(
                    rebuild
                        .error
                        .as_deref()
                        .unwrap_or_default()
                        .contains("not rehearsable")
                );
                assert!(
                    report.migrations[3]
                        .error
                        .as_deref()
                        .unwrap_or_default()
                        .contains("not rehearsed")
                );
            }
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn postgres_dry_run_leaves_the_database_unchanged_and_reports_locks() -> anyhow::Result<()> {
    dry_run(Backend::Postgres).await
}

#[tokio::test]
async fn sqlite_dry_run_leaves_the_database_unchanged() -> anyhow::Result<()> {
    dry_run(Backend::Sqlite).await
}

/// 0008 changes rows and schema and succeeds; 0009 fails halfway through.
fn break_after_a_good_migration(scratch: &Scratch, backend: Backend) -> anyhow::Result<()> {
    std::fs::remove_file(
        scratch
            .dir
            .path()
            .join(format!("migrations/snapshots/{}.snap", backend.name())),
    )?;
    scratch.add_migration(
        backend,
        "0008",
        "rename_customers",
        "-- tenantgate:moves-data(gift_cards): expires gift cards\nUPDATE customers SET full_name = upper(full_name);\nALTER TABLE customers ADD COLUMN nickname TEXT;\nDELETE FROM gift_cards;\n",
        "ALTER TABLE customers DROP COLUMN nickname;\n",
    )?;
    scratch.add_migration(
        backend,
        "0009",
        "fails_halfway",
        "CREATE TABLE audit_log (id BIGINT PRIMARY KEY, tenant_id BIGINT NOT NULL);\nINSERT INTO audit_log VALUES (1, 1);\nINSERT INTO audit_log VALUES (1, 1);\n",
        "DROP TABLE audit_log;\n",
    )
}

async fn rolled_back(backend: Backend, backup: bool) -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(backend, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 3, dir.path()).await?;
        run(
            &Source::of(&app::TENANTGATE, backend).unwrap(),
            &database.url,
            &Options {
                backup: false,
                ..options(dir.path())
            },
        )
        .await;
        let scratch = Scratch::new()?;
        break_after_a_good_migration(&scratch, backend)?;
        let before = state(&database.url).await?;
        let report = run(
            &scratch_source(&scratch, backend).await?,
            &database.url,
            &Options {
                backup,
                ..options(dir.path())
            },
        )
        .await;
        assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.render());
        assert_eq!(step(&report, "apply").status, Status::Fail);
        let error = report.error.as_deref().unwrap_or_default();
        assert!(error.contains("0009_fails_halfway.up.sql"), "{error}");
        assert_eq!(
            step(&report, "rollback").status,
            Status::Pass,
            "{}",
            report.render()
        );
        assert_eq!(
            report.migrations[0].status,
            Status::Pass,
            "0008 applied before 0009 failed"
        );
        assert_eq!(
            state(&database.url).await?,
            before,
            "the rollback did not restore every row and the schema"
        );
        assert_eq!(
            applied_versions(&database.url).await?,
            [1, 2, 3, 4, 5, 6, 7]
        );
        let restore = &step(&report, "rollback").checks[0].detail;
        assert!(
            restore.contains(if backup {
                "restored"
            } else {
                "down migrations"
            }),
            "{restore}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn postgres_failure_halfway_is_restored_from_the_backup() -> anyhow::Result<()> {
    rolled_back(Backend::Postgres, true).await
}

#[tokio::test]
async fn sqlite_failure_halfway_is_restored_from_the_backup() -> anyhow::Result<()> {
    rolled_back(Backend::Sqlite, true).await
}

#[tokio::test]
async fn postgres_failure_without_a_backup_is_reverted_with_down_migrations() -> anyhow::Result<()>
{
    // 0008's down cannot bring back the gift cards it deleted: the rollback reports it.
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 3, dir.path()).await?;
        run(
            &Source::of(&app::TENANTGATE, Backend::Postgres).unwrap(),
            &database.url,
            &Options {
                backup: false,
                ..options(dir.path())
            },
        )
        .await;
        let scratch = Scratch::new()?;
        break_after_a_good_migration(&scratch, Backend::Postgres)?;
        let report = run(
            &scratch_source(&scratch, Backend::Postgres).await?,
            &database.url,
            &Options {
                backup: false,
                ..options(dir.path())
            },
        )
        .await;
        assert_eq!(report.outcome, Outcome::Failed, "{}", report.render());
        let rows = failed_check(&report, "row counts");
        assert!(rows.detail.contains("gift_cards"), "{}", rows.detail);
        assert_eq!(
            applied_versions(&database.url).await?,
            [1, 2, 3, 4, 5, 6, 7],
            "0008 was reverted"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn sqlite_failure_without_a_backup_is_reverted_with_down_migrations() -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Sqlite, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 7, dir.path()).await?;
        let scratch = Scratch::new()?;
        break_after_a_good_migration(&scratch, Backend::Sqlite)?;
        let before = state(&database.url).await?;
        let report = run(
            &scratch_source(&scratch, Backend::Sqlite).await?,
            &database.url,
            &Options {
                backup: false,
                ..options(dir.path())
            },
        )
        .await;
        // No rows to lose (no fixture): the down migrations restore the state exactly.
        assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.render());
        assert_eq!(state(&database.url).await?, before);
        Ok(())
    })
    .await
}

async fn edited_migration_refused(backend: Backend) -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(backend, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 4, dir.path()).await?;
        let scratch = Scratch::new()?;
        let file = match backend {
            Backend::Postgres => "0003_create_service_desk.up.sql",
            Backend::Sqlite => "0003_create_service_desk.up.sql",
        };
        let path = scratch.migrations_dir(backend).join(file);
        let text = std::fs::read_to_string(&path)?;
        std::fs::write(&path, text + "\n-- edited after it shipped\n")?;
        let before = state(&database.url).await?;
        let report = run(
            &scratch_source(&scratch, backend).await?,
            &database.url,
            &options(dir.path()),
        )
        .await;
        assert_eq!(report.outcome, Outcome::Refused, "{}", report.render());
        let check = failed_check(&report, "checksums");
        assert!(check.detail.contains(file), "{}", check.detail);
        assert!(
            report.step("apply").is_none() && report.backup.is_none(),
            "{}",
            report.render()
        );
        assert_eq!(state(&database.url).await?, before);
        assert!(report.verdict().contains("REFUSED"), "{}", report.verdict());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn postgres_edited_migration_is_refused_before_anything_is_applied() -> anyhow::Result<()> {
    edited_migration_refused(Backend::Postgres).await
}

#[tokio::test]
async fn sqlite_edited_migration_is_refused_before_anything_is_applied() -> anyhow::Result<()> {
    edited_migration_refused(Backend::Sqlite).await
}

/// A migration that takes a while, so two runners overlap.
fn slow_migration(scratch: &Scratch, backend: Backend) -> anyhow::Result<()> {
    let up = match backend {
        Backend::Postgres => "SELECT pg_sleep(1.5);\nALTER TABLE customers ADD COLUMN note TEXT;\n".to_string(),
        Backend::Sqlite => "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) SELECT count(*) FROM n;\nALTER TABLE customers ADD COLUMN note TEXT;\n".to_string(),
    };
    std::fs::remove_file(
        scratch
            .dir
            .path()
            .join(format!("migrations/snapshots/{}.snap", backend.name())),
    )?;
    scratch.add_migration(
        backend,
        "0008",
        "slow",
        &up,
        "ALTER TABLE customers DROP COLUMN note;\n",
    )
}

async fn concurrent_runners(backend: Backend) -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(backend, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 7, dir.path()).await?;
        let scratch = Scratch::new()?;
        slow_migration(&scratch, backend)?;
        let source = scratch_source(&scratch, backend).await?;
        let waiting = options(dir.path());
        let (first, second) = tokio::join!(run(&source, &database.url, &waiting), run(&source, &database.url, &waiting));
        let mut outcomes = [first.outcome, second.outcome];
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(outcomes, [Outcome::Migrated, Outcome::UpToDate], "{}\n{}", first.render(), second.render());
        assert_eq!(applied_versions(&database.url).await?, [1, 2, 3, 4, 5, 6, 7, 8]);

        // A runner that may not wait fails clearly, naming the holder, and changes nothing.
        let mut conn = Target::new(&database.url)?.connect(false).await?;
        conn.execute("ALTER TABLE customers DROP COLUMN note; DELETE FROM _sqlx_migrations WHERE version = 8").await?;
        conn.close().await;
        let impatient = Options { wait_for_lock: Duration::ZERO, ..options(dir.path()) };
        let (first, second) = tokio::join!(run(&source, &database.url, &waiting), async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            run(&source, &database.url, &impatient).await
        });
        assert_eq!(first.outcome, Outcome::Migrated, "{}", first.render());
        assert_eq!(second.outcome, Outcome::Refused, "{}", second.render());
        let lock = failed_check(&second, "lock");
        assert!(lock.detail.contains("another runner"), "{}", lock.detail);
        assert_eq!(applied_versions(&database.url).await?, [1, 2, 3, 4, 5, 6, 7, 8]);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn postgres_two_concurrent_runners_never_both_apply() -> anyhow::Result<()> {
    concurrent_runners(Backend::Postgres).await
}

#[tokio::test]
async fn sqlite_two_concurrent_runners_never_both_apply() -> anyhow::Result<()> {
    concurrent_runners(Backend::Sqlite).await
}

#[tokio::test]
async fn postgres_runner_killed_mid_apply_is_detected_and_repaired_by_the_next_run()
-> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 7, dir.path()).await?;
        let scratch = Scratch::new()?;
        std::fs::remove_file(scratch.dir.path().join("migrations/snapshots/postgres.snap"))?;
        // Slow while `slow` has a row: the test removes it before the second run.
        scratch.add_migration(
            Backend::Postgres,
            "0008",
            "slow_backfill",
            "ALTER TABLE customers ADD COLUMN loyalty_points BIGINT;\nSELECT pg_sleep(60) FROM test_control.slow;\n",
            "ALTER TABLE customers DROP COLUMN loyalty_points;\n",
        )?;
        let mut conn = Target::new(&database.url)?.connect(false).await?;
        conn.execute("CREATE SCHEMA test_control; CREATE TABLE test_control.slow (x int); INSERT INTO test_control.slow VALUES (1)").await?;
        let backups = dir.path().join("backups");
        let mut child = spawn_migrate(&scratch, &database.url, &backups)?;
        let started = Instant::now();
        loop {
            let sleeping = conn
                .count("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenantgate-migrate' AND pid <> pg_backend_pid() AND query LIKE '%pg_sleep(60)%'")
                .await?;
            if sleeping > 0 {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the runner never reached 0008");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        child.start_kill()?;
        child.wait().await?;
        conn.execute("DELETE FROM test_control.slow").await?;
        conn.close().await;

        let source = scratch_source(&scratch, Backend::Postgres).await?;
        let report = run(&source, &database.url, &options(dir.path())).await;
        assert_eq!(report.outcome, Outcome::Migrated, "{}", report.render());
        let previous = step(&report, "validate")
            .checks
            .iter()
            .find(|c| c.name == "previous run")
            .unwrap_or_else(|| panic!("the killed run was not detected:\n{}", report.render()));
        assert!(previous.detail.contains("did not finish") && previous.detail.contains("0008_slow_backfill"), "{}", previous.detail);
        assert!(previous.detail.contains(".dump"), "names the killed run's backup: {}", previous.detail);
        assert_eq!(applied_versions(&database.url).await?, [1, 2, 3, 4, 5, 6, 7, 8]);
        let leftovers: Vec<_> = std::fs::read_dir(&backups)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".migrating.json"))
            .collect();
        assert!(leftovers.is_empty(), "the run marker is removed after a finished run");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn sqlite_runner_killed_in_a_no_transaction_migration_makes_the_next_run_refuse()
-> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Sqlite, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 7, dir.path()).await?;
        let scratch = Scratch::new()?;
        std::fs::remove_file(scratch.dir.path().join("migrations/snapshots/sqlite.snap"))?;
        scratch.add_migration(
            Backend::Sqlite,
            "0008",
            "rebuild",
            "-- no-transaction\nCREATE TABLE loyalty (id BIGINT PRIMARY KEY, tenant_id BIGINT NOT NULL);\nWITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) SELECT count(*) FROM n;\n",
            "DROP TABLE loyalty;\n",
        )?;
        let backups = dir.path().join("backups");
        let mut child = spawn_migrate(&scratch, &database.url, &backups)?;
        let started = Instant::now();
        let target = Target::new(&database.url)?;
        loop {
            let marker = std::fs::read_dir(&backups).ok().and_then(|entries| {
                entries.flatten().find(|e| e.file_name().to_string_lossy().ends_with(".migrating.json"))
            });
            if let Some(marker) = marker
                && std::fs::read_to_string(marker.path())?.contains("0008_rebuild")
            {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the runner never reached 0008");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        child.start_kill()?;
        child.wait().await?;
        let before = state(&target.url).await?;

        let source = scratch_source(&scratch, Backend::Sqlite).await?;
        let report = run(&source, &database.url, &options(dir.path())).await;
        assert_eq!(report.outcome, Outcome::Refused, "{}", report.render());
        let previous = failed_check(&report, "previous run");
        assert!(previous.detail.contains("half-applied") && previous.detail.contains(".sqlite"), "{}", previous.detail);
        assert_eq!(state(&target.url).await?, before, "a refused run changes nothing");
        // Refusing again until an operator acts: the marker stays.
        let again = run(&source, &database.url, &options(dir.path())).await;
        assert_eq!(again.outcome, Outcome::Refused, "{}", again.render());
        Ok(())
    })
    .await
}

async fn drift_reported_by_verify(backend: Backend) -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(backend, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 7, dir.path()).await?;
        let target = Target::new(&database.url)?;
        let mut conn = target.connect(false).await?;
        conn.execute("ALTER TABLE customers ADD COLUMN nickname TEXT")
            .await?;
        conn.close().await;
        let report = tenantgate::live::verify_database(
            &Source::of(&app::TENANTGATE, backend).unwrap(),
            &app::TENANTGATE.config().unwrap(),
            &target,
        )
        .await;
        assert_eq!(report.outcome, Outcome::Failed, "{}", report.render());
        let drift = failed_check(&report, "drift");
        assert!(
            drift.detail.contains("table customers: extra `nickname"),
            "{}",
            drift.detail
        );
        assert!(
            report.verdict().starts_with("verify: FAIL"),
            "{}",
            report.verdict()
        );

        // The command line: exit 1, and the JSON report for a deploy pipeline.
        let scratch = Scratch::new()?;
        let json = dir.path().join("verify.json");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_scratch_app"))
            .args(["verify", "--database-url", &database.url, "--report"])
            .arg(&json)
            .env("TENANTGATE_SCRATCH", scratch.dir.path())
            .output()?;
        assert_eq!(output.status.code(), Some(1));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("nickname") && stdout.contains("verify: FAIL"),
            "{stdout}"
        );
        let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        assert_eq!(written["outcome"], "failed");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn postgres_verify_reports_a_column_added_by_hand() -> anyhow::Result<()> {
    drift_reported_by_verify(Backend::Postgres).await
}

#[tokio::test]
async fn sqlite_verify_reports_a_column_added_by_hand() -> anyhow::Result<()> {
    drift_reported_by_verify(Backend::Sqlite).await
}

#[tokio::test]
async fn ten_tenant_schemas_migrate_in_parallel_and_a_broken_one_harms_no_other()
-> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let dir = tempfile::tempdir()?;
        let base = Target::new(&database.url)?;
        tenant_schemas(&base, 10).await?;
        let mut conn = base.connect(false).await?;
        // tenant_03 has a table of its own where 0001 creates `currencies`.
        conn.execute("CREATE TABLE tenant_03.currencies (code int)").await?;
        conn.close().await;
        let fanout = tenantgate::live::fanout::Fanout { pattern: "tenant_%".to_string(), jobs: 4, fail_fast: false, schemas_per_dump: None };
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = std::sync::Arc::clone(&lines);
        let progress: tenantgate::live::fanout::Progress =
            std::sync::Arc::new(std::sync::Mutex::new(move |line: &str| sink.lock().unwrap().push(line.to_string())));
        let config = app::TENANTGATE.config().unwrap();
        let source = Source::of(&app::TENANTGATE, Backend::Postgres).unwrap();
        let report = tenantgate::live::fanout::migrate_schemas(&source, &config, &base, &options(dir.path()), &fanout, progress.clone()).await;
        assert_eq!(report.schemas.len(), 10);
        let broken: Vec<_> = report.schemas.iter().filter(|s| !s.ok).collect();
        assert_eq!(broken.len(), 1, "{}", report.render());
        assert_eq!(broken[0].schema, "tenant_03");
        assert_eq!(broken[0].outcome, "rolled-back", "{}", report.render());
        assert!(broken[0].error.as_deref().unwrap_or_default().contains("0001_create_catalog.up.sql"), "{}", report.render());
        assert!(report.schemas.iter().filter(|s| s.ok).all(|s| s.outcome == "migrated" && s.to_version == Some(7)));
        // The broken schema is named as the one that differs, with the difference.
        assert_eq!(report.drift.len(), 1, "{}", report.render());
        assert_eq!(report.drift[0].schema, "tenant_03");
        assert!(report.drift[0].difference.contains("currencies"), "{}", report.drift[0].difference);
        assert_eq!(report.majority_count, 9);
        assert!(lines.lock().unwrap().iter().any(|l| l.starts_with("[10/10]")), "progress per schema");
        // Every healthy schema verifies on its own, and tenant_03 is as it was.
        for schema in report.schemas.iter().filter(|s| s.ok) {
            let verified = tenantgate::live::verify_database(&source, &config, &base.in_schema(&schema.schema)).await;
            assert_eq!(verified.outcome, Outcome::UpToDate, "{}", verified.render());
        }
        let mut conn = base.in_schema("tenant_03").connect(false).await?;
        let tables = conn.texts("SELECT relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'tenant_03' AND relkind = 'r'").await?;
        conn.close().await;
        assert_eq!(tables, ["currencies"]);

        // A re-run is a no-op for the migrated schemas and fails tenant_03 again.
        let again = tenantgate::live::fanout::migrate_schemas(&source, &config, &base, &options(dir.path()), &fanout, progress).await;
        let up_to_date = again.schemas.iter().filter(|s| s.outcome == "up-to-date").count();
        assert_eq!(up_to_date, 9, "{}", again.render());
        assert!(again.verdict().contains("1 of 10 schemas failed"), "{}", again.verdict());

        // Schemas skipped as up to date are still held to the snapshot: a column added by
        // hand to every healthy schema (so all still share one fingerprint) fails them all.
        let mut conn = base.connect(false).await?;
        for schema in again.schemas.iter().filter(|s| s.ok) {
            conn.execute(&format!("ALTER TABLE {}.customers ADD COLUMN nickname text", schema.schema)).await?;
        }
        conn.close().await;
        let (sink, _) = std::sync::mpsc::channel::<String>();
        let quiet: tenantgate::live::fanout::Progress =
            std::sync::Arc::new(std::sync::Mutex::new(move |line: &str| drop(sink.send(line.to_string()))));
        let drifted = tenantgate::live::fanout::migrate_schemas(&source, &config, &base, &options(dir.path()), &fanout, quiet).await;
        let failed: Vec<_> = drifted.schemas.iter().filter(|s| !s.ok && s.schema != "tenant_03").collect();
        assert_eq!(failed.len(), 9, "{}", drifted.render());
        assert!(failed.iter().all(|s| s.outcome == "failed" && s.error.as_deref().unwrap_or_default().contains("nickname")), "{}", drifted.render());
        Ok(())
    })
    .await
}

/// A schema whose name needs quoting (a space, capitals) is migrated, backed up and
/// verified like any other, not refused with a connection error.
#[tokio::test]
async fn postgres_a_schema_named_with_a_space_and_capitals_is_migrated() -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let dir = tempfile::tempdir()?;
        let mut conn = Target::new(&database.url)?.connect(false).await?;
        conn.execute("CREATE SCHEMA \"Tenant One\"").await?;
        conn.close().await;
        let target = Target::new(&database.url)?.in_schema("Tenant One");
        let report = tenantgate::live::migrate(
            &Source::of(&app::TENANTGATE, Backend::Postgres).unwrap(),
            &app::TENANTGATE.config().unwrap(),
            &target,
            &options(dir.path()),
            &mut |_| {},
        )
        .await;
        assert_eq!(report.outcome, Outcome::Migrated, "{}", report.render());
        Ok(())
    })
    .await
}

/// Workers start on a dump's schemas while the next one is taken; when a later dump fails,
/// the schemas it was to hold are not started (they have no backup), the ones before it
/// are migrated, each from its dump, and the report says so. A re-run resumes with the rest.
#[tokio::test]
async fn a_failed_dump_leaves_its_schemas_not_started_and_a_re_run_resumes() -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let dir = tempfile::tempdir()?;
        let base = Target::new(&database.url)?;
        tenant_schemas(&base, 6).await?;
        let scratch = Scratch::new()?;
        let run = |failpoints: Option<&str>| {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_scratch_app"));
            command
                .args(["migrate", "--database-url", &database.url, "--tenant-schemas", "tenant_%"])
                .args(["--jobs", "2", "--schemas-per-dump", "2", "--backup-dir"])
                .arg(dir.path().join("backups"))
                .env("TENANTGATE_SCRATCH", scratch.dir.path());
            match failpoints {
                Some(failpoints) => command.env("FAILPOINTS", failpoints),
                None => command.env_remove("FAILPOINTS"),
            };
            command.output()
        };
        // The first dump is taken, the second fails.
        let output = run(Some("fanout::before-dump=1*off->return(fail)"))?;
        let text = printed(&output);
        assert!(!output.status.success(), "{text}");
        assert!(text.contains("dump 2 of 3") && text.contains("fanout::before-dump"), "{text}");
        assert!(text.contains("4 of the 6 schemas to migrate were not started"), "{text}");
        // The schemas not started are as they were, not drift from the migrated ones.
        assert!(!text.contains("DRIFT"), "{text}");
        let versions = |schema: &str| {
            let url = database.url.clone();
            let schema = schema.to_string();
            async move {
                let mut conn = Target::new(&url)?.in_schema(&schema).connect(false).await?;
                let versions = conn
                    .texts("SELECT coalesce(max(version), 0)::text FROM (SELECT version FROM _sqlx_migrations UNION ALL SELECT 0) v")
                    .await
                    .unwrap_or_else(|_| vec!["none".to_string()]);
                conn.close().await;
                anyhow::Ok(versions.join(""))
            }
        };
        assert_eq!(versions("tenant_00").await?, "7", "{text}");
        assert_eq!(versions("tenant_01").await?, "7", "{text}");
        for schema in ["tenant_02", "tenant_03", "tenant_04", "tenant_05"] {
            assert_eq!(versions(schema).await?, "none", "{schema} was touched:\n{text}");
        }
        let dumps = std::fs::read_dir(dir.path().join("backups"))?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".schemas.dump"))
            .count();
        assert_eq!(dumps, 1, "{text}");
        // A re-run skips the two and migrates the four, in two dumps.
        let output = run(None)?;
        let text = printed(&output);
        assert!(output.status.success(), "{text}");
        assert!(text.contains("2 of 6 schemas are already at 0007"), "{text}");
        assert!(text.contains("dump 2 of 2") && !text.contains("dump 3 of"), "{text}");
        for i in 0..6 {
            assert_eq!(versions(&format!("tenant_{i:02}")).await?, "7", "{text}");
        }
        Ok(())
    })
    .await
}

/// A fan-out's worker runs schema after schema on one connection: what a migration leaves
/// in its session (a temporary table, a prepared statement) is gone before the next
/// schema's run, which would otherwise fail on it ("already exists").
#[tokio::test]
async fn a_worker_connection_carries_no_session_state_from_one_schema_to_the_next()
-> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let dir = tempfile::tempdir()?;
        let base = Target::new(&database.url)?;
        tenant_schemas(&base, 3).await?;
        let scratch = Scratch::new()?;
        let folder = scratch.dir.path().join("migrations/postgres");
        std::fs::write(
            folder.join("0008_session_state.up.sql"),
            "CREATE TEMP TABLE session_leftover (id int);\nPREPARE session_leftover_plan AS SELECT 1;\n",
        )?;
        std::fs::write(folder.join("0008_session_state.down.sql"), "DEALLOCATE session_leftover_plan;\n")?;
        let source = scratch_source(&scratch, Backend::Postgres).await?;
        let config = scratch.config()?;
        let fanout = tenantgate::live::fanout::Fanout { pattern: "tenant_%".to_string(), jobs: 1, fail_fast: false, schemas_per_dump: None };
        let progress: tenantgate::live::fanout::Progress = std::sync::Arc::new(std::sync::Mutex::new(|_: &str| {}));
        let report = tenantgate::live::fanout::migrate_schemas(&source, &config, &base, &options(dir.path()), &fanout, progress).await;
        assert!(report.ok(), "{}", report.render());
        assert!(report.schemas.iter().all(|s| s.outcome == "migrated" && s.to_version == Some(8)), "{}", report.render());
        Ok(())
    })
    .await
}
