//! A migrations folder as files on disk: what the lock file, the parity check, the linter
//! and `new-migration` read. Named the way sqlx names them, `<version>_<name>.up.sql` and
//! `.down.sql` (or a plain `<version>_<name>.sql` with no down).
//!
//! sqlx skips a file it cannot read as a migration without a word (a typo in the suffix,
//! a down without its up) or refuses the whole folder (a version that is not a 64-bit
//! integer); here every such file is a problem naming the file, so that nothing a
//! developer meant as a migration is silently left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha384};
use tenantgate::checks::Failure;

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
    /// The SHA-384 of the up file, hex: the checksum sqlx records in `_sqlx_migrations`
    /// (with the app's `ignored-chars` left out, as sqlx leaves them out).
    pub checksum: String,
}

impl FolderMigration {
    /// `0001_create_catalog`: the version as written in the file name, and the name.
    pub fn stem(&self) -> String {
        let file = self.up.file_name().and_then(|n| n.to_str()).unwrap_or("");
        file.trim_end_matches(".sql")
            .trim_end_matches(".up")
            .to_string()
    }

    /// sqlx runs a migration in a transaction unless its first line says otherwise.
    pub fn runs_in_transaction(&self) -> bool {
        !self.up_sql.starts_with("-- no-transaction")
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
    /// Files that look like migrations but that sqlx would skip or refuse.
    pub problems: Vec<Failure>,
}

/// Files a migrations folder may hold besides migrations.
fn is_companion(file: &str) -> bool {
    file == crate::lock::FILE_NAME
        || file.starts_with('.')
        || file.ends_with(".md")
        || file.ends_with(".txt")
        || file.ends_with(".toml")
}

/// The SHA-384 sqlx records for `sql`, with `ignored_chars` left out, hex.
pub fn checksum(sql: &str, ignored_chars: &[char]) -> String {
    let mut hasher = Sha384::new();
    if ignored_chars.is_empty() {
        // One pass of the hasher: splitting visits every character (seconds for a 32 MB
        // migration in a debug build, in which Ctrl-C waited).
        hasher.update(sql.as_bytes());
    } else {
        for fragment in sql.split(|c| ignored_chars.contains(&c)) {
            hasher.update(fragment.as_bytes());
        }
    }
    hex(&hasher.finalize())
}

impl Folder {
    /// The folder of `backend` as the app's sqlx reads it (its `ignored-chars`).
    pub fn of(config: &tenantgate::Config, backend: tenantgate::Backend) -> anyhow::Result<Folder> {
        let dir = config.migrations_dir(backend).ok_or_else(|| {
            anyhow::format_err!(
                "{} configures no {backend} migrations",
                crate::display_path(&config.path)
            )
        })?;
        Folder::read_with(dir, &config.sqlx_settings()?.ignored_chars)
    }

    /// The folder, checksums as sqlx computes them by default.
    pub fn read(dir: &Path) -> anyhow::Result<Folder> {
        Folder::read_with(dir, &[])
    }

    pub fn read_with(dir: &Path, ignored_chars: &[char]) -> anyhow::Result<Folder> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("list the migrations in {}", dir.display()))?;
        let mut folder = Folder {
            dir: dir.to_path_buf(),
            ..Folder::default()
        };
        // stem → (version, name, up, down)
        let mut by_stem: BTreeMap<String, (i64, String, Option<PathBuf>, Option<PathBuf>)> =
            BTreeMap::new();
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                paths.push(entry.path());
            }
        }
        paths.sort();
        for path in paths {
            let Some(file) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                folder.problems.push(
                    Failure::new(format!("{} has a name that is not UTF-8", path.display()))
                        .fix("rename it `<version>_<name>.up.sql`"),
                );
                continue;
            };
            let shown = crate::display_path(&path);
            match parse_name(&file) {
                Parsed::Migration {
                    version,
                    name,
                    stem,
                    direction,
                } => {
                    let slot = by_stem
                        .entry(stem)
                        .or_insert_with(|| (version, name, None, None));
                    match direction {
                        Direction::Down => slot.3 = Some(path.clone()),
                        Direction::Up | Direction::Simple => {
                            if let Some(other) = &slot.2 {
                                folder.problems.push(
                                    Failure::new(format!(
                                        "{shown} and {} are both the up migration of one version",
                                        crate::display_path(other)
                                    ))
                                    .fix(
                                        "keep one: `.up.sql` with a `.down.sql`, or a plain `.sql`",
                                    )
                                    .in_file(shown.clone()),
                                );
                            } else {
                                slot.2 = Some(path.clone());
                            }
                        }
                    }
                }
                Parsed::NotAMigration if is_companion(&file) => {}
                Parsed::NotAMigration => {
                    if file.ends_with(".sql") {
                        folder.problems.push(
                            Failure::new(format!(
                                "{shown} is not named like a migration, so sqlx skips it without a word"
                            ))
                            .fix("name it `<version>_<name>.up.sql` (with a `.down.sql`), or move it out of the migrations folder")
                            .in_file(shown.clone()),
                        );
                    }
                }
                Parsed::Skipped(why) | Parsed::Refused(why) => {
                    folder.problems.push(
                        Failure::new(format!("{shown} {why}"))
                            .fix("name it `<version>_<name>.up.sql` or `.down.sql`, the version a whole number below 9223372036854775808 (e.g. 0008 or 20261201093000)")
                            .in_file(shown.clone()),
                    );
                }
            }
        }
        for (_, (version, name, up, down)) in by_stem {
            let Some(up) = up else {
                let down = down.expect("a stem has a file");
                let shown = crate::display_path(&down);
                folder.problems.push(
                    Failure::new(format!(
                        "{shown} is a down migration without its up migration: sqlx would run it as a migration of its own"
                    ))
                    .fix("add the `.up.sql` beside it, or remove it")
                    .in_file(shown),
                );
                continue;
            };
            let read = |path: &Path| {
                std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
            };
            let up_sql = read(&up)?;
            let migration = FolderMigration {
                version,
                name,
                checksum: checksum(&up_sql, ignored_chars),
                up_sql,
                down_sql: down.as_deref().map(read).transpose()?,
                up,
                down,
            };
            for (path, sql) in [
                (Some(&migration.up), Some(&migration.up_sql)),
                (migration.down.as_ref(), migration.down_sql.as_ref()),
            ] {
                if let (Some(path), Some(sql)) = (path, sql)
                    && sql.starts_with('\u{feff}')
                {
                    let shown = crate::display_path(path);
                    folder.problems.push(
                        Failure::new(format!(
                            "{shown} starts with a UTF-8 byte-order mark: PostgreSQL reads it as part of the first statement (`syntax error at or near \"\u{feff}CREATE\"`) and sqlx's checksum includes it"
                        ))
                        .fix("save the file as UTF-8 without a BOM")
                        .in_file(shown)
                        .at_line(1),
                    );
                }
            }
            folder.migrations.push(migration);
        }
        folder.migrations.sort_by_key(|m| (m.version, m.stem()));
        let mut kept: Vec<FolderMigration> = Vec::new();
        for migration in std::mem::take(&mut folder.migrations) {
            if kept.iter().any(|m| m.version == migration.version) {
                folder.duplicates.push(migration);
            } else {
                kept.push(migration);
            }
        }
        folder.migrations = kept;
        Ok(folder)
    }

    pub fn get(&self, version: i64) -> Option<&FolderMigration> {
        self.migrations.iter().find(|m| m.version == version)
    }

    pub fn newest_version(&self) -> Option<i64> {
        self.migrations.iter().map(|m| m.version).max()
    }
}

enum Direction {
    Up,
    Down,
    Simple,
}

enum Parsed {
    Migration {
        version: i64,
        name: String,
        stem: String,
        direction: Direction,
    },
    /// Not meant as a migration (no version prefix).
    NotAMigration,
    /// Meant as one, but sqlx would skip it.
    Skipped(String),
    /// Meant as one, but sqlx would refuse the folder.
    Refused(String),
}

/// How sqlx reads a file name: `<version>_<description>.sql`, the version an `i64`.
fn parse_name(file: &str) -> Parsed {
    let Some((version, rest)) = file.split_once('_') else {
        return Parsed::NotAMigration;
    };
    let looks_versioned = !version.is_empty() && version.chars().all(|c| c.is_ascii_digit());
    if !rest.ends_with(".sql") {
        return if looks_versioned {
            Parsed::Skipped(
                "does not end in `.sql`, so sqlx skips it without a word (a typo in `.up.sql`?)"
                    .to_string(),
            )
        } else {
            Parsed::NotAMigration
        };
    }
    let Ok(number) = version.parse::<i64>() else {
        return if looks_versioned {
            Parsed::Refused(format!(
                "has version `{version}`, which does not fit sqlx's 64-bit version: sqlx refuses the whole folder"
            ))
        } else {
            Parsed::Refused(format!(
                "does not start with a numeric version (`{version}_…`): sqlx refuses the whole folder"
            ))
        };
    };
    let (stem_rest, direction) = if let Some(name) = rest.strip_suffix(".up.sql") {
        (name, Direction::Up)
    } else if let Some(name) = rest.strip_suffix(".down.sql") {
        (name, Direction::Down)
    } else {
        (rest.trim_end_matches(".sql"), Direction::Simple)
    };
    Parsed::Migration {
        version: number,
        name: stem_rest.to_string(),
        stem: format!("{version}_{stem_rest}"),
        direction,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(files: &[(&str, &str)]) -> (Folder, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let folder = Folder::read(dir.path()).unwrap();
        let problems = folder.problems.iter().map(|p| p.render()).collect();
        (folder, problems)
    }

    #[test]
    fn well_named_files_are_migrations_and_companions_are_left_alone() {
        let (folder, problems) = problems(&[
            ("0001_a.up.sql", "SELECT 1;"),
            ("0001_a.down.sql", "SELECT 1;"),
            ("0002_b.sql", "SELECT 2;"),
            ("tenantgate.sum", ""),
            ("README.md", ""),
        ]);
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(folder.migrations.len(), 2);
        assert!(folder.migrations[0].down.is_some());
    }

    #[test]
    fn files_sqlx_would_skip_or_refuse_are_named() {
        let (folder, problems) = problems(&[
            ("0001_a.up.sql", "SELECT 1;"),
            ("0008_drop.up.sq", "DROP TABLE x;"),
            ("0009_orphan.down.sql", "SELECT 1;"),
            ("20261201093000123456_timestamp.up.sql", "SELECT 1;"),
            ("seed.sql", "INSERT …"),
        ]);
        assert_eq!(folder.migrations.len(), 1);
        let text = problems.join("\n");
        assert!(
            text.contains("0008_drop.up.sq does not end in `.sql`"),
            "{text}"
        );
        assert!(
            text.contains("0009_orphan.down.sql is a down migration without its up"),
            "{text}"
        );
        assert!(
            text.contains("does not fit sqlx's 64-bit version"),
            "{text}"
        );
        assert!(
            text.contains("seed.sql is not named like a migration"),
            "{text}"
        );
    }

    #[test]
    fn one_version_written_two_ways_is_a_duplicate_and_a_bom_is_named() {
        let (folder, problems) = problems(&[
            ("0008_x.up.sql", "SELECT 1;"),
            ("8_x.up.sql", "\u{feff}SELECT 1;"),
        ]);
        assert_eq!(folder.migrations.len(), 1);
        assert_eq!(folder.duplicates.len(), 1);
        assert!(
            problems.join("\n").contains("byte-order mark"),
            "{problems:?}"
        );
    }

    #[test]
    fn ignored_characters_are_left_out_of_the_checksum() {
        let crlf = "SELECT 1;\r\nSELECT 2;\r\n";
        let lf = "SELECT 1;\nSELECT 2;\n";
        assert_ne!(checksum(crlf, &[]), checksum(lf, &[]));
        assert_eq!(checksum(crlf, &['\r']), checksum(lf, &[]));
    }
}
