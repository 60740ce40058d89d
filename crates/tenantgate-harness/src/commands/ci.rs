//! `cargo xtask ci`: the gate CI runs, in order, stopping at the first failure, and
//! closing with one `N passed, N failed` line over every test it ran.

use anyhow::Context;
use clap::Args;
use xshell::{Shell, cmd};

use crate::Project;
use crate::workspace::run_cargo;
use crate::workspace_tests::{Suite, Totals, workspace_tests};

#[derive(Args)]
pub(crate) struct Ci {
    /// PostgreSQL majors to gate on, comma-separated (each needs its image on this
    /// machine: `cargo xtask pg-image --version <major>`, or the official
    /// `postgres:<major>`): the whole suite runs on the first, the live-runner tests on
    /// every other, and `migrate-test` on all of them. Default: the one image of the
    /// environment.
    #[arg(long, value_delimiter = ',')]
    pg_versions: Vec<u32>,
}

/// The test binaries of the live runner (`app migrate`, `app verify`, the tenant-schema
/// fan-out), run again on every further major.
const LIVE_RUNNER_TESTS: &[&str] = &["live_runner", "live_runner_volume", "app_status"];

impl Ci {
    pub(crate) fn run(self, _project: &Project<'_>) -> anyhow::Result<std::process::ExitCode> {
        let started = std::time::Instant::now();
        let sh = Shell::new()?;
        sh.change_dir(crate::workspace::root());
        let harness = std::env::current_exe().context("locate the xtask binary")?;
        // Each major's image, ours or the official one, is on this machine before anything
        // runs: the servers start only once the tests are compiled.
        let missing: Vec<u32> = self
            .pg_versions
            .iter()
            .copied()
            .filter(|major| !crate::provision::image_exists(&crate::pg_image::image_for(*major)))
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "--pg-versions needs an image of {}, which this Docker engine lacks\nfix: {}",
            missing
                .iter()
                .map(|major| format!("PostgreSQL {major}"))
                .collect::<Vec<_>>()
                .join(", "),
            missing
                .iter()
                .map(|major| format!(
                    "PostgreSQL {major}: {}",
                    crate::pg_image::how_to_get(*major)
                ))
                .collect::<Vec<_>>()
                .join("\n     ")
        );
        step("format", || {
            run_cargo(&["fmt", "--all", "--check"])
                .context("cargo fmt --check found unformatted code; fix: `cargo fmt --all`")
        })?;
        step("lints", || {
            run_cargo(crate::workspace::CLIPPY).context("cargo clippy found warnings")
        })?;
        let mut totals = Totals::default();
        let first = self.pg_versions.first().copied();
        let tested = step("workspace tests", || {
            workspace_tests(
                &mut totals,
                &Suite {
                    pg_major: first,
                    cargo_args: Vec::new(),
                },
            )
        })
        .and_then(|()| {
            for major in self.pg_versions.iter().skip(1) {
                step(&format!("live-runner tests on PostgreSQL {major}"), || {
                    // `--workspace` with test names, not `-p`: the same features as the
                    // suite's build, so nothing is compiled again.
                    let mut args = vec!["--workspace".to_string()];
                    for test in LIVE_RUNNER_TESTS {
                        args.extend(["--test".to_string(), test.to_string()]);
                    }
                    workspace_tests(
                        &mut totals,
                        &Suite {
                            pg_major: Some(*major),
                            cargo_args: args,
                        },
                    )
                })?;
            }
            Ok(())
        });
        if let Err(error) = tested {
            println!(
                "ci: {} passed, {} failed",
                totals.passed,
                totals.failed.max(1)
            );
            return Err(error);
        }
        step("migrate-test", || {
            let versions = self
                .pg_versions
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let versions = if versions.is_empty() {
                Vec::new()
            } else {
                vec!["--pg-versions".to_string(), versions]
            };
            cmd!(sh, "{harness} migrate-test {versions...}")
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
