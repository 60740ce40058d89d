//! The release manifest: what `cargo xtask release` proved about one build of an app, and
//! the check an operator runs with the binary in hand (`<app> verify-manifest`).
//!
//! The manifest ties the binary (its sha256) to the migrations it embeds (the checksums
//! sqlx records in `_sqlx_migrations`) and to the schema snapshots the gate compared
//! against, and records every gate's result. Verification recomputes all of it from the
//! running binary, so a manifest from another build, an edited manifest, or a swapped
//! binary is rejected.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Isolation;
use crate::{App, Backend};

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub app: AppInfo,
    pub git: GitInfo,
    /// `rustc --version`.
    pub toolchain: String,
    /// Seconds since the Unix epoch when the manifest was written.
    pub created_at: u64,
    pub migrations: Vec<MigrationEntry>,
    pub snapshots: Vec<SnapshotEntry>,
    /// How the app isolates tenants, as its embedded configuration says.
    pub isolation: IsolationInfo,
    pub gates: Vec<GateEntry>,
    pub binary: BinaryInfo,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppInfo {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitInfo {
    pub commit: String,
    /// The working tree had uncommitted changes, and `--allow-dirty` let the release go on.
    pub dirty: bool,
    pub allow_dirty: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationEntry {
    pub backend: String,
    pub version: i64,
    pub description: String,
    /// Hex of the SHA-384 sqlx records for the up migration.
    pub checksum: String,
    /// Hex of the SHA-384 of the down migration, when there is one.
    pub down_checksum: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotEntry {
    pub backend: String,
    pub path: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsolationInfo {
    pub row_level_security: bool,
    /// With row-level security: the role the policies were checked for.
    pub app_role: Option<String>,
    /// Without it: the reason the configuration gives.
    pub reason: Option<String>,
}

impl IsolationInfo {
    /// What the app's embedded configuration says.
    pub fn of(app: &App<'_>) -> anyhow::Result<IsolationInfo> {
        let config = app.config()?;
        Ok(match &config.tenancy.isolation {
            Isolation::RowLevelSecurity(rls) if config.has(Backend::Postgres) => IsolationInfo {
                row_level_security: true,
                app_role: Some(rls.app_role.clone()),
                reason: None,
            },
            Isolation::RowLevelSecurity(_) => IsolationInfo {
                row_level_security: false,
                app_role: None,
                reason: Some("SQLite only: no row-level security".to_string()),
            },
            Isolation::WithoutRowLevelSecurity { reason } => IsolationInfo {
                row_level_security: false,
                app_role: None,
                reason: Some(reason.clone()),
            },
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateEntry {
    pub name: String,
    pub passed: bool,
    pub seconds: f64,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryInfo {
    /// Relative to the workspace root at release time.
    pub path: String,
    pub sha256: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of a file, read in full.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    Ok(sha256_hex(&std::fs::read(path)?))
}

/// The migrations `app` embeds, as the manifest lists them.
pub fn embedded_migrations(app: &App<'_>) -> Vec<MigrationEntry> {
    let mut entries = Vec::new();
    for backend in app.backends() {
        let migrator = app.embedded(backend).expect("an embedded backend").migrator;
        for up in migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
        {
            let down = migrator
                .iter()
                .find(|m| m.version == up.version && m.migration_type.is_down_migration());
            entries.push(MigrationEntry {
                backend: backend.to_string(),
                version: up.version,
                description: up.description.to_string(),
                checksum: hex(&up.checksum),
                down_checksum: down.map(|d| hex(&d.checksum)),
            });
        }
    }
    entries
}

/// The snapshots `app` embeds, as the manifest lists them.
pub fn embedded_snapshots(app: &App<'_>) -> Vec<SnapshotEntry> {
    app.backends()
        .into_iter()
        .filter_map(|backend| {
            let text = app.embedded(backend)?.snapshot?;
            Some(SnapshotEntry {
                backend: backend.to_string(),
                path: format!("{backend}.snap"),
                sha256: sha256_hex(text.as_bytes()),
            })
        })
        .collect()
}

/// One line of a verification: what was compared, and whether it matched.
#[derive(Clone, Debug)]
pub struct Finding {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Verifies `manifest` against the build `app` describes and the binary at `binary`;
/// every check is reported, matched or not.
pub fn verify(app: &App<'_>, manifest: &Manifest, binary: &Path) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |check, ok, detail: String| findings.push(Finding { check, ok, detail });

    add(
        "format",
        manifest.format == FORMAT,
        format!(
            "manifest format {}, this build reads {FORMAT}",
            manifest.format
        ),
    );
    let version = app.version;
    add(
        "app version",
        manifest.app.name == app.name && manifest.app.version == version,
        format!(
            "manifest {} {}, binary {} {version}",
            manifest.app.name, manifest.app.version, app.name
        ),
    );

    let embedded = embedded_migrations(app);
    let missing: Vec<String> = manifest
        .migrations
        .iter()
        .filter(|m| !embedded.contains(m))
        .map(|m| format!("{} {:04} {}", m.backend, m.version, m.description))
        .collect();
    let extra: Vec<String> = embedded
        .iter()
        .filter(|m| !manifest.migrations.contains(m))
        .map(|m| format!("{} {:04} {}", m.backend, m.version, m.description))
        .collect();
    add(
        "migrations",
        missing.is_empty() && extra.is_empty(),
        if missing.is_empty() && extra.is_empty() {
            format!("{} migrations, every checksum equal", embedded.len())
        } else {
            format!(
                "listed in the manifest but not embedded as listed: [{}]; embedded but not listed: [{}]",
                missing.join(", "),
                extra.join(", ")
            )
        },
    );

    let snapshots = embedded_snapshots(app);
    let differing: Vec<String> = manifest
        .snapshots
        .iter()
        .filter(|s| !snapshots.contains(s))
        .map(|s| s.path.clone())
        .chain(
            snapshots
                .iter()
                .filter(|s| !manifest.snapshots.contains(s))
                .map(|s| format!("{} (embedded)", s.path)),
        )
        .collect();
    add(
        "schema snapshots",
        differing.is_empty(),
        if differing.is_empty() {
            format!("{} snapshots, every sha256 equal", snapshots.len())
        } else {
            format!("differ: {}", differing.join(", "))
        },
    );

    match IsolationInfo::of(app) {
        Ok(isolation) => add(
            "isolation",
            isolation == manifest.isolation,
            if isolation == manifest.isolation {
                describe_isolation(&isolation)
            } else {
                format!(
                    "manifest: {}; binary: {}",
                    describe_isolation(&manifest.isolation),
                    describe_isolation(&isolation)
                )
            },
        ),
        Err(error) => add("isolation", false, format!("{error:#}")),
    }

    let failed: Vec<&str> = manifest
        .gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.name.as_str())
        .collect();
    add(
        "gates",
        failed.is_empty() && !manifest.gates.is_empty(),
        if manifest.gates.is_empty() {
            "the manifest records no gate".to_string()
        } else if failed.is_empty() {
            format!("{} gates, all passed", manifest.gates.len())
        } else {
            format!("failed: {}", failed.join(", "))
        },
    );

    match file_sha256(binary) {
        Ok(digest) => add(
            "binary sha256",
            digest == manifest.binary.sha256,
            if digest == manifest.binary.sha256 {
                format!("{digest} ({})", binary.display())
            } else {
                format!(
                    "{} is {digest}, the manifest says {}",
                    binary.display(),
                    manifest.binary.sha256
                )
            },
        ),
        Err(error) => add(
            "binary sha256",
            false,
            format!("read {}: {error}", binary.display()),
        ),
    }
    findings
}

fn describe_isolation(isolation: &IsolationInfo) -> String {
    match (&isolation.app_role, &isolation.reason) {
        (Some(role), _) if isolation.row_level_security => {
            format!("row-level security, checked as `{role}`")
        }
        (_, Some(reason)) => format!("without row-level security: {reason}"),
        _ => "without row-level security".to_string(),
    }
}

impl Manifest {
    /// A manifest for the binary at `binary` (whose path is recorded as `display_path`),
    /// listing what `app` embeds.
    pub fn describe(
        app: &App<'_>,
        binary: &Path,
        display_path: String,
        git: GitInfo,
        toolchain: String,
        gates: Vec<GateEntry>,
    ) -> anyhow::Result<Manifest> {
        Ok(Manifest {
            format: FORMAT,
            app: AppInfo {
                name: app.name.to_string(),
                version: app.version.to_string(),
            },
            git,
            toolchain,
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            migrations: embedded_migrations(app),
            snapshots: embedded_snapshots(app),
            isolation: IsolationInfo::of(app)?,
            gates,
            binary: BinaryInfo {
                path: display_path,
                sha256: file_sha256(binary)?,
            },
        })
    }
}
