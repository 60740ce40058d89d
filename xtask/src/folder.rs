//! A migrations folder as files on disk: what the lock file, the parity check, the linter
//! and `new-migration` read. Named the way sqlx names them, `<version>_<name>.up.sql` and
//! `.down.sql` (or a plain `<version>_<name>.sql` with no down).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha384};

/// One migration: its up file and, when there is one, its down file.
#[derive(Clone, Debug)]
pub struct FolderMigration {
    pub version: i64,
    /// The description part of the file name (`create_catalog`).
    pub name: String,
    pub up: PathBuf,
    pub up_sql: String,
    pub down: Option<PathBuf>,
    pub down_sql: Option<String>,
}

impl FolderMigration {
    /// `0001_create_catalog`: the version as written in the file name, and the name.
    pub fn stem(&self) -> String {
        let file = self.up.file_name().and_then(|n| n.to_str()).unwrap_or("");
        file.trim_end_matches(".sql")
            .trim_end_matches(".up")
            .to_string()
    }

    /// The SHA-384 of the up file, hex: the checksum sqlx records in `_sqlx_migrations`.
    pub fn checksum(&self) -> String {
        hex(&Sha384::digest(self.up_sql.as_bytes()))
    }

    /// sqlx runs a migration in a transaction unless its first line says otherwise.
    pub fn runs_in_transaction(&self) -> bool {
        !self.up_sql.trim_start().starts_with("-- no-transaction")
    }
}

/// Every migration of a folder, in version order. Two files with one version are kept
/// apart in `duplicates`: after a merge of two branches, that is the first thing to report.
#[derive(Clone, Debug, Default)]
pub struct Folder {
    pub dir: PathBuf,
    pub migrations: Vec<FolderMigration>,
    /// Migrations whose version another migration (with another name) already has.
    pub duplicates: Vec<FolderMigration>,
}

impl Folder {
    pub fn read(dir: &Path) -> anyhow::Result<Folder> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("list the migrations in {}", dir.display()))?;
        // (version, name) → (up, down)
        let mut by_key: BTreeMap<(i64, String), (Option<PathBuf>, Option<PathBuf>)> =
            BTreeMap::new();
        for entry in entries {
            let path = entry?.path();
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = file.strip_suffix(".sql") else {
                continue;
            };
            let (stem, is_up) = match (stem.strip_suffix(".up"), stem.strip_suffix(".down")) {
                (Some(stem), _) => (stem, true),
                (_, Some(stem)) => (stem, false),
                _ => (stem, true),
            };
            let Some((version, name)) = stem.split_once('_') else {
                continue;
            };
            let Ok(version) = version.parse::<i64>() else {
                continue;
            };
            let slot = by_key.entry((version, name.to_string())).or_default();
            if is_up {
                slot.0 = Some(path.clone());
            } else {
                slot.1 = Some(path.clone());
            }
        }
        let mut folder = Folder {
            dir: dir.to_path_buf(),
            ..Folder::default()
        };
        for ((version, name), (up, down)) in by_key {
            // A down file without its up file is not a migration sqlx would run.
            let Some(up) = up else { continue };
            let read = |path: &Path| {
                std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
            };
            let migration = FolderMigration {
                version,
                name,
                up_sql: read(&up)?,
                down_sql: down.as_deref().map(read).transpose()?,
                up,
                down,
            };
            if folder.migrations.iter().any(|m| m.version == version) {
                folder.duplicates.push(migration);
            } else {
                folder.migrations.push(migration);
            }
        }
        Ok(folder)
    }

    pub fn get(&self, version: i64) -> Option<&FolderMigration> {
        self.migrations.iter().find(|m| m.version == version)
    }

    pub fn newest_version(&self) -> Option<i64> {
        self.migrations.iter().map(|m| m.version).max()
    }
}

/// Creates `<next version>_<name>.up.sql` and `.down.sql` in every folder, the version one
/// past the newest on disk or in a lock file, written as wide as the existing ones.
pub fn create_migration(dirs: &[&Path], name: &str) -> anyhow::Result<Vec<PathBuf>> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        anyhow::bail!(
            "`{name}` is not a migration name: use lowercase letters, digits and underscores (e.g. `add_loyalty_cards`)"
        );
    }
    let mut newest = 0;
    let mut width = 4;
    for dir in dirs {
        let folder = Folder::read(dir)?;
        for migration in folder.migrations.iter().chain(&folder.duplicates) {
            if migration.name == name {
                anyhow::bail!(
                    "{} already exists; choose another name",
                    crate::display_path(&migration.up)
                );
            }
            newest = newest.max(migration.version);
            width = migration.stem().len() - migration.name.len() - 1;
        }
        if let Ok(entries) = crate::lock::read(&crate::lock::path(dir)) {
            newest = newest.max(entries.iter().map(|e| e.version).max().unwrap_or(0));
        }
    }
    let stem = format!("{:0width$}_{name}", newest + 1);
    let up = format!(
        "-- {stem}: <what this migration does, in one line>\n\
         -- sqlx runs it in a transaction; CREATE INDEX CONCURRENTLY needs `-- no-transaction` as the first line.\n\
         -- Check it with `cargo xtask lint` and `cargo xtask migrate-test`.\n"
    );
    let down = format!(
        "-- Undo {stem} exactly: migrate-test runs up, down, then compares the schema and every table's rows.\n\
         -- If it cannot be undone without loss, say so on a line of its own:\n\
         --   -- tenantgate:irreversible: <reason>\n"
    );
    let mut created = Vec::new();
    for dir in dirs {
        for (suffix, text) in [("up", &up), ("down", &down)] {
            let path = dir.join(format!("{stem}.{suffix}.sql"));
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
            created.push(path);
        }
    }
    Ok(created)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
