//! The janitor: every provisioned resource is registered here, and removed when the run
//! ends, whether it passed, failed or was interrupted (see `main.rs`).

use std::sync::Mutex;

use testcontainers::{ContainerAsync, GenericImage};

use super::LocalCluster;

/// Prefix of every temporary folder a run creates, followed by the run's pid.
pub(crate) const TEMP_PREFIX: &str = "tenantgate-";

/// Something a run created and must remove.
pub enum Resource {
    Container {
        container: Box<ContainerAsync<GenericImage>>,
        url: String,
    },
    /// A throwaway database on an existing server.
    ServerDatabase {
        admin_url: String,
        name: String,
        display_url: String,
    },
    Cluster(LocalCluster),
    /// A temporary folder holding a SQLite database file.
    SqliteDir {
        dir: tempfile::TempDir,
        database: std::path::PathBuf,
    },
    /// Any other temporary folder (the test suite's client tool wrappers).
    Folder(tempfile::TempDir),
}

#[derive(Default)]
pub struct Janitor {
    resources: Mutex<Vec<Resource>>,
}

impl Janitor {
    pub fn new() -> Janitor {
        Janitor::default()
    }

    pub fn register(&self, resource: Resource) {
        self.resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(resource);
    }

    /// Removes everything registered, newest first. With `keep`, leaves it all in place
    /// and returns how to reach each resource instead. Errors are returned as lines to
    /// print: cleanup goes on past a failure.
    pub async fn finish(&self, keep: bool) -> Vec<String> {
        let resources: Vec<Resource> =
            std::mem::take(&mut *self.resources.lock().unwrap_or_else(|e| e.into_inner()));
        let mut lines = Vec::new();
        for resource in resources.into_iter().rev() {
            if keep {
                lines.push(keep_resource(resource));
                continue;
            }
            if let Err(error) = remove(resource).await {
                lines.push(format!("cleanup: {error:#}"));
            }
        }
        lines
    }
}

async fn remove(resource: Resource) -> anyhow::Result<()> {
    use anyhow::Context;
    match resource {
        Resource::Container { container, .. } => {
            let id = container.id().to_string();
            container
                .rm()
                .await
                .with_context(|| format!("remove container {id}"))
        }
        Resource::ServerDatabase {
            admin_url, name, ..
        } => super::server::drop_database(&admin_url, &name).await,
        Resource::Cluster(mut cluster) => {
            cluster.stop();
            Ok(())
        }
        Resource::SqliteDir { dir, .. } | Resource::Folder(dir) => {
            let path = dir.path().display().to_string();
            dir.close().with_context(|| format!("remove {path}"))
        }
    }
}

fn keep_resource(resource: Resource) -> String {
    match resource {
        Resource::Container { container, url } => {
            let id = container.id().to_string();
            // Forgetting the handle skips its Drop, which would remove the container.
            std::mem::forget(container);
            remember_kept(&id);
            format!("kept container {id}: psql '{url}'   (remove: docker rm -f {id})")
        }
        Resource::ServerDatabase {
            name, display_url, ..
        } => {
            remember_kept(&name);
            format!(
                "kept database {name}: psql '{display_url}' with the password of --pg-url (it is not printed)   (remove: DROP DATABASE {name})"
            )
        }
        Resource::Cluster(cluster) => match cluster.keep() {
            Ok((url, dir, pid)) => {
                remember_kept(&dir);
                format!(
                    "kept local cluster (postmaster pid {pid}) in {dir}: psql '{url}'   (remove: kill -INT {pid}; rm -rf {dir})"
                )
            }
            Err(error) => format!("could not keep the local cluster: {error:#}"),
        },
        Resource::SqliteDir { dir, database } => {
            let path = dir.keep();
            remember_kept(&path.display().to_string());
            format!(
                "kept {}: sqlite3 {}   (remove: rm -rf {})",
                path.display(),
                database.display(),
                path.display()
            )
        }
        Resource::Folder(dir) => {
            let path = dir.keep();
            remember_kept(&path.display().to_string());
            format!(
                "kept {}   (remove: rm -rf {})",
                path.display(),
                path.display()
            )
        }
    }
}

/// The file listing what `--keep` kept (container ids, folders, database names), which
/// the sweeps for leftovers of dead runs must leave alone.
fn kept_registry() -> std::path::PathBuf {
    std::env::temp_dir().join("tenantgate-kept.txt")
}

fn remember_kept(key: &str) {
    use std::io::Write;
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(kept_registry())
    {
        let _ = writeln!(file, "{key}");
    }
}

/// Whether `--keep` kept this resource (a folder path or database name).
pub(crate) fn was_kept(key: &str) -> bool {
    std::fs::read_to_string(kept_registry()).is_ok_and(|text| text.lines().any(|line| line == key))
}

/// Whether `--keep` kept the container whose short id (as `docker ps` prints it) this is.
pub(crate) fn was_kept_container(short_id: &str) -> bool {
    std::fs::read_to_string(kept_registry())
        .is_ok_and(|text| text.lines().any(|line| line.starts_with(short_id)))
}

/// A temporary folder named after this run's pid, so that a later run can tell whether
/// its owner is still alive.
pub(crate) fn temp_dir(kind: &str) -> anyhow::Result<tempfile::TempDir> {
    use anyhow::Context;
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{kind}-{}-", std::process::id()))
        .tempdir_in(temp_root())
        .context("create a temporary folder")
}

/// Where throwaway databases live: in memory (`/dev/shm`) when the machine has it and
/// TMPDIR does not say otherwise, because a database that is thrown away needs no disk,
/// and a disk's latency is what cloning and migrating a small database mostly wait for.
pub(crate) fn temp_root() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let writable = |dir: &std::path::Path| {
        std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) && tempfile::tempfile_in(dir).is_ok()
    };
    if std::env::var_os("TMPDIR").is_none() && writable(shm) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// The pid in a folder name made by [`temp_dir`], if it is one of ours.
pub(crate) fn owner_pid(file_name: &str, kind: &str) -> Option<i32> {
    let rest = file_name
        .strip_prefix(TEMP_PREFIX)?
        .strip_prefix(kind)?
        .strip_prefix('-')?;
    rest.split('-').next()?.parse().ok()
}

/// What the folders that hold (or held, in earlier runs) temporary folders contain.
pub(crate) fn temp_entries() -> Vec<std::fs::DirEntry> {
    let mut roots = vec![temp_root(), std::env::temp_dir()];
    roots.dedup();
    roots
        .into_iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .collect()
}

/// Removes temporary SQLite folders whose run is gone (clusters are swept with their
/// postmaster in `local_cluster`).
pub(crate) fn sweep_leftover_dirs() {
    for entry in temp_entries() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = owner_pid(&name, "sqlite")
            && !super::process_alive(pid)
            && !was_kept(&entry.path().display().to_string())
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
