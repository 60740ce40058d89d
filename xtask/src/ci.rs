//! `cargo xtask ci`: the gate CI runs, in order, stopping at the first failure, and
//! closing with one `N passed, N failed` line over every test it ran.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use clap::Args;
use xshell::{Shell, cmd};

#[derive(Args)]
pub(crate) struct Ci {}

impl Ci {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let sh = Shell::new()?;
        sh.change_dir(xtask::project_root());
        let harness = std::env::current_exe().context("locate the xtask binary")?;
        step("format", || {
            cmd!(sh, "cargo fmt --all --check")
                .run()
                .context("cargo fmt --check found unformatted code; fix: `cargo fmt --all`")
        })?;
        step("lints", || {
            cmd!(
                sh,
                "cargo clippy --workspace --all-targets --quiet -- -D warnings"
            )
            .run()
            .context("cargo clippy found warnings")
        })?;
        let mut totals = Totals::default();
        step("workspace tests", || workspace_tests(&mut totals))?;
        step("migrate-test", || {
            cmd!(sh, "{harness} migrate-test")
                .run()
                .context("migrate-test failed")
        })?;
        totals.passed += 1;
        eprintln!(
            "ci: every step passed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        println!("ci: {} passed, {} failed", totals.passed, totals.failed);
        Ok(())
    }
}

#[derive(Default)]
struct Totals {
    passed: usize,
    failed: usize,
}

/// `cargo test --workspace`, echoing its output and adding up its `test result:` lines.
fn workspace_tests(totals: &mut Totals) -> anyhow::Result<()> {
    let mut child = Command::new("cargo")
        .args(["test", "--workspace"])
        .current_dir(xtask::project_root())
        .stdout(Stdio::piped())
        .spawn()
        .context("run cargo test")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.context("read cargo test's output")?;
        println!("{line}");
        if let Some(result) = line.strip_prefix("test result: ") {
            totals.passed += count_before(result, " passed");
            totals.failed += count_before(result, " failed");
        }
    }
    if !child.wait().context("wait for cargo test")?.success() {
        println!(
            "ci: {} passed, {} failed",
            totals.passed,
            totals.failed.max(1)
        );
        bail!("workspace tests failed");
    }
    Ok(())
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

fn step(name: &str, run: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    eprintln!("ci: {name}");
    let started = std::time::Instant::now();
    run()?;
    eprintln!(
        "ci: {name} passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
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
