//! The migrations a run tests: the migrators the app embeds (`sqlx::migrate!`, handed over
//! by the workspace's xtask) when the configuration is the app's own, after checking that
//! they equal the files on disk; or a folder read from disk, the way the app's sqlx reads
//! it (its `sqlx.toml`), when the configuration points elsewhere (a scratch copy, an
//! example app, a history being adopted).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sqlx::migrate::{Migration, Migrator, ResolveConfig, ResolveWith};
use tenantgate::config::Config;
use tenantgate::{App, Backend};

/// The up migrations of one backend, each with the file it came from.
pub struct MigrationSet {
    pub backend: Backend,
    pub dir: PathBuf,
    /// True when these are the migrators compiled into the app.
    pub embedded: bool,
    pub migrator: Migrator,
    files: BTreeMap<(i64, bool), PathBuf>,
}

impl MigrationSet {
    /// `backend`'s migrations: `embedded`'s when it is given and embeds them, else the
    /// configured folder's.
    pub async fn load(
        config: &Config,
        backend: Backend,
        embedded: Option<&App<'_>>,
    ) -> anyhow::Result<MigrationSet> {
        let dir = config.migrations_dir(backend).with_context(|| {
            format!(
                "{} configures no {backend} migrations",
                crate::display_path(&config.path)
            )
        })?;
        let settings = config.sqlx_settings()?;
        // Reading and hashing the files is blocking work (a migration may be many MB): off
        // the runtime, so that Ctrl-C is answered while it runs.
        let files = {
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || migration_files(&dir))
                .await
                .context("read the migration files")??
        };
        let on_disk = read_dir_migrator(dir, &settings.ignored_chars, &settings.table).await?;
        let migrator = match embedded.and_then(|app| app.embedded(backend)) {
            Some(embedded) => {
                check_embedded_matches_disk(backend, embedded.migrator, &on_disk, &files, dir)?;
                if embedded.migrator.table_name != on_disk.table_name {
                    bail!(
                        "the app's {backend} migrator records its migrations in `{}`, but {} says `{}`\nfix: set `table` under [migrations] (or the app's sqlx.toml `[migrate] table-name`) to what the app uses",
                        embedded.migrator.table_name,
                        crate::display_path(&config.path),
                        on_disk.table_name
                    );
                }
                let mut migrator =
                    Migrator::with_migrations(embedded.migrator.iter().cloned().collect());
                migrator.dangerous_set_table_name(embedded.migrator.table_name.to_string());
                migrator
            }
            None => on_disk,
        };
        Ok(MigrationSet {
            backend,
            dir: dir.to_path_buf(),
            embedded: embedded.is_some_and(|app| app.embedded(backend).is_some()),
            migrator,
            files,
        })
    }

    pub fn table(&self) -> &str {
        &self.migrator.table_name
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

    /// The file a migration came from, relative to the workspace root where possible.
    pub fn file(&self, version: i64, up: bool) -> String {
        match self.files.get(&(version, up)) {
            Some(path) => crate::display_path(path),
            None => format!("{}/{version}_…", crate::display_path(&self.dir)),
        }
    }

    /// `0001_create_catalog`, as the file is named.
    pub fn stem(&self, version: i64) -> String {
        let file = self.file(version, true);
        let name = file.rsplit('/').next().unwrap_or(&file);
        name.trim_end_matches(".sql")
            .trim_end_matches(".up")
            .to_string()
    }
}

/// The migrator sqlx builds from `dir`, with the app's ignored characters and table.
pub async fn read_dir_migrator(
    dir: &Path,
    ignored_chars: &[char],
    table: &str,
) -> anyhow::Result<Migrator> {
    let mut resolve = ResolveConfig::new();
    resolve.ignore_chars(ignored_chars.iter().copied());
    let mut migrator = Migrator::new(ResolveWith(dir.to_path_buf(), resolve))
        .await
        .with_context(|| format!("read the migrations in {}", crate::display_path(dir)))?;
    migrator.dangerous_set_table_name(table.to_string());
    Ok(migrator)
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

/// Compares the migrations `app` embeds for `backend` with the configured folder.
pub async fn compare_with_embedded(
    config: &Config,
    backend: Backend,
    app: &App<'_>,
) -> anyhow::Result<()> {
    MigrationSet::load(config, backend, Some(app))
        .await
        .map(drop)
}

/// The embedded migrator must be byte for byte the folder on disk; a difference means the
/// binary in hand was built from other files (a stale build, another clone's build, or
/// an edit cargo missed).
fn check_embedded_matches_disk(
    backend: Backend,
    embedded: &Migrator,
    on_disk: &Migrator,
    files: &BTreeMap<(i64, bool), PathBuf>,
    dir: &Path,
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
            None => differences.push(format!(
                "{} is on disk but not embedded in the app",
                name(k)
            )),
            Some(emb) if emb.checksum != disk.checksum => differences.push(format!(
                "{} differs from the copy embedded in the app",
                name(k)
            )),
            Some(_) => {}
        }
    }
    for k in embedded_by_key.keys() {
        if !disk_by_key.contains_key(k) {
            differences.push(format!(
                "{} is embedded in the app but no longer on disk",
                name(k)
            ));
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    bail!(
        "the {backend} migrations embedded in the app differ from {}:\n  - {}\nfix: rebuild the app (`cargo build`); its build.rs must print `cargo:rerun-if-changed=` for the migrations folder so that cargo notices added and removed files",
        crate::display_path(dir),
        differences.join("\n  - ")
    )
}
