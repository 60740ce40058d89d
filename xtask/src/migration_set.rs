//! The migrations a run tests: the migrators embedded in `app` when the configuration
//! points at this app's folders, or a folder read from disk when it points elsewhere (a
//! scratch copy in a test, another app).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sqlx::migrate::{Migration, Migrator};

use app::Backend;

/// The up migrations of one backend, each with the file it came from.
pub struct MigrationSet {
    pub backend: Backend,
    pub dir: PathBuf,
    /// True when these are the migrators compiled into `app`.
    pub embedded: bool,
    pub migrator: Migrator,
    files: BTreeMap<(i64, bool), PathBuf>,
}

impl MigrationSet {
    pub async fn load(backend: Backend, dir: &Path) -> anyhow::Result<MigrationSet> {
        let files = migration_files(dir)?;
        let embedded = same_dir(dir, Path::new(backend.embedded_dir()));
        let migrator = if embedded {
            let on_disk = read_dir_migrator(dir).await?;
            check_embedded_matches_disk(backend, backend.migrator(), &on_disk, &files)?;
            Migrator::with_migrations(backend.migrator().iter().cloned().collect())
        } else {
            read_dir_migrator(dir).await?
        };
        Ok(MigrationSet {
            backend,
            dir: dir.to_path_buf(),
            embedded,
            migrator,
            files,
        })
    }

    pub fn ups(&self) -> impl Iterator<Item = &Migration> {
        self.migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
    }

    pub fn down_of(&self, version: i64) -> Option<&Migration> {
        self.migrator
            .iter()
            .find(|m| m.version == version && m.migration_type.is_down_migration())
    }

    /// The file a migration came from, relative to the project root where possible.
    pub fn file(&self, version: i64, up: bool) -> String {
        match self.files.get(&(version, up)) {
            Some(path) => crate::display_path(path),
            None => format!("{}/{version}_…", crate::display_path(&self.dir)),
        }
    }
}

async fn read_dir_migrator(dir: &Path) -> anyhow::Result<Migrator> {
    Migrator::new(dir.to_path_buf())
        .await
        .with_context(|| format!("read the migrations in {}", dir.display()))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `<version>_<name>.up.sql` / `.down.sql` files by (version, is_up).
fn migration_files(dir: &Path) -> anyhow::Result<BTreeMap<(i64, bool), PathBuf>> {
    let folder = crate::folder::Folder::read(dir)?;
    let mut files = BTreeMap::new();
    for migration in folder.migrations.iter().chain(&folder.duplicates) {
        files.insert((migration.version, true), migration.up.clone());
        if let Some(down) = &migration.down {
            files.insert((migration.version, false), down.clone());
        }
    }
    Ok(files)
}

/// Compares the migrator embedded in `app` for `backend` with the files in `dir`.
pub async fn compare_with_embedded(backend: Backend, dir: &Path) -> anyhow::Result<()> {
    let on_disk = read_dir_migrator(dir).await?;
    check_embedded_matches_disk(
        backend,
        backend.migrator(),
        &on_disk,
        &migration_files(dir)?,
    )
}

/// The embedded migrator must be byte for byte the folder on disk; a difference means the
/// binary in hand was built from other files (a stale build, or an edit cargo missed).
fn check_embedded_matches_disk(
    backend: Backend,
    embedded: &Migrator,
    on_disk: &Migrator,
    files: &BTreeMap<(i64, bool), PathBuf>,
) -> anyhow::Result<()> {
    let key = |m: &Migration| (m.version, m.migration_type.is_up_migration());
    let embedded_by_key: BTreeMap<_, _> = embedded.iter().map(|m| (key(m), m)).collect();
    let disk_by_key: BTreeMap<_, _> = on_disk.iter().map(|m| (key(m), m)).collect();
    let name = |k: &(i64, bool)| match files.get(k) {
        Some(path) => crate::display_path(path),
        None => format!(
            "{backend} migration {} ({})",
            k.0,
            if k.1 { "up" } else { "down" }
        ),
    };
    let mut differences = Vec::new();
    for (k, disk) in &disk_by_key {
        match embedded_by_key.get(k) {
            None => differences.push(format!("{} is on disk but not embedded in app", name(k))),
            Some(emb) if emb.checksum != disk.checksum => {
                differences.push(format!("{} differs from the copy embedded in app", name(k)))
            }
            Some(_) => {}
        }
    }
    for k in embedded_by_key.keys() {
        if !disk_by_key.contains_key(k) {
            differences.push(format!(
                "{} is embedded in app but no longer on disk",
                name(k)
            ));
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    bail!(
        "the {backend} migrations embedded in app differ from {}:\n  - {}\nfix: rebuild app (`cargo build -p app`); app/build.rs reruns on any change under migrations/",
        crate::display_path(Path::new(backend.embedded_dir())),
        differences.join("\n  - ")
    )
}
