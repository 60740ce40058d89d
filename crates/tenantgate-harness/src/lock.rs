//! The migration lock file, one per backend folder (`tenantgate.sum`, in the spirit of
//! Atlas's `atlas.sum`): one SHA-384 per migration, the checksum sqlx records when it
//! applies the migration, plus a hash over the whole list. Committed with the migrations,
//! it turns what sqlx only finds on a live database ("migration 3 was previously applied
//! but has been modified") into a failure before merge.
//!
//! The list hash is what makes a bad merge visible: two branches that each lock a new
//! migration both rewrite that line, so git reports a conflict instead of merging two
//! version 8s silently; and a hand edit of an entry no longer matches it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::folder::{Folder, FolderMigration, hex};
use tenantgate::checks::Failure;

/// The lock file's name inside a migrations folder. sqlx ignores it (it reads `*.sql` only).
pub const FILE_NAME: &str = "tenantgate.sum";

const FIX_LOCK: &str = "run `cargo xtask migrations lock` and commit the lock file";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The lock file's text for the migrations in `folder`.
pub fn render(folder: &Folder) -> String {
    let entries = entry_lines(
        folder
            .migrations
            .iter()
            .map(|m| (m.stem(), m.checksum.clone())),
    );
    format!(
        "# Tenantgate migration lock: the checksum of every migration in this folder.\n\
         # Written by `cargo xtask migrations lock`; do not edit by hand.\n\
         sum sha256:{}\n{entries}",
        list_hash(&entries)
    )
}

/// Writes the lock file of `folder`; refuses while two migrations share a version or a
/// file is not a migration sqlx reads.
pub fn write(folder: &Folder) -> anyhow::Result<PathBuf> {
    if let Some(duplicate) = folder.duplicates.first() {
        anyhow::bail!(
            "{} has the version of another migration; renumber it before locking",
            crate::display_path(&duplicate.up)
        );
    }
    if let Some(problem) = folder.problems.first() {
        anyhow::bail!("{}", problem.render());
    }
    let path = path(&folder.dir);
    std::fs::write(&path, render(folder)).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

fn entry_lines(entries: impl Iterator<Item = (String, String)>) -> String {
    entries
        .map(|(stem, checksum)| format!("{stem} sha384:{checksum}\n"))
        .collect()
}

fn list_hash(entry_lines: &str) -> String {
    hex(&Sha256::digest(entry_lines.as_bytes()))
}

/// A locked migration: `0001_create_catalog` and its checksum.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub version: i64,
    pub stem: String,
    pub checksum: String,
}

/// Reads and validates a lock file: its entries, or why it cannot be trusted.
pub fn read(path: &Path) -> Result<Vec<Entry>, Failure> {
    let file = crate::display_path(path);
    let text = std::fs::read_to_string(path).map_err(|error| {
        Failure::new(format!(
            "{file} cannot be read ({error}); without it, edited or deleted migrations go unnoticed"
        ))
        .fix(FIX_LOCK)
        .in_file(file.clone())
    })?;
    if let Some((number, _)) = text.lines().enumerate().find(|(_, line)| {
        ["<<<<<<<", "=======", ">>>>>>>", "|||||||"]
            .iter()
            .any(|marker| line.starts_with(marker))
    }) {
        return Err(Failure::new(format!(
            "{file} has a merge conflict (line {}): two branches locked migrations",
            number + 1
        ))
        .fix(format!("keep one branch's migrations at their versions, renumber the other branch's new ones after them (`git mv`, in every backend folder), then {FIX_LOCK}"))
        .in_file(file.clone())
        .at_line(number as u32 + 1));
    }
    let mut recorded_sum = None;
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = match line.split_once(' ') {
            Some(("sum", value)) => value.strip_prefix("sha256:").map(|sum| {
                recorded_sum = Some(sum.to_string());
            }),
            Some((stem, value)) => value.strip_prefix("sha384:").and_then(|checksum| {
                let version = stem.split_once('_')?.0.parse::<i64>().ok()?;
                entries.push(Entry {
                    version,
                    stem: stem.to_string(),
                    checksum: checksum.to_string(),
                });
                Some(())
            }),
            None => None,
        };
        if parsed.is_none() {
            return Err(Failure::new(format!(
                "{file}:{} is not a lock entry (`<version>_<name> sha384:<hex>`): `{line}`",
                number + 1
            ))
            .fix(FIX_LOCK)
            .in_file(file.clone())
            .at_line(number as u32 + 1));
        }
    }
    let actual = list_hash(&entry_lines(
        entries.iter().map(|e| (e.stem.clone(), e.checksum.clone())),
    ));
    if recorded_sum.as_deref() != Some(actual.as_str()) {
        return Err(Failure::new(format!(
            "{file} is stale: its `sum` line does not match its entries (edited by hand, or a merge kept lines from both branches)"
        ))
        .fix(FIX_LOCK)
        .in_file(file));
    }
    Ok(entries)
}

/// What comparing a folder with its lock file found.
#[derive(Debug, Default)]
pub struct Integrity {
    /// How many migrations the lock file holds.
    pub locked: usize,
    /// Migrations newer than every locked one: new work, which the linter reads.
    pub new: Vec<FolderMigration>,
    pub failures: Vec<Failure>,
}

/// Whether `sql` matches the locked `checksum` once its line endings are changed, one way
/// or the other: the edit is a checkout's line-ending conversion, not a change of SQL.
fn only_line_endings_differ(sql: &str, checksum: &str) -> bool {
    let lf = sql.replace("\r\n", "\n");
    let crlf = lf.replace('\n', "\r\n");
    crate::folder::checksum(&lf, &[]) == checksum || crate::folder::checksum(&crlf, &[]) == checksum
}

/// Compares the migrations on disk with the lock file beside them. Files sqlx would not
/// read as migrations are failures too.
pub fn check(folder: &Folder) -> Integrity {
    let mut integrity = Integrity::default();
    integrity.failures.extend(folder.problems.iter().cloned());
    for duplicate in &folder.duplicates {
        let first = folder
            .get(duplicate.version)
            .expect("a duplicate has a first");
        let file = crate::display_path(&duplicate.up);
        integrity.failures.push(
            Failure::new(format!(
                "two migrations have version {}: {} and {file} (two branches each added one, or one version written two ways); sqlx keeps only one",
                duplicate.version,
                crate::display_path(&first.up),
            ))
            .fix(format!("renumber the one from your branch after the newest version, in every backend folder (`cargo xtask new-migration` picks the next free version), then {FIX_LOCK}"))
            .in_file(file),
        );
    }
    let entries = match read(&path(&folder.dir)) {
        Ok(entries) => entries,
        Err(failure) => {
            // Without a lock that can be trusted, every migration is new work.
            integrity.failures.push(failure);
            integrity.new = folder.migrations.clone();
            return integrity;
        }
    };
    integrity.locked = entries.len();
    let by_checksum: BTreeMap<String, &FolderMigration> = folder
        .migrations
        .iter()
        .map(|m| (m.checksum.clone(), m))
        .collect();
    let revert = |file: &str| {
        format!(
            "restore it (`git checkout origin/main -- {file}`) and put the change in a new migration (`cargo xtask new-migration NAME`): databases that already ran it will never run it again"
        )
    };
    for entry in &entries {
        // Where the locked migration was when it was locked.
        let locked_file = format!("{}/{}.up.sql", crate::display_path(&folder.dir), entry.stem);
        match folder.get(entry.version) {
            Some(migration) if migration.stem() != entry.stem => {
                let file = crate::display_path(&migration.up);
                integrity.failures.push(
                    Failure::new(format!(
                        "locked migration {} was renamed to {file}; sqlx-cli and the lock know it by its old name",
                        entry.stem,
                    ))
                    .fix(revert(&locked_file))
                    .in_file(file),
                );
            }
            Some(migration) if migration.checksum != entry.checksum => {
                let file = crate::display_path(&migration.up);
                let failure = if only_line_endings_differ(&migration.up_sql, &entry.checksum) {
                    Failure::new(format!(
                        "{file} was locked but its checksum changed, and the only difference is its line endings (CRLF against LF, a checkout's conversion): sqlx would still refuse a database that ran it (\"migration {} was previously applied but has been modified\")",
                        entry.version
                    ))
                    .fix(format!(
                        "restore its line endings (`git checkout origin/main -- {file}`) and keep them fixed with `*.sql -text` in .gitattributes; or, if every database ran it with these endings, add `ignored-chars = [\"\\r\"]` to the `[migrate]` table of the app's sqlx.toml (sqlx 0.9), which also changes the checksums sqlx records"
                    ))
                } else {
                    Failure::new(format!(
                        "{file} was locked (and may have been applied) but has been modified: sqlx refuses such a database with \"migration {} was previously applied but has been modified\"",
                        entry.version,
                    ))
                    .fix(revert(&file))
                };
                integrity.failures.push(failure.in_file(file));
            }
            Some(_) => {}
            None => {
                let file = locked_file;
                let failure = match by_checksum.get(entry.checksum.as_str()) {
                    Some(moved) => Failure::new(format!(
                        "locked migration {file} was renumbered to {}: databases that ran it as version {} will run it again",
                        crate::display_path(&moved.up),
                        entry.version,
                    ))
                    .fix(revert(&file)),
                    None => Failure::new(format!(
                        "locked migration {file} was deleted: databases that ran it keep its changes, new ones never get them"
                    ))
                    .fix(format!("restore it (`git checkout origin/main -- {file}`); to undo its changes, add a new migration (`cargo xtask new-migration NAME`)")),
                };
                integrity.failures.push(failure.in_file(file));
            }
        }
    }
    let newest_locked = entries.iter().map(|e| e.version).max();
    for migration in &folder.migrations {
        if entries.iter().any(|e| e.version == migration.version) {
            continue;
        }
        // A renumbered locked migration is already reported as such.
        if entries.iter().any(|e| e.checksum == migration.checksum) {
            continue;
        }
        match newest_locked {
            Some(newest) if migration.version < newest => {
                let file = crate::display_path(&migration.up);
                integrity.failures.push(
                    Failure::new(format!(
                        "{file} is out of order after a merge: its version {} is lower than the newest locked migration ({newest}), so databases already at {newest} will never run it (sqlx does not notice)",
                        migration.version
                    ))
                    .fix(format!("renumber it after {newest} (`git mv`, in every backend folder), then {FIX_LOCK}"))
                    .in_file(file),
                );
            }
            _ => integrity.new.push(migration.clone()),
        }
    }
    integrity
}
