//! `cargo xtask ci`: the gate CI runs, in order, stopping at the first failure, and
//! closing with one `N passed, N failed` line over every test it ran.

use anyhow::Context;
use clap::Args;
use xshell::{Shell, cmd};

use crate::Project;
use crate::workspace_tests::{Totals, workspace_tests};

#[derive(Args)]
pub(crate) struct Ci {}

impl Ci {
    pub(crate) fn run(self, _project: &Project<'_>) -> anyhow::Result<std::process::ExitCode> {
        let started = std::time::Instant::now();
        let sh = Shell::new()?;
        sh.change_dir(crate::workspace::root());
        let harness = std::env::current_exe().context("locate the xtask binary")?;
        step("format", || {
            cargo(&["fmt", "--all", "--check"])
                .context("cargo fmt --check found unformatted code; fix: `cargo fmt --all`")
        })?;
        step("lints", || {
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ])
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
        Ok(std::process::ExitCode::SUCCESS)
    }
}

/// `cargo <args>` in the workspace, with the environment the developer's own builds have
/// (so that the tests' build reuses what this one compiles).
fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let status = crate::workspace::cargo()
        .args(args)
        .status()
        .with_context(|| format!("run cargo {}", args.join(" ")))?;
    anyhow::ensure!(status.success(), "cargo {} exited with {status}", args[0]);
    Ok(())
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
