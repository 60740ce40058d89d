//! Verdicts that must be true and messages that must say what is wrong: the cases of the
//! hostile trial of the live runner and the harness (numbered as in the "nothing lost"
//! issue), on real databases.

use std::process::{Command, Output};

use sqlx::{Connection, PgConnection};
use tenantgate::Backend;
use tenantgate::live::{Outcome, Source, Target};
use tenantgate_harness::provision::{self, Janitor, PgOptions};
use tenantgate_tests::live::{options, prepare};
use tenantgate_tests::{Scratch, assert_fails_with, example_dir, failures, rehearse};

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// 8: a backup folder that cannot be written refuses the run before anything is written,
/// and says nothing was changed — not that the database was not restored.
#[tokio::test]
async fn an_unwritable_backup_folder_refuses_the_run_and_says_nothing_changed() -> anyhow::Result<()>
{
    for backend in Backend::ALL {
        tenantgate_tests::with_fresh_database(backend, async |database| {
            let dir = tempfile::tempdir()?;
            prepare(&database.url, 3, dir.path()).await?;
            let mut run_options = options(dir.path());
            // A file where the folder should be: nothing can be written under it.
            let blocked = dir.path().join("not-a-folder");
            std::fs::write(&blocked, "")?;
            run_options.backup_dir = blocked.join("backups");
            let report = tenantgate::live::migrate(
                &Source::of(&app::TENANTGATE, backend)?,
                &app::TENANTGATE.config()?,
                &Target::new(&database.url)?,
                &run_options,
                &mut |_| {},
            )
            .await;
            assert_eq!(report.outcome, Outcome::Refused, "{}", report.render());
            let verdict = report.verdict();
            assert!(verdict.contains("nothing was changed"), "{verdict}");
            assert!(!verdict.contains("NOT restored"), "{verdict}");
            assert!(report.report_path.is_none(), "no report could be written");
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// 8: `report: <path>` is printed only when the report was written (a full disk).
#[tokio::test]
async fn the_report_path_is_printed_only_when_the_report_was_written() -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Sqlite, async |database| {
        let dir = tempfile::tempdir()?;
        prepare(&database.url, 3, dir.path()).await?;
        let scratch = Scratch::new()?;
        let output = Command::new(env!("CARGO_BIN_EXE_scratch_app"))
            .args(["migrate", "--database-url", &database.url, "--backup-dir"])
            .arg(dir.path().join("backups"))
            .env("TENANTGATE_SCRATCH", scratch.dir.path())
            .env("FAILPOINTS", "migrate::after-backup=return(disk-full)")
            .output()?;
        let text = text(&output);
        assert!(text.contains("migrate: PASS"), "{text}");
        assert!(!text.contains("report: "), "{text}");
        assert!(text.contains("could not write the report"), "{text}");
        let partial = std::fs::read_dir(dir.path().join("backups"))?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".partial"));
        assert!(!partial, "a .partial file was left behind");
        Ok(())
    })
    .await
}

/// 11: an `isolated_from_version` beyond the last migration would switch the per-step
/// checks off without a word.
#[tokio::test]
async fn an_isolated_from_version_beyond_the_last_migration_is_an_error() {
    let scratch = Scratch::new().unwrap();
    let path = scratch.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("isolated_from_version = 7", "isolated_from_version = 70"),
    )
    .unwrap();
    for report in rehearse(&scratch.config().unwrap(), &[Backend::Sqlite]).await {
        let fatal = report.fatal.as_ref().expect("a fatal failure").render();
        assert!(
            fatal.contains("isolated_from_version = 70")
                && fatal.contains("the newest migration")
                && fatal.contains("is 7"),
            "{fatal}"
        );
    }
}

/// 11: a `default_tenant_id` no migration creates is said to be missing, once.
#[tokio::test]
async fn a_default_tenant_that_does_not_exist_is_named() {
    let scratch = Scratch::new().unwrap();
    let path = scratch.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("default_tenant_id = 1", "default_tenant_id = 999"),
    )
    .unwrap();
    for report in rehearse(&scratch.config().unwrap(), &[Backend::Sqlite]).await {
        assert_fails_with(
            &report,
            "default-tenant",
            &["the default tenant 999", "does not exist in `tenants`"],
        );
        let mentioning: Vec<String> = failures(&report)
            .into_iter()
            .filter(|f| f.contains("999"))
            .collect();
        assert!(mentioning.len() <= 2, "{mentioning:#?}");
    }
}

/// 11: a `--pg-url` user that may create databases but not roles, and that row-level
/// security filters, is told up front which privileges it lacks — not deep in 0007.
#[tokio::test]
async fn a_createdb_only_server_user_is_told_what_it_lacks_before_anything_runs() {
    let server_janitor = Janitor::new();
    let server = provision::postgres(&PgOptions::from_env(), &server_janitor)
        .await
        .unwrap();
    let mut admin = PgConnection::connect(&server.url).await.unwrap();
    sqlx::raw_sql("CREATE ROLE ci_user LOGIN CREATEDB PASSWORD 'ci-secret-pw'")
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (_, host) = server.url.split_once('@').expect("a url with a user");
    let url = format!("postgres://ci_user:ci-secret-pw@{host}");
    let janitor = Janitor::new();
    let options = PgOptions::on_server(&url);
    let error = provision::postgres(&options, &janitor)
        .await
        .map(|_| ())
        .expect_err("a CREATEDB-only user must be refused up front");
    let message = format!("{error:#}");
    assert!(
        message.contains("`ci_user`")
            && message.contains("CREATEROLE")
            && message.contains("BYPASSRLS")
            && message.contains("ALTER ROLE ci_user"),
        "{message}"
    );
    assert!(!message.contains("ci-secret-pw"), "{message}");
    assert!(janitor.finish(false).await.is_empty());
    server_janitor.finish(false).await;
}

/// 13: `--help` never prints the password of a `DATABASE_URL` in the environment.
#[test]
fn help_never_prints_the_database_password() {
    let scratch = Scratch::new().unwrap();
    for command in ["migrate", "verify", "status"] {
        let output = Command::new(env!("CARGO_BIN_EXE_scratch_app"))
            .args([command, "--help"])
            .env("TENANTGATE_SCRATCH", scratch.dir.path())
            .env(
                "DATABASE_URL",
                "postgres://admin:S3cretPassw0rd@db.internal/shop",
            )
            .output()
            .unwrap();
        let text = text(&output);
        assert!(text.contains("--database-url"), "{command}: {text}");
        assert!(!text.contains("S3cretPassw0rd"), "{command}: {text}");
    }
}

/// 14: a `--junit` path that cannot be written warns, and the PASS verdict and exit 0
/// stand.
#[test]
fn an_unwritable_junit_file_keeps_the_verdict_and_the_exit_code() {
    let output = Command::new(env!("CARGO_BIN_EXE_bare_xtask"))
        .args([
            "migrate-test",
            "--backend",
            "sqlite",
            "--junit",
            "/proc/no-such/junit.xml",
            "--config",
        ])
        .arg(example_dir("text-accounts").join("tenantgate.toml"))
        .env("CI", "true")
        .output()
        .unwrap();
    let text = text(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("migrate-test: PASS"), "{text}");
    assert!(text.contains("the verdict above stands"), "{text}");
}

/// 1: `--keep 0` would delete the backup the run takes, its only way back.
#[test]
fn keep_zero_is_refused_before_anything_runs() {
    let scratch = Scratch::new().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_scratch_app"))
        .args([
            "migrate",
            "--database-url",
            "sqlite:/nonexistent/x.db",
            "--keep",
            "0",
        ])
        .env("TENANTGATE_SCRATCH", scratch.dir.path())
        .output()
        .unwrap();
    let text = text(&output);
    assert!(!output.status.success());
    assert!(
        text.contains("--keep 0 would delete the backup this run takes"),
        "{text}"
    );
}

/// 7: Ctrl-C while a huge migration is being linted ends migrate-test within seconds,
/// with exit 130, instead of waiting for the linter.
#[test]
fn an_interrupt_during_a_long_lint_ends_the_run_at_once() {
    let example = tempfile::tempdir().unwrap();
    tenantgate_tests::copy_dir(&example_dir("text-accounts"), example.path()).unwrap();
    let mut sql = String::new();
    while sql.len() < 32 * 1024 * 1024 {
        sql.push_str("INSERT INTO accounts (slug, name) VALUES ('a-long-account-slug', 'An account with a long name');\n");
    }
    let folder = example.path().join("migrations/sqlite");
    std::fs::write(folder.join("0004_many.up.sql"), &sql).unwrap();
    std::fs::write(folder.join("0004_many.down.sql"), "DELETE FROM accounts;\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bare_xtask"))
        .args([
            "migrate-test",
            "--backend",
            "sqlite",
            "--no-reversibility",
            "--config",
        ])
        .arg(example.path().join("tenantgate.toml"))
        .env("CI", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the rehearsal has begun (its signal handler is listening then).
    let stderr = child.stderr.take().unwrap();
    let (began, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("rehearsing") {
                let _ = began.send(());
            }
        }
    });
    seen.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the rehearsal never began");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the lint finished before the interrupt"
    );
    let interrupted = std::time::Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            interrupted.elapsed() < std::time::Duration::from_secs(5),
            "still running 5 s after Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
}
