//! What a person reads at a glance (a table and a one-line verdict) and what CI reads
//! (JUnit XML, the GitHub step summary and annotations).

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use tenantgate::checks::CheckOutcome;

use crate::rehearsal::BackendReport;

const PHASES: [&str; 6] = [
    "provision",
    "migrate",
    "reversibility",
    "seed+checks",
    "snapshot",
    "isolation",
];

fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

fn phase(report: &BackendReport, name: &str) -> String {
    report
        .phases
        .iter()
        .find(|(phase, _)| *phase == name)
        .map_or("-".to_string(), |(_, d)| seconds(*d))
}

fn checks_passed(report: &BackendReport) -> (usize, usize) {
    let passed = report.checks.iter().filter(|c| c.passed()).count();
    (passed, report.checks.len())
}

/// "412 passed", "3 of 412 failed", or "not run" when the cases did not run.
fn isolation_cases(report: &BackendReport) -> String {
    match report.check("isolation-behaviour") {
        None => "not run".to_string(),
        Some(outcome) => counted(outcome, "", "passed"),
    }
}

/// A check's count for a table cell: "ok (7 migrations)", "FAIL: 2 of 7 migrations",
/// "FAIL: 1 failure" (when it failed before it could count anything).
fn counted(check: &CheckOutcome, unit: &str, passed_word: &str) -> String {
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    let failures = check.failures.len();
    if check.passed() {
        if passed_word == "passed" {
            format!("{}{unit} passed", check.checked)
        } else {
            format!("ok ({}{unit})", check.checked)
        }
    } else if check.checked > 0 && failures <= check.checked {
        if passed_word == "passed" {
            format!("{failures} of {}{unit} failed", check.checked)
        } else {
            format!("FAIL: {failures} of {}{unit}", check.checked)
        }
    } else {
        format!(
            "FAIL: {failures} failure{}",
            if failures == 1 { "" } else { "s" }
        )
    }
}

/// The summary table.
/// Everything a person reads after a rehearsal: the safety table, the checks, the notes and
/// the failures (with `steps`, the time of every migration first).
pub fn full(reports: &[BackendReport], steps: bool) -> String {
    let mut out = String::from("\n");
    if steps {
        out.push_str(&format!("migrations:\n{}", self::steps(reports)));
    }
    out.push_str(&safety_table(reports));
    out.push('\n');
    out.push_str(&table(reports));
    for section in [notes(reports), failures(reports)] {
        if !section.is_empty() {
            out.push('\n');
            out.push_str(&section);
        }
    }
    out
}

pub fn table(reports: &[BackendReport]) -> String {
    let mut rows = vec![
        [
            "backend",
            "provider",
            "migrations",
            "checks",
            "isolation cases",
            PHASES[0],
            PHASES[1],
            PHASES[2],
            PHASES[3],
            PHASES[4],
            PHASES[5],
            "total",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for report in reports {
        let (passed, total) = checks_passed(report);
        let total_time = report.took;
        let mut row = vec![
            report.name(),
            report.provider.clone().unwrap_or_else(|| "-".to_string()),
            format!("{}/{}", report.steps.len(), report.migrations_total),
            if report.fatal.is_some() {
                "not run".to_string()
            } else {
                format!("{passed}/{total}")
            },
            isolation_cases(report),
        ];
        row.extend(PHASES.iter().map(|name| phase(report, name)));
        row.push(seconds(total_time));
        rows.push(row);
    }
    aligned(&rows)
}

/// Rows of cells as aligned columns.
fn aligned(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// [`counted`], or "not checked" when the check did not run (the notes say why).
fn outcome(report: &BackendReport, name: &str, unit: &str) -> String {
    match report.check(name) {
        None if report.fatal.is_some() => "not run".to_string(),
        None => "not checked".to_string(),
        Some(check) => counted(check, unit, "ok"),
    }
}

/// The migration-safety table: integrity, parity, lint and reversibility per backend.
pub fn safety_table(reports: &[BackendReport]) -> String {
    let mut rows = vec![
        [
            "backend",
            "integrity",
            "parity",
            "lint (new work)",
            "reversibility",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for report in reports {
        let lint = match report.check("lint") {
            None => "not run".to_string(),
            Some(check) if check.checked == 0 => "ok (no new migration)".to_string(),
            Some(check) if check.passed() => {
                let acknowledged = report
                    .lint_findings
                    .iter()
                    .filter(|f| matches!(f.status, crate::lint::Status::Acknowledged(_)))
                    .count();
                format!(
                    "ok ({} new file(s), {acknowledged} acknowledged)",
                    check.checked
                )
            }
            Some(check) if check.checked == 0 => {
                format!("FAIL: {} finding(s)", check.failures.len())
            }
            Some(check) => format!(
                "FAIL: {} finding(s) in {} new file(s)",
                check.failures.len(),
                check.checked
            ),
        };
        rows.push(vec![
            report.name(),
            outcome(report, "integrity", "migrations"),
            outcome(report, "parity", "migrations"),
            lint,
            outcome(report, "reversibility", "migrations"),
        ]);
    }
    aligned(&rows)
}

/// The notes of every backend: new migrations, acknowledged findings, irreversible ones.
pub fn notes(reports: &[BackendReport]) -> String {
    let mut out = String::new();
    for report in reports {
        for note in &report.notes {
            let _ = writeln!(out, "note {} · {}", report.name(), note);
        }
    }
    out
}

/// Every failure, one block each: backend, check, message (which names file, table, fix).
pub fn failures(reports: &[BackendReport]) -> String {
    let mut out = String::new();
    for report in reports {
        for (check, failure) in report.failures() {
            let _ = writeln!(
                out,
                "FAIL {} · {check}: {}",
                report.name(),
                failure.render().replace('\n', "\n    ")
            );
        }
    }
    out
}

/// The one-line verdict.
pub fn verdict(reports: &[BackendReport], elapsed: Duration) -> String {
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.name())
        .collect();
    let failures: usize = reports.iter().map(|r| r.failures().count()).sum();
    let backends: Vec<String> = reports.iter().map(|r| r.name()).collect();
    if failed.is_empty() {
        let checks: usize = reports.iter().map(|r| r.checks.len()).sum();
        format!(
            "migrate-test: PASS — {} ({checks} checks) in {}",
            backends.join(" + "),
            seconds(elapsed)
        )
    } else {
        format!(
            "migrate-test: FAIL — {failures} failure(s) on {} in {}",
            failed.join(" + "),
            seconds(elapsed)
        )
    }
}

/// Per-migration timings, for `--verbose`.
pub fn steps(reports: &[BackendReport]) -> String {
    let mut out = String::new();
    for report in reports {
        for step in &report.steps {
            let _ = writeln!(
                out,
                "  {:8}  {:>8}  {}",
                report.name(),
                format!("{:.1} ms", step.duration.as_secs_f64() * 1000.0),
                step.file
            );
        }
    }
    out
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: a test suite per backend, a test case per check.
pub fn junit(reports: &[BackendReport]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"migrate-test\">\n",
    );
    for report in reports {
        let failures = report.checks.iter().filter(|c| !c.passed()).count()
            + usize::from(report.fatal.is_some());
        let total_time = report.took;
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">",
            report.name(),
            report.checks.len() + 1,
            total_time.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"apply-migrations\">",
            report.name()
        );
        if let Some(fatal) = &report.fatal {
            let _ = writeln!(
                out,
                "      <failure message=\"{}\"/>",
                xml_escape(&fatal.render())
            );
        }
        out.push_str("    </testcase>\n");
        for check in &report.checks {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\">",
                report.name(),
                check.name
            );
            for failure in &check.failures {
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\"/>",
                    xml_escape(&failure.render())
                );
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Text as the data of a GitHub workflow command, which escapes `%` and newlines.
pub fn annotation_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "")
        .replace('\n', "%0A")
}

/// Writes the JUnit report, and on GitHub Actions the step summary and annotations.
pub fn write_ci_reports(
    reports: &[BackendReport],
    junit_path: &Path,
    verdict_line: &str,
) -> anyhow::Result<()> {
    if let Some(parent) = junit_path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    std::fs::write(junit_path, junit(reports))
        .with_context(|| format!("write {}", junit_path.display()))?;
    if let Ok(summary) = std::env::var("GITHUB_STEP_SUMMARY") {
        let mut text = format!(
            "### {verdict_line}\n\n```\n{}\n{}```\n",
            safety_table(reports),
            table(reports)
        );
        let failures = failures(reports);
        if !failures.is_empty() {
            let _ = write!(text, "\n```\n{failures}```\n");
        }
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&summary)
            .with_context(|| format!("open {summary}"))?;
        file.write_all(text.as_bytes())?;
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        for report in reports {
            for (check, failure) in report.failures() {
                let location = match (&failure.file, failure.line) {
                    (Some(file), Some(line)) => format!(" file={file},line={line},"),
                    (Some(file), None) => format!(" file={file},"),
                    _ => " ".to_string(),
                };
                let message = annotation_data(&match &failure.fix {
                    Some(fix) => format!("{}\nfix: {fix}", failure.problem),
                    None => failure.problem.clone(),
                });
                println!(
                    "::error{location}title={} {check}::{message}",
                    report.name()
                );
            }
            // Lint errors are annotated above as failures; acknowledged ones as notices.
            let acknowledged: Vec<crate::lint::Finding> = report
                .lint_findings
                .iter()
                .filter(|f| matches!(f.status, crate::lint::Status::Acknowledged(_)))
                .cloned()
                .collect();
            print!("{}", crate::lint::github_annotations(&acknowledged));
        }
    }
    Ok(())
}
