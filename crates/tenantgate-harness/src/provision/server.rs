//! A throwaway database on an existing PostgreSQL server (`--pg-url`).

use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{Janitor, Resource};

const CONNECT_FIX: &str = "fix: check that the server runs and that the URL, user and password are right, or leave --pg-url/TENANTGATE_PG_URL unset to use Docker or local binaries";

fn cannot_connect(address: &str) -> String {
    format!(
        "cannot connect to the PostgreSQL server given by --pg-url/TENANTGATE_PG_URL ({address})"
    )
}

/// Every throwaway database is named `tenantgate_<host>_<pid>_<nanos>`: the host (a digest
/// of this machine's id) tells a dead run of this machine from a colleague's on a shared
/// server, whose pids mean nothing here.
const NAME_PREFIX: &str = "tenantgate_";

/// Eight hex digits that name this machine: of `/etc/machine-id`, else the host name.
pub fn host_tag() -> String {
    use sha2::Digest;
    let id = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .filter(|id| !id.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_else(|| std::env::var("HOSTNAME").unwrap_or_default());
    let digest = sha2::Sha256::digest(id.trim().as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Creates a uniquely named database on the server at `server_url`; returns its URL and
/// the server's address (without credentials, for the report).
pub(crate) async fn create_throwaway_database(
    server_url: &str,
    janitor: &Janitor,
) -> anyhow::Result<(String, String)> {
    let address = redacted_address(server_url);
    let connected =
        tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(server_url)).await;
    let mut admin = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => bail!(
            "{}: {}\n{CONNECT_FIX}",
            cannot_connect(&address),
            tenantgate::db::error_text(&error)
        ),
        Err(_) => bail!(
            "{}: no answer within 10 s\n{CONNECT_FIX}",
            cannot_connect(&address)
        ),
    };
    check_privileges(&mut admin, &address).await?;
    sweep_leftover_databases(&mut admin).await;
    let name = create_database(&mut admin, &address).await?;
    let _ = admin.close().await;
    let url = with_database(server_url, &name);
    janitor.register(Resource::ServerDatabase {
        admin_url: server_url.to_string(),
        name: name.clone(),
        display_url: with_database(&without_password(server_url), &name),
    });
    Ok((url, address))
}

/// Another database on a server the run made for itself (a container, a local cluster),
/// as its superuser; returns its URL. It goes with the server, which the janitor removes:
/// it is not dropped on its own.
pub(crate) async fn create_database_on_own_server(server_url: &str) -> anyhow::Result<String> {
    let address = redacted_address(server_url);
    let mut admin =
        tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(server_url))
            .await
            .map_err(|_| anyhow::anyhow!("{address}: no answer within 10 s"))?
            .map_err(|error| {
                anyhow::anyhow!(
                    "connect to {address}: {}",
                    tenantgate::db::error_text(&error)
                )
            })?;
    let name = create_database(&mut admin, &address).await;
    let _ = admin.close().await;
    Ok(with_database(server_url, &name?))
}

/// Creates a uniquely named database through `admin`; returns its name.
async fn create_database(admin: &mut PgConnection, address: &str) -> anyhow::Result<String> {
    // The clock alone is not enough: two tests of one binary asking in the same tick
    // (a virtual machine's clock can be coarse) got the same name.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!(
        "{NAME_PREFIX}{}_{}_{}_{}",
        host_tag(),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(admin)
        .await
        .with_context(|| format!("create a throwaway database on {address}\nfix: the user needs the CREATEDB privilege"))?;
    Ok(name)
}

/// What a rehearsal needs of the `--pg-url` user, said before anything starts: a database
/// of its own (CREATEDB), the roles the migrations create (CREATEROLE), and every
/// tenant's rows in the checks (BYPASSRLS) — or a superuser, who has all three.
async fn check_privileges(admin: &mut PgConnection, address: &str) -> anyhow::Result<()> {
    let (user, superuser, createdb, createrole, bypassrls): (String, bool, bool, bool, bool) =
        sqlx::query_as(
            "SELECT rolname::text, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut *admin)
        .await
        .with_context(|| format!("read the privileges of the --pg-url user on {address}"))?;
    if superuser {
        return Ok(());
    }
    let missing: Vec<&str> = [
        (createdb, "CREATEDB (a throwaway database per run)"),
        (
            createrole,
            "CREATEROLE (the roles migrations create, such as the app role)",
        ),
        (bypassrls, "BYPASSRLS (the checks read every tenant's rows)"),
    ]
    .into_iter()
    .filter(|(has, _)| !has)
    .map(|(_, what)| what)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "the --pg-url user `{user}` on {address} lacks {}\nfix: use a superuser, or `ALTER ROLE {user} {}` as one",
        missing.join(", "),
        [
            (createdb, "CREATEDB"),
            (createrole, "CREATEROLE"),
            (bypassrls, "BYPASSRLS")
        ]
        .into_iter()
        .filter(|(has, _)| !has)
        .map(|(_, word)| word)
        .collect::<Vec<_>>()
        .join(" ")
    )
}

pub(crate) async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("connect to drop throwaway database {name}"))?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .with_context(|| format!("drop throwaway database {name}"))?;
    let _ = admin.close().await;
    Ok(())
}

/// Drops throwaway databases of runs that died on this machine, but those `--keep` kept.
/// Another machine's are left alone whatever their pid; so is one still in use (plain DROP
/// DATABASE refuses while connected).
async fn sweep_leftover_databases(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(NAME_PREFIX)
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    let host = host_tag();
    for name in names {
        // Only this machine's: `tenantgate_<host>_<pid>_<nanos>_<n>` with our host.
        let mut parts = name
            .strip_prefix(NAME_PREFIX)
            .unwrap_or_default()
            .split('_');
        let ours = parts.next() == Some(host.as_str());
        let pid = parts.next().and_then(|pid| pid.parse().ok());
        if ours
            && pid.is_some_and(|pid| !super::process_alive(pid))
            && !super::janitor::was_kept(&name)
        {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\"")))
                .execute(&mut *admin)
                .await;
        }
    }
}

/// The URL with its database path replaced by `database`.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut result = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

/// `postgres://user:secret@host:5432/db` → `postgres://user@host:5432/db`: what `psql`
/// connects with, asking for the password.
pub(crate) fn without_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{}{user}{}", &url[..scheme_end], &rest[at..]),
        None => url.to_string(),
    }
}

/// `host:port` of a URL, without credentials.
fn redacted_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split(['/', '?'])
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten_without_leaking_passwords() {
        assert_eq!(
            with_database("postgres://u:p@h:5/db?sslmode=disable", "x"),
            "postgres://u:p@h:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(redacted_address("postgres://u:secret@h:5/db"), "h:5");
        assert_eq!(
            without_password("postgres://u:secret@h:5/db"),
            "postgres://u@h:5/db"
        );
    }
}
