//! `cargo xtask ci`: the gate CI runs, in order, stopping at the first failure.

use anyhow::Context;
use clap::Args;
use xshell::{Shell, cmd};

#[derive(Args)]
pub(crate) struct Ci {}

impl Ci {
    pub(crate) fn run(self) -> anyhow::Result<()> {
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
        step("workspace tests", || {
            cmd!(sh, "cargo test --workspace --quiet")
                .run()
                .context("workspace tests failed")
        })?;
        step("migrate-test", || {
            cmd!(sh, "{harness} migrate-test")
                .run()
                .context("migrate-test failed")
        })?;
        eprintln!("ci: every step passed");
        Ok(())
    }
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
