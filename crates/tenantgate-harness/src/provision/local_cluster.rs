//! An ephemeral PostgreSQL cluster from local server binaries: `initdb` into a temporary
//! folder, `postgres` on a free port with fsync off, stopped and removed afterwards.
//!
//! initdb refuses to run as root, so as root both run as the `postgres` OS user. The
//! postmaster is spawned directly (not through runuser, whose death would orphan it) and
//! asks the kernel for SIGQUIT when the thread that spawned it dies, so even a harness
//! killed with SIGKILL does not leave a server running; its folder is swept by the next run.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::janitor::{owner_pid, temp_dir};

pub struct LocalCluster {
    dir: Option<tempfile::TempDir>,
    postmaster: Child,
    pub url: String,
    bindir: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
}

/// The folder holding `initdb` and `postgres`: `TENANTGATE_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian, Ubuntu), else `pg_config --bindir`, else `PATH`.
pub fn find_bindir() -> Option<PathBuf> {
    let has_binaries = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(dir) = std::env::var("TENANTGATE_PG_BINDIR") {
        return Some(PathBuf::from(dir)).filter(|dir| has_binaries(dir));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            Some((
                entry.file_name().to_str()?.parse().ok()?,
                entry.path().join("bin"),
            ))
        })
        .filter(|(_, dir)| has_binaries(dir))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Some(dir);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_binaries(&dir) {
            return Some(dir);
        }
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| has_binaries(dir))
}

impl LocalCluster {
    pub async fn start(bindir: &Path) -> anyhow::Result<LocalCluster> {
        let dir = temp_dir("pg")?;
        let owner = server_user()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("hand the cluster folder to the postgres user")?;
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "--no-sync",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ])
            .current_dir(dir.path());
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid);
        }
        // initdb takes most of a second: off the runtime's thread, so that the other
        // backend's rehearsal goes on meanwhile.
        let output = tokio::task::spawn_blocking(move || initdb.output())
            .await
            .context("wait for initdb")?
            .with_context(|| format!("run {}", bindir.join("initdb").display()))?;
        if !output.status.success() {
            bail!(
                "initdb failed in {}: {}",
                dir.path().display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }

        let port = free_port()?;
        let log = std::fs::File::create(dir.path().join("postgres.log"))
            .context("create the server log")?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path().join("postgres.log"), Some(uid), Some(gid))?;
        }
        drop(log);
        let postmaster = spawn_postmaster(bindir, dir.path(), port, owner, false)?;
        let mut cluster = LocalCluster {
            dir: Some(dir),
            postmaster,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bindir: bindir.to_path_buf(),
            port,
            owner,
        };
        if let Err(error) = super::wait_until_accepting(&cluster.url, Duration::from_secs(30)).await
        {
            let log = cluster.log_tail();
            cluster.stop();
            bail!("the local PostgreSQL cluster did not start: {error}\nserver log:\n{log}");
        }
        Ok(cluster)
    }

    fn log_tail(&self) -> String {
        let Some(dir) = &self.dir else {
            return String::new();
        };
        let log = std::fs::read_to_string(dir.path().join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Immediate shutdown, then removes the folder. Idempotent, and bounded: a postmaster
    /// signalled in its first milliseconds, before it handles signals, can miss a SIGQUIT,
    /// so it is repeated, and after five seconds the postmaster is killed.
    pub fn stop(&mut self) {
        let pid = self.postmaster.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut next_signal = Instant::now();
        while let Ok(None) = self.postmaster.try_wait() {
            let now = Instant::now();
            if now >= deadline {
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = self.postmaster.wait();
                break;
            }
            if now >= next_signal {
                unsafe { libc::kill(pid, libc::SIGQUIT) };
                next_signal = now + Duration::from_millis(200);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }

    /// Restarts the server on the same port and data: a fast shutdown (every session is
    /// ended, as in a failover or a maintenance restart), then a new postmaster.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let dir = self
            .dir
            .as_ref()
            .context("the cluster is stopped")?
            .path()
            .to_path_buf();
        let pid = self.postmaster.id() as i32;
        // SAFETY: a signal to the postmaster this value spawned.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(None) = self.postmaster.try_wait() {
            if Instant::now() >= deadline {
                bail!("the local cluster did not shut down to restart");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.postmaster = spawn_postmaster(&self.bindir, &dir, self.port, self.owner, false)?;
        super::wait_until_accepting(&self.url, Duration::from_secs(30)).await
    }

    /// Leaves the cluster running after the harness exits: its postmaster was tied to
    /// the harness (it dies with it), so it is shut down cleanly and started again on its
    /// own, on the same port and data. Returns its URL, folder and postmaster pid.
    pub fn keep(mut self) -> anyhow::Result<(String, String, u32)> {
        let dir = self.dir.take().context("the cluster is already stopped")?;
        let pid = self.postmaster.id() as i32;
        // SIGINT: PostgreSQL's fast shutdown, which writes everything out.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(None) = self.postmaster.try_wait() {
            if Instant::now() >= deadline {
                bail!("the local cluster did not shut down to be kept");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let postmaster = spawn_postmaster(&self.bindir, dir.path(), self.port, self.owner, true)?;
        let pid = postmaster.id();
        let path = dir.keep().display().to_string();
        let url = self.url.clone();
        // Wait for it in a small runtime of its own: keep runs while the janitor finishes.
        let ready = std::thread::spawn({
            let url = url.clone();
            move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|runtime| {
                        runtime.block_on(super::wait_until_accepting(&url, Duration::from_secs(30)))
                    })
            }
        })
        .join()
        .map_err(|_| anyhow::format_err!("wait for the kept cluster"))?;
        ready?;
        Ok((url, path, pid))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.dir.is_some() {
            self.stop();
        }
    }
}

/// As root, the uid and gid of the `postgres` OS user; otherwise none (run as ourselves).
/// PostgreSQL's servers and PgBouncer refuse to run as root.
pub fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        bail!(
            "running as root, and initdb refuses root: create a `postgres` OS user (`useradd --system postgres`) or run as another user"
        );
    }
    Ok(Some(unsafe { ((*entry).pw_uid, (*entry).pw_gid) }))
}

/// A TCP port on 127.0.0.1 nothing listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Stops postmasters and removes folders of clusters whose run is gone.
pub(crate) fn sweep_leftover_clusters() {
    for entry in super::janitor::temp_entries() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name, "pg") else {
            continue;
        };
        if super::process_alive(pid)
            || super::janitor::was_kept(&entry.path().display().to_string())
        {
            continue;
        }
        let pid_file = entry.path().join("data/postmaster.pid");
        let postmaster = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
        // The pid file may be stale and its pid reused: only signal a postgres process.
        if let Some(postmaster) = postmaster
            && std::fs::read_to_string(format!("/proc/{postmaster}/comm"))
                .is_ok_and(|name| name.trim() == "postgres")
        {
            unsafe { libc::kill(postmaster, libc::SIGQUIT) };
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Spawns the postmaster of the cluster in `dir` on `port`. Unless `detached`, it gets
/// SIGQUIT when the thread that spawned it dies, so even a harness killed with SIGKILL
/// leaves no server running; a detached one (kept with `--keep`) runs on in its own
/// process group.
fn spawn_postmaster(
    bindir: &Path,
    dir: &Path,
    port: u16,
    owner: Option<(u32, u32)>,
    detached: bool,
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("postgres.log"))
        .context("open the server log")?;
    let mut postgres = Command::new(bindir.join("postgres"));
    postgres
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=50",
        ])
        .args(
            super::THROWAWAY_SETTINGS
                .iter()
                .flat_map(|setting| ["-c", setting]),
        )
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some((uid, gid)) = owner {
        postgres.uid(uid).gid(gid);
    }
    if detached {
        postgres.process_group(0);
    } else {
        // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec,
        // after the uid change (which would otherwise clear it).
        unsafe {
            postgres.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    postgres
        .spawn()
        .with_context(|| format!("start {}", bindir.join("postgres").display()))
}
