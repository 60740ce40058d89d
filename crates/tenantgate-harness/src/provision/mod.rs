//! Fresh, empty databases for a run, and their removal.
//!
//! PostgreSQL comes, unless a flag forces one, from the first of: a testcontainers
//! container when a Docker engine answers; an existing server (`TENANTGATE_PG_URL`), on
//! which a throwaway database is created; an ephemeral cluster from local binaries.
//! SQLite is a file in a temporary folder. Every resource is registered with the
//! [`Janitor`], which removes it on success, failure and Ctrl-C.

mod container;
mod docker;
mod janitor;
mod local_cluster;
mod server;

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::bail;

pub(crate) use docker::image_exists;
pub(crate) use janitor::temp_dir;
pub use janitor::{Janitor, Resource};
pub use local_cluster::{LocalCluster, find_bindir, free_port, server_user};
pub use server::host_tag;
pub(crate) use server::with_database;

/// Which PostgreSQL provider to use (`--pg-provider`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PgProviderChoice {
    /// Container if Docker answers, else `--pg-url`/`TENANTGATE_PG_URL`, else local binaries.
    Auto,
    /// A testcontainers container (needs a Docker engine and the image).
    Container,
    /// A throwaway database on the server given by `--pg-url`/`TENANTGATE_PG_URL`.
    Url,
    /// An ephemeral cluster from local PostgreSQL server binaries.
    Local,
}

/// Where PostgreSQL comes from, as asked on the command line or in the environment.
#[derive(Clone, Debug)]
pub struct PgOptions {
    pub choice: PgProviderChoice,
    pub image: String,
    pub server_url: Option<String>,
}

impl PgOptions {
    /// The environment's options, overridden by the command-line flags that were given.
    /// An explicit URL forces the `url` provider, unless another was forced too.
    pub fn from_flags(
        choice: PgProviderChoice,
        image: Option<&str>,
        url: Option<&str>,
    ) -> PgOptions {
        let mut pg = PgOptions::from_env();
        // `auto` is the flag's default: TENANTGATE_PG_PROVIDER then stands.
        if choice != PgProviderChoice::Auto {
            pg.choice = choice;
        }
        if let Some(image) = image {
            pg.image = image.to_string();
        }
        if let Some(url) = url {
            pg.server_url = Some(url.to_string());
            if pg.choice == PgProviderChoice::Auto {
                pg.choice = PgProviderChoice::Url;
            }
        }
        pg
    }

    /// A throwaway database on the server at `url` (the `url` provider); the image is the
    /// environment's.
    pub fn on_server(url: &str) -> PgOptions {
        PgOptions {
            choice: PgProviderChoice::Url,
            server_url: Some(url.to_string()),
            ..PgOptions::from_env()
        }
    }

    /// TENANTGATE_PG_PROVIDER (auto, container, url, local), TENANTGATE_PG_IMAGE and
    /// TENANTGATE_PG_URL.
    pub fn from_env() -> PgOptions {
        use clap::ValueEnum;
        PgOptions {
            choice: match std::env::var("TENANTGATE_PG_PROVIDER") {
                Ok(choice) if !choice.trim().is_empty() => {
                    PgProviderChoice::from_str(choice.trim(), true).unwrap_or_else(|_| {
                        eprintln!(
                            "warning: TENANTGATE_PG_PROVIDER={choice:?} is not one of auto, container, url, local: auto is used"
                        );
                        PgProviderChoice::Auto
                    })
                }
                _ => PgProviderChoice::Auto,
            },
            image: std::env::var("TENANTGATE_PG_IMAGE")
                .unwrap_or_else(|_| DEFAULT_PG_IMAGE.to_string()),
            server_url: std::env::var("TENANTGATE_PG_URL")
                .ok()
                .filter(|url| !url.is_empty()),
        }
    }
}

/// The official image, at the major version the snapshots are taken with.
/// The settings of every PostgreSQL server a run starts (container or local cluster).
/// A throwaway database needs no durability. Nor autovacuum: a worker woken by freshly
/// generated rows deadlocked with a migration's `ALTER TABLE` (40P01, the migration
/// failed: a flaky rehearsal); the volume generator runs ANALYZE itself.
pub(crate) const THROWAWAY_SETTINGS: [&str; 4] = [
    "autovacuum=off",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
];

pub const DEFAULT_PG_IMAGE: &str = "postgres:15";

/// Which provider a database came from, for the report.
#[derive(Clone, Debug)]
pub enum Provider {
    Container { image: String },
    Server { address: String },
    LocalBinaries { bindir: String },
    SqliteFile,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provider::Container { image } => write!(f, "testcontainers ({image})"),
            Provider::Server { address } => write!(f, "server ({address})"),
            Provider::LocalBinaries { bindir } => write!(f, "local binaries ({bindir})"),
            Provider::SqliteFile => write!(f, "temp file"),
        }
    }
}

/// Another fresh, empty database on the server `first` is on, for work that runs beside
/// `first`'s (the reversal pass, the two halves of a long history, [`crate::rehearsal`]):
/// on a throwaway container or cluster the harness is its superuser, and the database
/// goes with the server; on a `--pg-url` server, a second throwaway database of that
/// server, dropped by `janitor` before the run ends.
pub async fn another_postgres_database(
    options: &PgOptions,
    first: &Database,
    janitor: &Janitor,
) -> anyhow::Result<String> {
    match &first.provider {
        Provider::Server { .. } => {
            let admin_url = options
                .server_url
                .clone()
                .ok_or_else(|| anyhow::anyhow!("the server's URL is gone"))?;
            Ok(server::create_throwaway_database(&admin_url, janitor)
                .await?
                .0)
        }
        Provider::Container { .. } | Provider::LocalBinaries { .. } => {
            server::create_database_on_own_server(&first.url).await
        }
        Provider::SqliteFile => anyhow::bail!("SQLite has no server to make a second database on"),
    }
}

/// A fresh, empty database.
#[derive(Clone, Debug)]
pub struct Database {
    pub url: String,
    pub provider: Provider,
    pub startup: Duration,
    /// Why this provider and not the first choice, when auto mode fell back.
    pub note: Option<String>,
}

/// Removes what killed earlier runs left behind: containers, throwaway databases cannot
/// be found without a server, so those are swept by [`postgres`] when it uses one.
pub fn sweep_leftovers() {
    docker::sweep_leftover_containers();
    local_cluster::sweep_leftover_clusters();
    janitor::sweep_leftover_dirs();
}

/// After an interruption: removes what was being created when the run was stopped, which
/// the janitor could not know of yet.
pub fn remove_strays_of_this_run() {
    docker::remove_containers_of_this_run();
}

/// Runs `work` on a new async runtime with a janitor: leftovers of dead runs are swept
/// first, and everything `work` registered is removed afterwards (what could not be is
/// printed). Ctrl-C or SIGTERM ends `work` early: its resources, and those it was still
/// creating, are removed and an error says so.
pub fn with_janitor<T>(work: impl AsyncFnOnce(&Janitor) -> anyhow::Result<T>) -> anyhow::Result<T> {
    use anyhow::Context;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let result = runtime.block_on(async {
        sweep_leftovers();
        let janitor = Janitor::new();
        let result = tokio::select! {
            result = work(&janitor) => Some(result),
            () = crate::interrupted() => None,
        };
        for line in janitor.finish(false).await {
            eprintln!("{line}");
        }
        result.unwrap_or_else(|| {
            remove_strays_of_this_run();
            bail!("interrupted; removed every container, database and temporary file of this run")
        })
    });
    // Blocking work that cannot be cancelled must not hold the exit: it ends with the
    // process.
    runtime.shutdown_background();
    result
}

/// Provisions a fresh PostgreSQL database, registered with `janitor`.
pub async fn postgres(options: &PgOptions, janitor: &Janitor) -> anyhow::Result<Database> {
    let started = Instant::now();
    let mut note = None;
    let choice = match options.choice {
        PgProviderChoice::Auto if docker::engine_answers() => {
            let image = docker::image_to_use(&options.image);
            match find_bindir() {
                // An engine without the image would have to pull it, and there may be no
                // registry: installed server binaries are the surer way.
                Some(bindir) if !docker::image_exists(&image) => {
                    note = Some(format!(
                        "the Docker engine has no image `{image}`: used the local PostgreSQL binaries in {} (build the image with `cargo xtask pg-image`, or force --pg-provider container)",
                        bindir.display()
                    ));
                    PgProviderChoice::Local
                }
                _ => PgProviderChoice::Container,
            }
        }
        PgProviderChoice::Auto if options.server_url.is_some() => PgProviderChoice::Url,
        PgProviderChoice::Auto if find_bindir().is_some() => PgProviderChoice::Local,
        PgProviderChoice::Auto => bail!(
            "no PostgreSQL is available: no Docker engine answers, TENANTGATE_PG_URL is not set, and no PostgreSQL server binaries were found\n\
             fix one of:\n  - start Docker (the image is {image}; without a registry build one with `cargo xtask pg-image`)\n  \
             - pass --pg-url postgres://user:password@host/db of a server where the user may CREATE DATABASE\n  \
             - install the server binaries (Debian/Ubuntu: `apt-get install postgresql`; or set TENANTGATE_PG_BINDIR)\n  \
             - or test SQLite alone with --backend sqlite",
            image = options.image
        ),
        forced => forced,
    };
    let (url, provider) = match choice {
        PgProviderChoice::Container => {
            // Auto chose the container because the engine answered; only a forced choice
            // still needs asking.
            if options.choice == PgProviderChoice::Container && !docker::engine_answers() {
                bail!(
                    "--pg-provider container: no Docker engine answers at {}\nfix: start Docker (`dockerd &` or `systemctl start docker`), or use --pg-provider local",
                    docker::engine_address()
                );
            }
            let image = docker::image_to_use(&options.image);
            let url = container::start(&image, janitor).await?;
            (
                url,
                Provider::Container {
                    image: image.clone(),
                },
            )
        }
        PgProviderChoice::Url => {
            let Some(server_url) = &options.server_url else {
                bail!("--pg-provider url needs --pg-url or TENANTGATE_PG_URL");
            };
            let (url, address) = server::create_throwaway_database(server_url, janitor).await?;
            (url, Provider::Server { address })
        }
        PgProviderChoice::Local => {
            let Some(bindir) = find_bindir() else {
                bail!(
                    "--pg-provider local: no PostgreSQL server binaries (initdb, postgres) found\nfix: `apt-get install postgresql`, or set TENANTGATE_PG_BINDIR to the folder that holds initdb"
                );
            };
            let cluster = LocalCluster::start(&bindir).await?;
            let url = cluster.url.clone();
            janitor.register(Resource::Cluster(cluster));
            (
                url,
                Provider::LocalBinaries {
                    bindir: bindir.display().to_string(),
                },
            )
        }
        PgProviderChoice::Auto => unreachable!("resolved above"),
    };
    Ok(Database {
        url,
        provider,
        startup: started.elapsed(),
        note,
    })
}

/// Provisions a fresh SQLite database file in a temporary folder.
pub fn sqlite(janitor: &Janitor) -> anyhow::Result<Database> {
    let started = Instant::now();
    let dir = janitor::temp_dir("sqlite")?;
    let database = dir.path().join("rehearsal.db");
    let url = format!("sqlite://{}?mode=rwc", database.display());
    janitor.register(Resource::SqliteDir { dir, database });
    Ok(Database {
        url,
        provider: Provider::SqliteFile,
        startup: started.elapsed(),
        note: None,
    })
}

/// Whether a process with this id runs on this machine.
pub(crate) fn process_alive(pid: i32) -> bool {
    // kill(pid, 0) checks existence without sending anything; EPERM still means it exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Retries connecting until the server accepts, or `timeout` passes.
pub(crate) async fn wait_until_accepting(url: &str, timeout: Duration) -> anyhow::Result<()> {
    use sqlx::Connection;
    let deadline = Instant::now() + timeout;
    loop {
        match sqlx::PgConnection::connect(url).await {
            Ok(conn) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Err(error) if Instant::now() >= deadline => {
                bail!(
                    "PostgreSQL did not accept connections within {} s: {error}",
                    timeout.as_secs()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
