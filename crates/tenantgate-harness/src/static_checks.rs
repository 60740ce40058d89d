//! The checks `migrate-test` runs on a backend's migration files before any database
//! exists: integrity against the lock file (and that every file is a migration sqlx
//! reads), parity with the other backend when both are configured, the acknowledgements
//! of the configuration, and the linter on the new work (the migrations the lock file
//! does not hold yet, the baseline left out).

use tenantgate::Backend;
use tenantgate::checks::{CheckOutcome, Failure};
use tenantgate::config::{Acknowledgement, Config};

use crate::folder::Folder;
use crate::lint::{self, Finding, Selection, Status};
use crate::lock;

/// What the file checks of one backend found.
pub struct FileChecks {
    pub outcomes: Vec<CheckOutcome>,
    /// Lines to show beside the table: new migrations, acknowledged findings, what does
    /// not apply.
    pub notes: Vec<String>,
    pub findings: Vec<Finding>,
}

/// Integrity, parity and lint of `backend`'s folder.
pub fn run(config: &Config, backend: Backend) -> FileChecks {
    let ours = match Folder::of(config, backend) {
        Ok(folder) => folder,
        Err(error) => {
            let mut outcome = CheckOutcome::new("integrity");
            outcome.failures.push(Failure::new(format!("{error:#}")));
            return FileChecks {
                outcomes: vec![outcome],
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
    let new_work: Vec<_> = integrity
        .new
        .iter()
        .filter(|m| !config.in_baseline(m.version))
        .cloned()
        .collect();
    let findings = lint::lint_folder(config, backend, &ours, &Selection::Only(&new_work));
    for finding in &findings {
        if matches!(finding.status, Status::Acknowledged(_) | Status::Notice) {
            notes.push(format!(
                "lint: {}",
                finding.render().replace('\n', "\n    ")
            ));
        }
    }
    let mut integrity_outcome = CheckOutcome::new("integrity");
    integrity_outcome.checked = integrity.locked + integrity.new.len();
    integrity_outcome.failures = integrity.failures;
    integrity_outcome
        .failures
        .extend(acknowledgements_naming_nothing(config, backend, &ours));
    let mut outcomes = vec![integrity_outcome];
    match parity(config, backend, &ours) {
        Ok(Some(outcome)) => outcomes.push(outcome),
        Ok(None) => notes.push(if config.backends().len() == 2 {
            format!(
                "parity: not checked (`parity = false` in {})",
                crate::display_path(&config.path)
            )
        } else {
            format!("parity: not applicable (only {backend} is configured)")
        }),
        Err(failure) => {
            let mut outcome = CheckOutcome::new("parity");
            outcome.failures.push(failure);
            outcomes.push(outcome);
        }
    }
    let mut lint_outcome = CheckOutcome::new("lint");
    lint_outcome.checked = new_work.len();
    lint_outcome.failures = findings
        .iter()
        .filter(|f| f.status == Status::Error)
        .map(Finding::to_failure)
        .collect();
    outcomes.push(lint_outcome);
    FileChecks {
        outcomes,
        notes,
        findings,
    }
}

/// Parity with the other backend's folder, when the configuration checks it.
fn parity(
    config: &Config,
    backend: Backend,
    ours: &Folder,
) -> Result<Option<CheckOutcome>, Failure> {
    if !config.checks_parity() {
        return Ok(None);
    }
    let theirs =
        Folder::of(config, backend.other()).map_err(|error| Failure::new(format!("{error:#}")))?;
    let mut outcome = CheckOutcome::new("parity");
    outcome.checked = ours.migrations.len();
    outcome.failures = crate::parity::check(config, backend, ours, &theirs);
    Ok(Some(outcome))
}

/// `irreversible` and `moves-data` acknowledgements for this backend that name no
/// migration of its folder (lint acknowledgements are the linter's).
fn acknowledgements_naming_nothing(
    config: &Config,
    backend: Backend,
    folder: &Folder,
) -> Vec<Failure> {
    let config_file = crate::display_path(&config.path);
    config
        .acknowledgements
        .iter()
        .filter(|a| a.applies_to(backend))
        .filter(|a| a.rule == Acknowledgement::IRREVERSIBLE || a.rule == Acknowledgement::MOVES_DATA)
        .filter(|a| {
            // An acknowledgement for both backends names a migration of at least one.
            let here = folder.migrations.iter().any(|m| a.names(m.version, &m.stem()));
            let elsewhere = a.backend.is_none()
                && config.has(backend.other())
                && Folder::of(config, backend.other())
                    .is_ok_and(|other| other.migrations.iter().any(|m| a.names(m.version, &m.stem())));
            !here && !elsewhere
        })
        .map(|a| {
            Failure::new(format!(
                "the `{}` acknowledgement names `{}`, which is no {backend} migration",
                a.rule, a.migration
            ))
            .fix(format!("remove it from {config_file}, or correct `migration` (the file's `<version>_<name>`)"))
            .in_file(config_file.clone())
        })
        .collect()
}
