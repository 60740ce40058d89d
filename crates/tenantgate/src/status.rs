//! What a database has applied, compared with the migrations a build embeds.

use std::collections::BTreeMap;

use sqlx::migrate::Migrator;

use crate::live::Target;
use crate::live::validate::read_applied;
use crate::{App, Backend};

/// The state of one migration version in a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    /// Applied, but the database recorded a different checksum: it ran another build.
    ChecksumMismatch,
    /// Applied by a build that embeds a migration this one does not know.
    Unknown,
    /// Recorded as failed (`success = false`).
    Dirty,
}

#[derive(Clone, Debug)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    pub state: State,
}

/// Reads the migrations table of the database at `url` (a missing table means nothing
/// is applied; nothing is created) and compares it with what `app` embeds for its backend.
pub async fn status(app: &App<'_>, url: &str) -> anyhow::Result<Vec<MigrationStatus>> {
    let target = Target::new(url)?;
    let backend: Backend = target.backend;
    let embedded = app
        .embedded(backend)
        .ok_or(crate::Error::BackendNotEmbedded(backend))?;
    let mut conn = target.connect(false).await?;
    let applied = read_applied(&mut conn, &embedded.migrator.table_name).await;
    conn.close().await;
    let applied = applied?.unwrap_or_default();
    let dirty = applied.iter().find(|a| !a.success).map(|a| a.version);
    let checksums: BTreeMap<i64, Vec<u8>> = applied
        .into_iter()
        .map(|a| (a.version, a.checksum))
        .collect();
    Ok(compare(embedded.migrator, &checksums, dirty))
}

fn compare(
    migrator: &Migrator,
    applied: &BTreeMap<i64, Vec<u8>>,
    dirty: Option<i64>,
) -> Vec<MigrationStatus> {
    let mut rows: Vec<MigrationStatus> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| MigrationStatus {
            version: m.version,
            description: m.description.to_string(),
            state: match applied.get(&m.version) {
                _ if dirty == Some(m.version) => State::Dirty,
                Some(checksum) if checksum.as_slice() == &*m.checksum => State::Applied,
                Some(_) => State::ChecksumMismatch,
                None => State::Pending,
            },
        })
        .collect();
    for version in applied.keys() {
        if !migrator.version_exists(*version) {
            rows.push(MigrationStatus {
                version: *version,
                description: String::new(),
                state: if dirty == Some(*version) {
                    State::Dirty
                } else {
                    State::Unknown
                },
            });
        }
    }
    rows.sort_by_key(|row| row.version);
    rows
}
