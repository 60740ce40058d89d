//! What a database has applied, compared with the migrations this binary embeds.

use std::collections::BTreeMap;

use sqlx::migrate::{Migrate, Migrator};
use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::{Backend, Error};

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
/// is applied) and compares it with the embedded migrator of its backend.
pub async fn status(url: &str) -> Result<Vec<MigrationStatus>, Error> {
    let backend = Backend::from_url(url)?;
    let migrator = backend.migrator();
    let (applied, dirty) = match backend {
        Backend::Postgres => {
            let mut conn = PgConnection::connect(url).await?;
            read_applied(&mut conn, migrator).await?
        }
        Backend::Sqlite => {
            let mut conn = SqliteConnection::connect(url).await?;
            read_applied(&mut conn, migrator).await?
        }
    };
    Ok(compare(migrator, &applied, dirty))
}

async fn read_applied<C: Migrate>(
    conn: &mut C,
    migrator: &Migrator,
) -> Result<(BTreeMap<i64, Vec<u8>>, Option<i64>), Error> {
    // ensure_migrations_table only creates the table when it is missing, exactly as
    // `app migrate` would; it never changes recorded rows.
    conn.ensure_migrations_table(&migrator.table_name).await?;
    let dirty = conn.dirty_version(&migrator.table_name).await?;
    let applied = conn
        .list_applied_migrations(&migrator.table_name)
        .await?
        .into_iter()
        .map(|m| (m.version, m.checksum.into_owned()))
        .collect();
    Ok((applied, dirty))
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
                state: State::Unknown,
            });
        }
    }
    rows.sort_by_key(|row| row.version);
    rows
}
