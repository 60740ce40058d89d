//! The checks `migrate-test` runs on a backend's migration files before any database
//! exists: integrity against the lock file, parity with the other backend, and the linter
//! on the new work (the migrations the lock file does not hold yet).

use app::Backend;

use crate::checks::{CheckOutcome, Failure};
use crate::config::Config;
use crate::folder::Folder;
use crate::lint::{self, Finding, Selection, Status};
use crate::lock;

/// What the file checks of one backend found.
pub struct FileChecks {
    pub outcomes: Vec<CheckOutcome>,
    /// Lines to show beside the table: new migrations, acknowledged findings.
    pub notes: Vec<String>,
    pub findings: Vec<Finding>,
}

/// Integrity, parity and lint of `backend`'s folder.
pub fn run(config: &Config, backend: Backend) -> FileChecks {
    let other = backend.other();
    let (ours, theirs) = match (
        Folder::read(config.migrations_dir(backend)),
        Folder::read(config.migrations_dir(other)),
    ) {
        (Ok(ours), Ok(theirs)) => (ours, theirs),
        (Err(error), _) | (_, Err(error)) => {
            let failure = Failure::new(format!("{error:#}"));
            return FileChecks {
                outcomes: vec![CheckOutcome {
                    name: "integrity",
                    checked: 0,
                    failures: vec![failure],
                }],
                notes: Vec::new(),
                findings: Vec::new(),
            };
        }
    };
    let integrity = lock::check(&ours);
    let mut notes = Vec::new();
    if !integrity.new.is_empty() {
        notes.push(format!(
            "{} new migration(s), not locked yet, linted: {}",
            integrity.new.len(),
            integrity
                .new
                .iter()
                .map(|m| m.stem())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let findings = lint::lint_folder(config, backend, &ours, &Selection::Only(&integrity.new));
    for finding in &findings {
        if let Status::Acknowledged(_) = finding.status {
            notes.push(format!(
                "lint: {}",
                finding.describe().replace('\n', "\n    ")
            ));
        }
    }
    let parity = crate::parity::check(config, backend, &ours, &theirs);
    FileChecks {
        outcomes: vec![
            CheckOutcome {
                name: "integrity",
                checked: integrity.locked + integrity.new.len(),
                failures: integrity.failures,
            },
            CheckOutcome {
                name: "parity",
                checked: ours.migrations.len(),
                failures: parity,
            },
            CheckOutcome {
                name: "lint",
                checked: integrity.new.len(),
                failures: findings
                    .iter()
                    .filter(|f| f.status == Status::Error)
                    .map(Finding::to_failure)
                    .collect(),
            },
        ],
        notes,
        findings,
    }
}
