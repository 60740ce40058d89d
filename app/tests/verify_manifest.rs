//! `app verify-manifest` on the real binary: a manifest describing it passes; a tampered
//! manifest, a swapped binary, or a failed gate is rejected, naming what differs.

use std::path::{Path, PathBuf};
use std::process::Command;

use tenantgate::manifest::{GateEntry, GitInfo, Manifest};

fn app_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_app"))
}

/// A manifest for `binary` as `cargo xtask release` writes it, with passing gates.
fn manifest_for(binary: &Path) -> Manifest {
    Manifest::describe(
        &app::TENANTGATE,
        binary,
        binary.display().to_string(),
        GitInfo {
            commit: "0123456789abcdef0123456789abcdef01234567".to_string(),
            dirty: false,
            allow_dirty: false,
        },
        "rustc (test)".to_string(),
        vec![GateEntry {
            name: "migrate-test".to_string(),
            passed: true,
            seconds: 1.0,
            detail: "both backends".to_string(),
        }],
    )
    .unwrap()
}

/// Writes `manifest` to a temporary file and runs `app verify-manifest` on it.
fn verify(manifest: &str, extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.manifest.json");
    std::fs::write(&path, manifest).unwrap();
    let output = Command::new(app_binary())
        .arg("verify-manifest")
        .arg(&path)
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn json(manifest: &Manifest) -> String {
    serde_json::to_string_pretty(manifest).unwrap()
}

#[test]
fn a_manifest_that_describes_this_binary_passes() {
    let (ok, output) = verify(&json(&manifest_for(&app_binary())), &[]);
    assert!(ok, "{output}");
    assert!(output.contains("verify-manifest: PASS"), "{output}");
    assert!(
        output.contains("14 migrations, every checksum equal"),
        "{output}"
    );
}

#[test]
fn an_edited_migration_checksum_is_rejected() {
    let mut manifest = manifest_for(&app_binary());
    manifest.migrations[3].checksum = "00".repeat(48);
    let (ok, output) = verify(&json(&manifest), &[]);
    assert!(!ok, "{output}");
    assert!(output.contains("FAIL  migrations"), "{output}");
    assert!(output.contains("postgres 0004 create tenants"), "{output}");
    assert!(output.contains("do not deploy it"), "{output}");
}

#[test]
fn a_missing_migration_is_rejected() {
    let mut manifest = manifest_for(&app_binary());
    manifest.migrations.pop();
    let (ok, output) = verify(&json(&manifest), &[]);
    assert!(!ok, "{output}");
    assert!(
        output.contains("embedded but not listed: [sqlite 0007"),
        "{output}"
    );
}

#[test]
fn a_different_snapshot_digest_is_rejected() {
    let mut manifest = manifest_for(&app_binary());
    manifest.snapshots[0].sha256 = "ff".repeat(32);
    let (ok, output) = verify(&json(&manifest), &[]);
    assert!(!ok, "{output}");
    assert!(output.contains("FAIL  schema snapshots"), "{output}");
}

#[test]
fn a_tampered_binary_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("app");
    std::fs::copy(app_binary(), &copy).unwrap();
    let manifest = json(&manifest_for(&copy));
    // The untouched copy passes; one appended byte does not.
    let (ok, output) = verify(&manifest, &["--binary", copy.to_str().unwrap()]);
    assert!(ok, "{output}");
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes.push(0);
    std::fs::write(&copy, bytes).unwrap();
    let (ok, output) = verify(&manifest, &["--binary", copy.to_str().unwrap()]);
    assert!(!ok, "{output}");
    assert!(output.contains("FAIL  binary sha256"), "{output}");
}

#[test]
fn a_manifest_with_a_failed_gate_is_rejected() {
    let mut manifest = manifest_for(&app_binary());
    manifest.gates[0].passed = false;
    let (ok, output) = verify(&json(&manifest), &[]);
    assert!(!ok, "{output}");
    assert!(output.contains("failed: migrate-test"), "{output}");
}

#[test]
fn a_file_that_is_not_a_manifest_is_a_clear_error() {
    let (ok, output) = verify("{\"format\": 1}", &[]);
    assert!(!ok, "{output}");
    assert!(
        output.contains("is not a release manifest written by `cargo xtask release`"),
        "{output}"
    );
    assert!(!output.contains("panicked"), "{output}");
}

#[test]
fn a_missing_manifest_file_is_a_clear_error() {
    let output = Command::new(app_binary())
        .args(["verify-manifest", "/nonexistent/app.manifest.json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("read the manifest /nonexistent/app.manifest.json"),
        "{stderr}"
    );
}
