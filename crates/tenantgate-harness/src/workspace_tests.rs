//! The workspace's tests (`cargo nextest run`, else `cargo test`), echoed as they run,
//! with their totals added up: `cargo xtask ci` and `cargo xtask release` both run them and
//! report the totals.
//!
//! The suite shares its PostgreSQL: one server per major for the whole run, started
//! before the first test binary and removed after the last (also when a test fails, and
//! on Ctrl-C or SIGTERM), instead of a container per test. Every test binary finds it in
//! `TENANTGATE_PG_URL` with `TENANTGATE_PG_PROVIDER=url`, and each test gets a database
//! of its own on it (`CREATE DATABASE`, some 20 ms). Tests that change what belongs to
//! the whole server (a role's memberships, a restart) start a server of their own.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

use crate::provision::{self, Janitor, PgOptions, PgProviderChoice};

#[derive(Default)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
}

/// Which tests, on which PostgreSQL.
#[derive(Clone, Debug, Default)]
pub struct Suite {
    /// The major of the shared server: its image is `tenantgate/postgres:<major>`. `None`:
    /// the image the environment names (TENANTGATE_PG_IMAGE), else local binaries.
    pub pg_major: Option<u32>,
    /// What `cargo test` gets besides `--workspace` when empty (`-p tenantgate-tests --test
    /// live_runner`…).
    pub cargo_args: Vec<String>,
}

/// The running test command, for the interruption to stop it with the server it uses.
static RUNNING: AtomicU32 = AtomicU32::new(0);

/// Runs the suite on a server of its own major, shared by every test, and removes the
/// server afterwards whatever happened.
pub fn workspace_tests(totals: &mut Totals, suite: &Suite) -> anyhow::Result<()> {
    let suite = suite.clone();
    let counted = provision::with_janitor(async move |janitor: &Janitor| {
        let env = shared_server(&suite, janitor).await?;
        let running = tokio::task::spawn_blocking(move || {
            let mut totals = Totals::default();
            let result = run_cargo_test(&suite.cargo_args, &env, &mut totals);
            (totals, result)
        });
        // The interruption ends this future, not the blocking `cargo test`: stop it
        // before its server is removed under it.
        struct StopOnDrop;
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                let pid = RUNNING.swap(0, Ordering::SeqCst);
                if pid != 0 {
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
            }
        }
        let _stop = StopOnDrop;
        let (counted, result) = running.await.context("wait for cargo test")?;
        std::mem::forget(_stop);
        anyhow::Ok((counted, result))
    })?;
    let (counted, result) = counted;
    totals.passed += counted.passed;
    totals.failed += counted.failed;
    result
}

/// Starts the suite's server and says how the tests find it.
async fn shared_server(
    suite: &Suite,
    janitor: &Janitor,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut pg = PgOptions::from_env();
    pg.server_url = None;
    pg.choice = PgProviderChoice::Auto;
    if let Some(major) = suite.pg_major {
        pg.image = crate::pg_image::image_for(major);
        pg.choice = PgProviderChoice::Container;
    }
    let server = provision::postgres(&pg, janitor)
        .await
        .context("start the PostgreSQL server the tests share")?;
    eprintln!(
        "tests: one PostgreSQL server for every test: {}{}",
        server.provider,
        server
            .note
            .as_deref()
            .map(|note| format!(" ({note})"))
            .unwrap_or_default()
    );
    let mut env = BTreeMap::from([
        ("TENANTGATE_PG_PROVIDER".to_string(), "url".to_string()),
        ("TENANTGATE_PG_URL".to_string(), server.url.clone()),
    ]);
    if let provision::Provider::Container { image } = &server.provider {
        env.insert("TENANTGATE_PG_IMAGE".to_string(), image.clone());
        if let Some(major) = suite.pg_major
            && let Some(dir) = client_tools(major, image, janitor)?
        {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![dir];
            dirs.extend(std::env::split_paths(&path));
            let joined = std::env::join_paths(dirs).context("PATH with the client tools")?;
            env.insert("PATH".to_string(), joined.to_string_lossy().into_owned());
        }
    }
    Ok(env)
}

/// pg_dump, pg_restore and psql of `major` for the live runner's backups, when this machine
/// has none that new: wrappers that run the image's own in a container on the host's
/// network (the temporary folders and the workspace mounted where they are).
fn client_tools(major: u32, image: &str, janitor: &Janitor) -> anyhow::Result<Option<PathBuf>> {
    let have = tenantgate::live::backup::pg_tool("pg_dump", None, major)
        .ok()
        .and_then(|path| tenantgate::live::backup::tool_major(&path))
        .is_some_and(|found| found == major);
    if have {
        return Ok(None);
    }
    let dir = provision::temp_dir(&format!("pg{major}-clients"))?;
    let workspace = crate::workspace::root();
    let temp = std::env::temp_dir();
    for tool in ["pg_dump", "pg_restore", "psql"] {
        let script = format!(
            "#!/bin/sh\n# {tool} of PostgreSQL {major}, from {image}: this machine has none that new.\n\
             exec docker run --rm -i --network host -e PGPASSWORD -e PGOPTIONS \\\n  \
             -v {temp}:{temp} -v {workspace}:{workspace} -w \"$PWD\" \\\n  \
             --entrypoint {tool} {image} \"$@\"\n",
            temp = temp.display(),
            workspace = workspace.display(),
        );
        let path = dir.path().join(tool);
        std::fs::write(&path, script).with_context(|| format!("write {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    let path = dir.path().to_path_buf();
    janitor.register(provision::Resource::Folder(dir));
    eprintln!(
        "tests: pg_dump, pg_restore and psql {major} run from {image} (this machine has no client that new)"
    );
    Ok(Some(path))
}

/// The suite: `cargo nextest run` where cargo-nextest is installed (every test of every
/// binary in one queue, so that a binary's long test does not hold the next binary
/// back), else `cargo test` (binaries one after another), said on one line. Its output
/// is echoed and its totals added up.
fn run_cargo_test(
    args: &[String],
    env: &BTreeMap<String, String>,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let nextest = crate::workspace::cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let mut command = crate::workspace::cargo();
    if nextest {
        // As many tests at once as cores (nextest's default): with more, the tests that
        // time the answer to a signal missed their deadlines on a 2-core machine.
        command.args(["nextest", "run", "--no-fail-fast"]);
    } else {
        eprintln!(
            "tests: cargo-nextest is not installed: cargo test runs the test binaries one after another (install it: `cargo install cargo-nextest --locked`)"
        );
        command.arg("test");
    }
    if args.is_empty() {
        command.arg("--workspace");
    } else {
        command.args(args);
    }
    command.envs(env).stdout(Stdio::piped());
    if nextest {
        command.stderr(Stdio::piped());
    }
    let mut child = command.spawn().context("run the test suite")?;
    RUNNING.store(child.id(), Ordering::SeqCst);
    // nextest's summary is on stderr, cargo test's `test result:` lines on stdout.
    let stderr = child.stderr.take().map(|stderr| {
        std::thread::spawn(move || {
            let mut counted = Totals::default();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if let Some((passed, failed)) = nextest_summary(&line) {
                    counted = Totals { passed, failed };
                }
            }
            counted
        })
    });
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.context("read the test suite's output")?;
        println!("{line}");
        if let Some(result) = line.strip_prefix("test result: ") {
            totals.passed += count_before(result, " passed");
            totals.failed += count_before(result, " failed");
        }
    }
    if let Some(stderr) = stderr {
        let counted = stderr
            .join()
            .map_err(|_| anyhow::anyhow!("reading the test suite's output failed"))?;
        totals.passed += counted.passed;
        totals.failed += counted.failed;
    }
    let status = child.wait().context("wait for the test suite")?;
    RUNNING.store(0, Ordering::SeqCst);
    if !status.success() {
        totals.failed = totals.failed.max(1);
        bail!("workspace tests failed");
    }
    Ok(())
}

/// In nextest's last line, "Summary [ 58.1s] 265 tests run: 263 passed, 1 failed, 1 timed
/// out, 0 skipped", the passed and the failed (timed out counts as failed).
fn nextest_summary(line: &str) -> Option<(usize, usize)> {
    let (_, counts) = line
        .trim_start()
        .strip_prefix("Summary")?
        .split_once("tests run:")?;
    let mut passed = 0;
    let mut failed = 0;
    for part in counts.split(',') {
        let mut words = part.split_whitespace();
        let (Some(number), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(number) = number.parse::<usize>() else {
            continue;
        };
        match what {
            "passed" => passed += number,
            "failed" | "timed" => failed += number,
            _ => {}
        }
    }
    Some((passed, failed))
}

/// In "ok. 7 passed; 0 failed; …", the number before `word`.
fn count_before(text: &str, word: &str) -> usize {
    text.split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(word.trim_start())
        })
        .and_then(|number| number.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_read_from_nextests_summary() {
        let line = "     Summary [ 312.407s] 265 tests run: 262 passed (3 slow), 2 failed, 1 timed out, 0 skipped";
        assert_eq!(super::nextest_summary(line), Some((262, 3)));
        assert_eq!(
            super::nextest_summary("     Summary [   1.0s] 7 tests run: 7 passed, 0 skipped"),
            Some((7, 0))
        );
        assert_eq!(
            super::nextest_summary("        PASS [   0.1s] summary tests run"),
            None
        );
    }

    #[test]
    fn counts_are_read_from_cargo_test_result_lines() {
        let line =
            "ok. 7 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 6.48s";
        assert_eq!(super::count_before(line, " passed"), 7);
        assert_eq!(super::count_before(line, " failed"), 2);
        assert_eq!(
            super::count_before("FAILED. 3 passed; 1 failed; 0 ignored", " failed"),
            1
        );
    }
}
