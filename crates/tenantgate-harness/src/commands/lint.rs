//! `cargo xtask lint`: the unsafe-migration linter on its own, without a database.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::Project;
use crate::folder::Folder;
use crate::lint::{self, Finding, Selection, Status};
use crate::lock;

#[derive(Args)]
pub(crate) struct Lint {
    /// Lint every migration, not only those newer than the lock file; findings in
    /// locked migrations are shown for information and do not fail.
    #[arg(long)]
    all: bool,
    /// Backend to lint; both when not given.
    #[arg(long, value_parser = ["postgres", "sqlite"])]
    backend: Option<String>,
    /// Output: text for people, GitHub workflow commands, or JSON.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// List the rules and exit.
    #[arg(long)]
    rules: bool,
    /// Another app's tenantgate.toml, relative to the current folder [default: the app's own].
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Github,
    Json,
}

impl Lint {
    pub(crate) fn run(self, project: &Project<'_>) -> anyhow::Result<ExitCode> {
        if self.rules {
            print!("{}", lint::rule_list());
            return Ok(ExitCode::SUCCESS);
        }
        let config = super::load_config(project, self.config.as_deref())?;
        let mut findings: Vec<Finding> = Vec::new();
        let mut linted = 0;
        let mut problems = Vec::new();
        for backend in config.backends() {
            if self.backend.as_deref().is_some_and(|b| b != backend.name()) {
                continue;
            }
            let folder = Folder::of(&config, backend)?;
            problems.extend(folder.problems.iter().cloned());
            let integrity = lock::check(&folder);
            let locked: BTreeSet<i64> = folder
                .migrations
                .iter()
                .map(|m| m.version)
                .filter(|v| !integrity.new.iter().any(|n| n.version == *v))
                .collect();
            let selection = if self.all {
                linted += folder
                    .migrations
                    .iter()
                    .filter(|m| !config.in_baseline(m.version))
                    .count();
                Selection::All { locked: &locked }
            } else {
                linted += integrity
                    .new
                    .iter()
                    .filter(|m| !config.in_baseline(m.version))
                    .count();
                Selection::Only(&integrity.new)
            };
            findings.extend(lint::lint_folder(&config, backend, &folder, &selection));
        }
        let errors = findings
            .iter()
            .filter(|f| f.status == Status::Error)
            .count()
            + problems.len();
        match self.format {
            Format::Human => {
                for problem in &problems {
                    println!(
                        "error        {}",
                        problem.render().replace('\n', "\n             ")
                    );
                }
                print!("{}", lint::render(&findings));
                let acknowledged = findings
                    .iter()
                    .filter(|f| matches!(f.status, Status::Acknowledged(_)))
                    .count();
                println!(
                    "lint: {} — {linted} migration file(s), {errors} error(s), {acknowledged} acknowledged{}",
                    if errors == 0 { "PASS" } else { "FAIL" },
                    if self.all {
                        ""
                    } else {
                        " (new work only; --all for every migration)"
                    }
                );
            }
            Format::Github => {
                for problem in &problems {
                    println!(
                        "::error file={},title=migration file::{}",
                        problem.file.as_deref().unwrap_or_default(),
                        crate::report::annotation_data(&problem.render())
                    );
                }
                print!("{}", lint::github_annotations(&findings));
            }
            Format::Json => {
                let json: Vec<serde_json::Value> = findings
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "backend": f.backend.name(),
                            "rule": f.rule,
                            "file": f.file,
                            "line": f.line,
                            "message": f.message,
                            "help": f.help,
                            "status": match &f.status {
                                Status::Error => "error",
                                Status::Acknowledged(_) => "acknowledged",
                                Status::Locked => "locked",
                                Status::Notice => "notice",
                            },
                            "reason": match &f.status {
                                Status::Acknowledged(reason) => Some(reason.as_str()),
                                _ => None,
                            },
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json)?);
            }
        }
        Ok(if errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
