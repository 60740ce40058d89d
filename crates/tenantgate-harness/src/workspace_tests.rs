//! `cargo test --workspace`, echoed as it runs, with its `test result:` lines added up:
//! `cargo xtask ci` and `cargo xtask release` both run it and report the totals.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::{Context, bail};

#[derive(Default)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
}

/// `cargo test --workspace`, echoing its output and adding up its `test result:` lines.
pub fn workspace_tests(totals: &mut Totals) -> anyhow::Result<()> {
    let mut child = crate::workspace::cargo()
        .args(["test", "--workspace"])
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
