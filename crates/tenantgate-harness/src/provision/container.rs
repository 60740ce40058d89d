//! PostgreSQL in a throwaway container, through testcontainers.

use std::time::Duration;

use anyhow::bail;
use testcontainers::core::{IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

use super::docker::OWNER_LABEL;
use super::{Janitor, Resource};

/// The official image prints this on stderr once for its init-time server (which listens
/// on a Unix socket only) and again when it is really up; an image built by
/// `cargo xtask pg-image` prints it once. Waiting for the first one and then retrying the
/// connection covers both.
const READY_MESSAGE: &str = "database system is ready to accept connections";

/// Where the container's cluster lives: a tmpfs mount unless TENANTGATE_PG_TMPFS=0.
const DATA_DIR: &str = "/var/lib/postgresql/data";

fn data_in_memory() -> bool {
    std::env::var("TENANTGATE_PG_TMPFS").map_or(true, |value| value != "0")
}

/// Starts a container from `image` and returns the URL of its `postgres` database.
pub(crate) async fn start(image: &str, janitor: &Janitor) -> anyhow::Result<String> {
    super::docker::asking_for_a_container();
    let (name, tag) = split_image(image);
    let password = random_password();
    let mut request = GenericImage::new(name, tag)
        .with_exposed_port(5432.tcp())
        .with_wait_for(WaitFor::message_on_stderr(READY_MESSAGE))
        .with_env_var("POSTGRES_PASSWORD", &password)
        .with_env_var("POSTGRES_USER", "postgres")
        .with_env_var("POSTGRES_DB", "postgres")
        // A throwaway database needs no durability: both the official image and ours
        // pass these to initdb and to the server.
        .with_env_var("POSTGRES_INITDB_ARGS", "--no-sync")
        .with_cmd(
            super::THROWAWAY_SETTINGS
                .iter()
                .flat_map(|setting| ["-c", setting]),
        )
        .with_label(OWNER_LABEL, std::process::id().to_string())
        .with_startup_timeout(Duration::from_secs(60));
    if data_in_memory() {
        // A throwaway database needs no disk either: cloning and migrating a small
        // database wait mostly on the disk, 10–20× longer than in memory (`cargo xtask
        // bench`). PGDATA is set too, so images whose default differs use the mount.
        request = request
            .with_env_var("PGDATA", DATA_DIR)
            .with_mount(Mount::tmpfs_mount(DATA_DIR));
    }
    let container = match request.start().await {
        Ok(container) => container,
        Err(error) => {
            let text = format!("{error:#}");
            if text.contains("pull") || text.contains("No such image") || text.contains("not found")
            {
                let fix = match crate::pg_image::major_of(image) {
                    Some(major) => crate::pg_image::how_to_get(major),
                    None => format!(
                        "build one from Debian packages with `cargo xtask pg-image` and set TENANTGATE_PG_IMAGE={local}, or pass --pg-image, or use --pg-provider local",
                        local = crate::pg_image::DEFAULT_TAG
                    ),
                };
                bail!(
                    "the PostgreSQL image `{image}` is not on this machine and could not be pulled: {text}\nfix: {fix}"
                );
            }
            bail!("start a PostgreSQL container from `{image}`: {text}");
        }
    };
    let port = container.get_host_port_ipv4(5432.tcp()).await;
    let host = container
        .get_host()
        .await
        .map(|h| h.to_string())
        .unwrap_or_else(|_| "127.0.0.1".to_string());
    let url = format!(
        "postgres://postgres:{password}@{host}:{}/postgres",
        port.as_ref().map_or(0, |p| *p)
    );
    let bridge = container.get_bridge_ip_address().await.ok();
    janitor.register(Resource::Container {
        container: Box::new(container),
        url: url.clone(),
    });
    if let Err(error) = port {
        bail!("read the port of the PostgreSQL container: {error}");
    }
    super::wait_until_accepting(&url, Duration::from_secs(30)).await?;
    Ok(match bridge {
        Some(ip) => direct_url(&url, &password, ip).await,
        None => url,
    })
}

/// The container's own address on the Docker bridge, when this machine reaches it (a
/// Linux host does; Docker Desktop and rootless engines do not): the published port goes
/// through `docker-proxy`, which doubled every round trip (0.20 ms against 0.10 ms for
/// `SELECT 1`), and a rehearsal makes thousands. Otherwise the published port.
async fn direct_url(published: &str, password: &str, ip: std::net::IpAddr) -> String {
    use sqlx::Connection;
    let direct = format!(
        "postgres://postgres:{password}@{}/postgres",
        std::net::SocketAddr::new(ip, 5432)
    );
    let attempt = tokio::time::timeout(
        Duration::from_millis(500),
        sqlx::PgConnection::connect(&direct),
    )
    .await;
    match attempt {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            direct
        }
        _ => published.to_string(),
    }
}

/// `registry:5000/postgres:15` → (`registry:5000/postgres`, `15`); no tag means `latest`.
fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

fn random_password() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "tg{:016x}",
        RandomState::new().hash_one(std::time::SystemTime::now())
    )
}
