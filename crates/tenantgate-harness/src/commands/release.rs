//! `cargo xtask release`: the release manager's gate. In order, stopping at the first
//! failure: a clean working tree, format, lints, the full `migrate-test` on every
//! configured backend (PostgreSQL is never skipped when the app has it), the
//! tenant-isolation gate, the workspace tests, the release build of the app's package,
//! and a manifest beside the binary that ties it to its migrations and schema. The binary
//! then verifies the manifest itself.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use xshell::{Shell, cmd};

use tenantgate::manifest::{GateEntry, GitInfo, Manifest};

use crate::Project;
use crate::provision;
use crate::rehearsal::{self, AppUnderTest, BackendReport};
use crate::report;

#[derive(Args, Clone, Debug)]
pub struct Release {
    /// Release from a working tree with uncommitted changes (recorded in the manifest).
    #[arg(long)]
    pub allow_dirty: bool,
    /// Another tenantgate.toml, relative to the current folder; a release is refused
    /// unless it is the app's own [default: the app's own].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where PostgreSQL comes from; it is rehearsed whichever it is.
    #[command(flatten)]
    pub pg: super::PgArgs,
}

/// How a release ended.
#[derive(Debug)]
pub struct Outcome {
    pub gates: Vec<GateEntry>,
    /// The gate that refused the release and why; `None` when every gate passed.
    pub refused: Option<(String, String)>,
    /// The binary and its manifest, when the release was cut.
    pub binary: Option<PathBuf>,
    pub manifest: Option<PathBuf>,
    pub seconds: f64,
}

/// The gates, in order.
pub const GATES: [&str; 9] = [
    "clean-tree",
    "format",
    "lints",
    "migrate-test",
    "tenant-isolation",
    "workspace-tests",
    "build",
    "snapshots",
    "manifest",
];

struct Run {
    gates: Vec<GateEntry>,
    refused: Option<(String, String)>,
}

impl Run {
    /// Runs gate `name` unless an earlier one refused; `body` returns a short detail.
    fn gate(&mut self, name: &str, body: impl FnOnce() -> anyhow::Result<String>) {
        if self.refused.is_some() {
            return;
        }
        let index = GATES.iter().position(|g| *g == name).map_or(0, |i| i + 1);
        eprintln!("release: [{index}/{}] {name}", GATES.len());
        let started = Instant::now();
        let result = body();
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(detail) => {
                eprintln!(
                    "release: [{index}/{}] {name} passed in {seconds:.1} s — {detail}",
                    GATES.len()
                );
                self.gates.push(GateEntry {
                    name: name.to_string(),
                    passed: true,
                    seconds,
                    detail,
                });
            }
            Err(error) => {
                let detail = format!("{error:#}");
                self.gates.push(GateEntry {
                    name: name.to_string(),
                    passed: false,
                    seconds,
                    detail: detail.clone(),
                });
                self.refused = Some((name.to_string(), detail));
            }
        }
    }
}

impl Release {
    /// Runs the release and prints its verdict.
    pub(crate) fn run_and_report(
        &self,
        project: &Project<'_>,
    ) -> anyhow::Result<std::process::ExitCode> {
        use std::process::ExitCode;
        let outcome = self.run(project)?;
        println!();
        for gate in &outcome.gates {
            println!(
                "{:4}  {:16}  {:>7.1} s  {}",
                if gate.passed { "ok" } else { "FAIL" },
                gate.name,
                gate.seconds,
                gate.detail.lines().next().unwrap_or_default()
            );
        }
        match (&outcome.refused, &outcome.binary, &outcome.manifest) {
            (None, Some(binary), Some(manifest)) => {
                println!(
                    "release: PASS — {} and {} in {:.0} s",
                    crate::display_path(binary),
                    crate::display_path(manifest),
                    outcome.seconds
                );
                Ok(ExitCode::SUCCESS)
            }
            (Some((gate, reason)), _, _) => {
                println!("\n{reason}");
                println!(
                    "release: REFUSED at {gate} after {:.0} s; no release was cut",
                    outcome.seconds
                );
                Ok(ExitCode::FAILURE)
            }
            _ => Ok(ExitCode::FAILURE),
        }
    }

    /// Runs every gate; the error case is reserved for the release being impossible to
    /// attempt (no configuration); a refused gate is an `Outcome` with `refused` set.
    pub fn run(&self, project: &Project<'_>) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let root = crate::workspace::root();
        let app = super::migrate_test::under_test(project, self.config.as_deref())?;
        let config = &app.config;
        let sh = Shell::new()?;
        sh.change_dir(root);
        let mut run = Run {
            gates: Vec::new(),
            refused: None,
        };
        let mut git = GitInfo {
            commit: String::new(),
            dirty: false,
            allow_dirty: self.allow_dirty,
        };
        run.gate("clean-tree", || {
            let (commit, dirty) = git_state(&sh)?;
            git.commit = commit;
            git.dirty = !dirty.is_empty();
            if dirty.is_empty() {
                return Ok(format!("clean at {}", short(&git.commit)));
            }
            let listing = dirty.lines().take(10).collect::<Vec<_>>().join("\n  ");
            if self.allow_dirty {
                Ok(format!(
                    "uncommitted changes allowed by --allow-dirty (recorded):\n  {listing}"
                ))
            } else {
                bail!(
                    "the working tree has uncommitted changes:\n  {listing}\nfix: commit or stash them, or pass --allow-dirty (recorded in the manifest)"
                )
            }
        });
        run.gate("format", || {
            // As the developer runs cargo: run from a test, the test's CARGO_MANIFEST_DIR
            // would rerun build scripts and rebuild the developer's whole tree after it.
            crate::workspace::run_cargo(&["fmt", "--all", "--check"])
                .context("cargo fmt --check found unformatted code; fix: `cargo fmt --all`")?;
            Ok("cargo fmt --check".to_string())
        });
        run.gate("lints", || {
            crate::workspace::run_cargo(crate::workspace::CLIPPY)
                .context("cargo clippy found warnings; fix them (nothing is allowed at release)")?;
            Ok("cargo clippy -D warnings".to_string())
        });
        let mut reports: Vec<BackendReport> = Vec::new();
        run.gate("migrate-test", || {
            reports = self.migrate_test(&app)?;
            let failed: Vec<String> = reports
                .iter()
                .filter(|r| !r.passed())
                .map(|r| r.backend.to_string())
                .collect();
            if !failed.is_empty() {
                let lines: Vec<String> = reports
                    .iter()
                    .flat_map(|r| {
                        r.failures().map(move |(check, failure)| {
                            format!("{} · {check}: {}", r.backend, failure.render().replace('\n', "\n    "))
                        })
                    })
                    .collect();
                bail!("migrate-test failed on {}:\n  {}", failed.join(" and "), lines.join("\n  "));
            }
            // A release ships locked migrations only: what it carries can no longer change
            // under the databases that will run it.
            for backend in config.backends() {
                let folder = crate::folder::Folder::of(config, backend)?;
                let unlocked: Vec<String> = crate::lock::check(&folder)
                    .new
                    .iter()
                    .map(|m| m.stem())
                    .collect();
                if !unlocked.is_empty() {
                    bail!(
                        "{backend} migrations not in the lock file: {}\nfix: run `cargo xtask migrations lock` and commit the lock files",
                        unlocked.join(", ")
                    );
                }
            }
            for report in &reports {
                if report.source != "embedded in the app" {
                    bail!(
                        "{} rehearsed {}, not the migrations embedded in app: a release must test what the binary carries\nfix: release with the app's own configuration",
                        report.backend,
                        report.source
                    );
                }
            }
            Ok(reports
                .iter()
                .map(|r| format!("{}: {} migrations, {} checks", r.backend, r.steps.len(), r.checks.len()))
                .collect::<Vec<_>>()
                .join("; "))
        });
        run.gate("tenant-isolation", || isolation_gate(config, &reports));
        run.gate("workspace-tests", || {
            let mut totals = crate::workspace_tests::Totals::default();
            crate::workspace_tests::workspace_tests(
                &mut totals,
                &crate::workspace_tests::Suite::default(),
            )?;
            Ok(format!(
                "{} passed, {} failed",
                totals.passed, totals.failed
            ))
        });
        let target = target_dir(root);
        let package = project.package;
        let mut binary = target.join("release").join(package);
        run.gate("build", || {
            binary = crate::workspace::build_binary(package, true)?;
            Ok(format!(
                "{} ({} bytes)",
                crate::display_path(&binary),
                std::fs::metadata(&binary)?.len()
            ))
        });
        run.gate("snapshots", || embedded_snapshots(project, config));
        let manifest_path = binary.with_file_name(format!(
            "{}.manifest.json",
            binary
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(package)
        ));
        let gates_so_far = run.gates.clone();
        run.gate("manifest", || {
            let toolchain = cmd!(sh, "rustc --version")
                .quiet()
                .read()
                .context("run rustc --version")?;
            let manifest = Manifest::describe(
                project.embedded_app()?,
                &binary,
                crate::display_path(&binary),
                git.clone(),
                toolchain,
                gates_so_far,
            )
            .with_context(|| format!("hash {}", binary.display()))?;
            let json = serde_json::to_string_pretty(&manifest)?;
            std::fs::write(&manifest_path, json + "\n")
                .with_context(|| format!("write {}", manifest_path.display()))?;
            // The binary checks the manifest, as an operator will.
            cmd!(sh, "{binary} verify-manifest {manifest_path}")
                .run()
                .context("the new binary rejected its own manifest")?;
            Ok(format!(
                "{}: {} migrations, {} snapshots, binary sha256 {}",
                crate::display_path(&manifest_path),
                manifest.migrations.len(),
                manifest.snapshots.len(),
                &manifest.binary.sha256[..16]
            ))
        });
        let cut = run.refused.is_none();
        Ok(Outcome {
            gates: run.gates,
            refused: run.refused,
            binary: cut.then(|| binary.clone()),
            manifest: cut.then(|| manifest_path.clone()),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The full rehearsal on every configured backend, with the same cleanup as `migrate-test`.
    fn migrate_test(&self, app: &AppUnderTest<'_>) -> anyhow::Result<Vec<BackendReport>> {
        let pg = self.pg.options();
        provision::with_janitor(async |janitor| {
            let options = rehearsal::Options {
                progress: rehearsal::Progress::Lines,
                ..rehearsal::Options::default()
            };
            let reports =
                rehearsal::rehearse_all(&app.config.backends(), app, &pg, janitor, options).await;
            eprint!("{}", report::table(&reports));
            Ok(reports)
        })
    }
}

/// The tenant-isolation gate, read from the rehearsal: every static rule and every
/// behavioural case passed on every configured backend, and cases actually ran.
fn isolation_gate(
    config: &tenantgate::Config,
    reports: &[BackendReport],
) -> anyhow::Result<String> {
    let mut details = Vec::new();
    for backend in config.backends() {
        let Some(report) = reports.iter().find(|r| r.backend == backend) else {
            bail!("{backend} was not rehearsed");
        };
        let isolation: Vec<_> = report
            .checks
            .iter()
            .filter(|c| {
                tenantgate::rules::RULES.contains(&c.name)
                    || c.name == "isolation-steps"
                    || c.name == "isolation-behaviour"
            })
            .collect();
        if let Some(failed) = isolation.iter().find(|c| !c.passed()) {
            bail!("{backend}: {} failed", failed.name);
        }
        if report.isolation_cases == 0 {
            bail!("{backend}: no behavioural isolation case ran, so nothing was proven");
        }
        details.push(format!(
            "{backend}: {} rules, {} cases",
            isolation.len().saturating_sub(2),
            report.isolation_cases
        ));
    }
    let isolation = match &config.tenancy.isolation {
        tenantgate::config::Isolation::RowLevelSecurity(rls)
            if config.has(tenantgate::Backend::Postgres) =>
        {
            format!("row-level security as `{}`", rls.app_role)
        }
        tenantgate::config::Isolation::WithoutRowLevelSecurity { reason } => {
            format!("without row-level security ({reason})")
        }
        tenantgate::config::Isolation::RowLevelSecurity(_) => "SQLite only".to_string(),
    };
    Ok(format!("{}; {isolation}", details.join("; ")))
}

/// The snapshots the app embeds are the ones the rehearsal just asserted.
fn embedded_snapshots(
    project: &Project<'_>,
    config: &tenantgate::Config,
) -> anyhow::Result<String> {
    let mut checked = Vec::new();
    for backend in config.backends() {
        let file = config.migrations.snapshots.join(format!("{backend}.snap"));
        let on_disk = std::fs::read_to_string(&file)
            .with_context(|| format!("read {}", crate::display_path(&file)))?;
        match project
            .embedded_app()?
            .embedded(backend)
            .and_then(|e| e.snapshot)
        {
            Some(embedded) if embedded == on_disk => checked.push(backend.to_string()),
            Some(_) => bail!(
                "the {backend} snapshot the app embeds differs from {}: the binary would verify live databases against another schema\nfix: rebuild (`cargo build`) so that the app embeds the snapshot migrate-test asserted",
                crate::display_path(&file)
            ),
            None => bail!(
                "the app embeds no {backend} snapshot, so `verify` could not check a live database's schema\nfix: set `snapshot: Some(include_str!(\"…/{backend}.snap\"))` in the app's tenantgate::App"
            ),
        }
    }
    Ok(format!("{} embedded as asserted", checked.join(", ")))
}

/// The commit and `git status --porcelain`.
fn git_state(sh: &Shell) -> anyhow::Result<(String, String)> {
    let commit = cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .context("read the git commit; fix: release from a git clone of the project")?;
    let dirty = cmd!(sh, "git status --porcelain").quiet().read()?;
    Ok((commit, dirty))
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}
