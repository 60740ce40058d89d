//! What a run did, for people (a short table and a verdict line) and for pipelines (JSON,
//! written beside the backup).

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Pending migrations applied and the result verified.
    Migrated,
    /// Nothing pending, and the database verified.
    UpToDate,
    /// The plan was rehearsed in a transaction and rolled back.
    DryRun,
    /// Validation failed: nothing was changed.
    Refused,
    /// Apply or verify failed; the database was restored to its state before the run.
    RolledBack,
    /// Apply or verify failed and the database was not (or could not be) restored.
    Failed,
    /// The run had not finished (it is written at the start, then rewritten).
    Running,
}

impl Outcome {
    pub fn ok(self) -> bool {
        matches!(
            self,
            Outcome::Migrated | Outcome::UpToDate | Outcome::DryRun
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// One check inside a step.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

impl Check {
    pub fn pass(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            status: Status::Pass,
            detail: detail.into(),
        }
    }

    pub fn fail(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            status: Status::Fail,
            detail: detail.into(),
        }
    }

    pub fn skip(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            status: Status::Skip,
            detail: detail.into(),
        }
    }
}

/// One step of the sequence: validate, dry-run, backup, apply, verify, rollback.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub status: Status,
    pub seconds: f64,
    pub detail: String,
    pub checks: Vec<Check>,
}

impl Step {
    pub fn from_checks(step: &'static str, seconds: f64, checks: Vec<Check>) -> Step {
        let failed: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Fail).collect();
        let (status, detail) = if failed.is_empty() {
            let passed = checks.iter().filter(|c| c.status == Status::Pass).count();
            (Status::Pass, format!("{passed} checks passed"))
        } else {
            let names: Vec<&str> = failed.iter().map(|c| c.name.as_str()).collect();
            (Status::Fail, format!("failed: {}", names.join(", ")))
        };
        Step {
            step,
            status,
            seconds,
            detail,
            checks,
        }
    }
}

/// One migration the run applied or rehearsed.
#[derive(Clone, Debug, Serialize)]
pub struct MigrationRun {
    pub version: i64,
    pub file: String,
    pub status: Status,
    pub seconds: f64,
    /// PostgreSQL attempts (a migration that hit lock_timeout is retried).
    pub attempts: u32,
    /// Dry run: rows the statements changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_affected: Option<u64>,
    /// Dry run: the locks it took (`relation: mode`), held until its transaction ends.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupInfo {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub seconds: f64,
    /// How it was checked: `pg_restore --list`, `PRAGMA integrity_check`, a restore.
    pub verified_by: Vec<String>,
}

/// The report of one target (a database, or one tenant schema).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub app: String,
    pub app_version: String,
    pub backend: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub started_at: String,
    pub seconds: f64,
    pub outcome: Outcome,
    pub pid: u32,
    /// The highest applied version before and after the run.
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub steps: Vec<Step>,
    pub migrations: Vec<MigrationRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupInfo>,
    /// Why the run failed, when it did: the first failing check or error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_path: Option<String>,
    /// The schema text verification read last (compared across tenant schemas).
    #[serde(skip)]
    pub schema_text: Option<String>,
}

impl Report {
    /// An unfinished report of `tool` on `target`, started now.
    pub fn new(tool: &'static str, target: &super::Target, source: &super::Source<'_>) -> Report {
        Report {
            tool,
            app: source.app_name.clone(),
            app_version: source.app_version.clone(),
            backend: target.backend.to_string(),
            target: target.label(),
            schema: target.schema.clone(),
            started_at: jiff::Timestamp::now().to_string(),
            seconds: 0.0,
            outcome: Outcome::Running,
            pid: std::process::id(),
            from_version: None,
            to_version: None,
            steps: Vec::new(),
            migrations: Vec::new(),
            backup: None,
            error: None,
            report_path: None,
            schema_text: None,
        }
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.step == name)
    }

    pub fn failed_checks(&self) -> impl Iterator<Item = (&'static str, &Check)> {
        self.steps.iter().flat_map(|step| {
            step.checks
                .iter()
                .filter(|c| c.status == Status::Fail)
                .map(move |c| (step.step, c))
        })
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a report serializes");
        super::fault::writable()?;
        let partial = path.with_extension("json.partial");
        let written =
            std::fs::write(&partial, text + "\n").and_then(|()| std::fs::rename(&partial, path));
        if written.is_err() {
            // A full disk leaves a 0-byte partial file behind: remove it.
            let _ = std::fs::remove_file(&partial);
        }
        written
    }

    /// The table and verdict a person reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<10} {:<6} {:>8}  detail", "step", "result", "time");
        for step in &self.steps {
            let _ = writeln!(
                out,
                "{:<10} {:<6} {:>7.2}s  {}",
                step.step,
                status_word(step.status),
                step.seconds,
                step.detail
            );
            for check in step.checks.iter().filter(|c| c.status == Status::Fail) {
                for (i, line) in check.detail.lines().enumerate() {
                    let label = if i == 0 {
                        format!("{}:", check.name)
                    } else {
                        String::new()
                    };
                    let _ = writeln!(out, "{:>28} {label:<16} {line}", "");
                }
            }
        }
        if !self.migrations.is_empty() {
            let _ = writeln!(out);
            for run in &self.migrations {
                let mut line = format!(
                    "  {:<40} {:<6} {:>7.2}s",
                    run.file,
                    status_word(run.status),
                    run.seconds
                );
                if run.attempts > 1 {
                    let _ = write!(line, "  ({} attempts)", run.attempts);
                }
                if let Some(rows) = run.rows_affected {
                    let _ = write!(line, "  {rows} rows");
                }
                if !run.locks.is_empty() {
                    // Each migration commits on its own when applied: it holds its locks for
                    // about its own duration.
                    let _ = write!(
                        line,
                        "  locks held ≈{:.2} s: {}",
                        run.seconds,
                        run.locks.join(", ")
                    );
                }
                if let Some(error) = &run.error {
                    let _ = write!(line, "  {}", error.lines().next().unwrap_or_default());
                }
                let _ = writeln!(out, "{line}");
            }
        }
        let _ = writeln!(out, "{}", self.verdict());
        out
    }

    pub fn verdict(&self) -> String {
        let versions = format!(
            "{} → {}",
            version_text(self.from_version),
            version_text(self.to_version)
        );
        let subject = format!("{} {}", self.backend, self.target);
        let why = self
            .error
            .as_deref()
            .and_then(|e| e.lines().next())
            .unwrap_or("see the table above");
        if self.tool == "app verify" {
            return match self.outcome {
                Outcome::UpToDate => format!(
                    "verify: PASS — {subject} is at {} and matches this build",
                    version_text(self.to_version)
                ),
                _ => format!("verify: FAIL — {subject}: {why}"),
            };
        }
        match self.outcome {
            Outcome::Migrated => format!(
                "migrate: PASS — {subject} migrated {versions} and verified in {:.1} s",
                self.seconds
            ),
            Outcome::UpToDate => format!(
                "migrate: PASS — {subject} is up to date at {} and verified",
                version_text(self.to_version)
            ),
            Outcome::DryRun => {
                format!("migrate: DRY RUN — {subject} would go {versions}; nothing was changed")
            }
            Outcome::Refused => format!("migrate: REFUSED — {subject}: {why}; nothing was changed"),
            Outcome::RolledBack => format!(
                "migrate: FAIL — {subject}: {why}; rolled back to {}, verified equal to before",
                version_text(self.from_version)
            ),
            Outcome::Failed => match &self.backup {
                Some(backup) => format!(
                    "migrate: FAIL — {subject}: {why}; the database was NOT restored: restore the backup {} by hand (it is kept)",
                    backup.path
                ),
                None => format!(
                    "migrate: FAIL — {subject}: {why}; the database was NOT restored and no backup was taken"
                ),
            },
            Outcome::Running => format!("migrate: UNFINISHED — {subject}"),
        }
    }
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Pass => "ok",
        Status::Fail => "FAIL",
        Status::Skip => "skip",
    }
}

pub fn version_text(version: Option<i64>) -> String {
    match version {
        Some(version) => format!("{version:04}"),
        None => "empty".to_string(),
    }
}
