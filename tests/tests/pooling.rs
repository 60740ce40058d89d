//! Pooled connections: the app's tenant-scoped API through a real PgBouncer in
//! transaction pooling mode (Debian's `pgbouncer`, started here and stopped after), with
//! clients of different tenants interleaving on fewer server connections than clients.
//!
//! - The API binds its tenant with `set_config(…, true)` inside each transaction, so
//!   whichever server connection a transaction lands on, it runs as its own tenant: every
//!   call returns exactly the tenant's own rows (row-level security filters by the
//!   setting, the query by the tenant, so a statement run under another tenant would
//!   return none).
//! - The control: a session-level `SET app.tenant_id` by one client is carried, by the
//!   pooler, into another client's transaction, which then reads the first client's rows.
//!   The test would fail if the pooler's hand-over could not be seen.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::str::FromStr;

use app::{Db, TenantId};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use tenantgate::Backend;

const TENANTS: [i64; 3] = [10, 20, 30];
const CUSTOMERS_EACH: usize = 5;
/// Clients per tenant, and server connections for all of them.
const CLIENTS_PER_TENANT: usize = 3;
const SERVER_CONNECTIONS: usize = 2;
const CALLS_PER_CLIENT: usize = 40;

/// A PgBouncer in front of one database, stopped (and its files removed) when dropped.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgbouncer_binary() -> anyhow::Result<PathBuf> {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow::format_err!(
                "pgbouncer is not installed: `apt-get install pgbouncer` (.ci/run installs it); this test cannot run without it"
            )
        })
}

impl Bouncer {
    /// Starts PgBouncer in transaction pooling mode for `database` on `server`, admitting
    /// `user` with `password`, with `pool_size` server connections.
    fn start(
        server: &PgConnectOptions,
        database: &str,
        user: &str,
        password: &str,
        pool_size: usize,
    ) -> anyhow::Result<Bouncer> {
        let binary = pgbouncer_binary()?;
        let dir = tempfile::tempdir()?;
        let port = tenantgate_harness::provision::free_port()?;
        let host = match server.get_host() {
            "localhost" => "127.0.0.1",
            host => host,
        };
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(
            dir.path().join("users.txt"),
            format!("\"{user}\" \"{password}\"\n"),
        )?;
        std::fs::write(
            dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\nshop = host={host} port={} dbname={database}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = plain\nauth_file = {}\npool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = 200\nlogfile = {}\npidfile = {}\nignore_startup_parameters = extra_float_digits,search_path,options\nserver_reset_query = DEALLOCATE ALL\nserver_reset_query_always = 1\n",
                server.get_port(),
                path("users.txt"),
                path("pgbouncer.log"),
                path("pgbouncer.pid"),
            ),
        )?;
        let mut command = Command::new(binary);
        // PgBouncer refuses to run as root; as root it is told to become `postgres`.
        if tenantgate_harness::provision::server_user()?.is_some() {
            make_readable(dir.path())?;
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(dir.path().join("pgbouncer.ini"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let log_file = dir.path().join("pgbouncer.log");
        let mut bouncer = Bouncer {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(bouncer);
            }
            if let Some(status) = bouncer.child.try_wait()? {
                let log = std::fs::read_to_string(&log_file).unwrap_or_default();
                anyhow::bail!("pgbouncer exited at start ({status}): {log}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        anyhow::bail!("pgbouncer did not listen on port {port} within 5 s")
    }

    /// A URL through the pooler. Before PgBouncer 1.21 (`max_prepared_statements`) a
    /// pooler in transaction mode does not track prepared statements: sqlx's statement
    /// cache is off, and the pooler deallocates every statement when a transaction ends
    /// (`server_reset_query = DEALLOCATE ALL`, `server_reset_query_always`), which resets
    /// no setting, so the session-level leak below stays visible.
    fn url(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/shop?statement-cache-capacity=0",
            self.port
        )
    }
}

/// The `postgres` user PgBouncer runs as must read its files and write its log.
fn make_readable(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    for entry in std::fs::read_dir(dir)? {
        std::fs::set_permissions(entry?.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// Migrates the database, adds the tenants with their customers, and a login role that
/// is a member of the application role (row-level security applies to it).
async fn prepare(url: &str, login: &str, password: &str) -> anyhow::Result<()> {
    let db = Db::connect(url).await?;
    db.migrate().await?;
    let Db::Postgres(pool) = &db else {
        anyhow::bail!("PostgreSQL expected")
    };
    for id in TENANTS {
        pool.execute(sqlx::AssertSqlSafe(format!(
            "INSERT INTO tenants (id, slug, name) VALUES ({id}, 'shop-{id}', 'Shop {id}')"
        )))
        .await?;
        let shop = db.tenant(TenantId(id));
        for n in 0..CUSTOMERS_EACH {
            shop.create_customer(&format!("Customer {n} of shop {id}"), None)
                .await?;
        }
    }
    pool.execute(sqlx::AssertSqlSafe(format!(
        "DO $$ BEGIN CREATE ROLE {login} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{password}'; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT tenantgate_app TO {login};"
    )))
    .await?;
    db.close().await;
    Ok(())
}

async fn drop_login(url: &str, login: &str) {
    if let Ok(mut conn) = PgConnection::connect(url).await {
        let _ = conn
            .execute(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {login}")))
            .await;
        let _ = conn.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_never_runs_a_statement_under_another_clients_tenant()
-> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let login = format!("tg_pooled_{}", std::process::id());
        let password = "pooled-secret";
        let outcome = pooled(&database.url, &login, password).await;
        drop_login(&database.url, &login).await;
        outcome
    })
    .await
}

async fn pooled(url: &str, login: &str, password: &str) -> anyhow::Result<()> {
    prepare(url, login, password).await?;
    let server = PgConnectOptions::from_str(url)?;
    let database = server.get_database().unwrap_or("postgres").to_string();
    let bouncer = Bouncer::start(&server, &database, login, password, SERVER_CONNECTIONS)?;
    let pooled_url = bouncer.url(login, password);

    // What each tenant owns, read past the pooler by the administrator.
    let mut admin = PgConnection::connect(url).await?;
    let mut owned = std::collections::BTreeMap::new();
    for id in TENANTS {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT full_name FROM customers WHERE tenant_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(&mut admin)
                .await?;
        assert_eq!(names.len(), CUSTOMERS_EACH);
        owned.insert(id, names);
    }
    admin.close().await?;

    // Nine clients of three tenants on two server connections, interleaving.
    let mut clients = Vec::new();
    for client in 0..TENANTS.len() * CLIENTS_PER_TENANT {
        let id = TENANTS[client % TENANTS.len()];
        let url = pooled_url.clone();
        let expected = owned[&id].clone();
        clients.push(tokio::spawn(async move {
            let db = Db::connect(&url).await?;
            let shop = db.tenant(TenantId(id));
            let mut wrong = Vec::new();
            for call in 0..CALLS_PER_CLIENT {
                let seen: Vec<String> = shop
                    .customers()
                    .await?
                    .into_iter()
                    .map(|c| c.full_name)
                    .collect();
                if seen != expected {
                    wrong.push(format!("call {call}: saw {seen:?}"));
                }
                if call % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            db.close().await;
            anyhow::Ok((id, wrong))
        }));
    }
    let mut calls = 0;
    for client in clients {
        let (id, wrong) = client.await??;
        calls += CALLS_PER_CLIENT;
        assert!(
            wrong.is_empty(),
            "through PgBouncer, tenant {id}'s API calls ran under another tenant: {wrong:#?}"
        );
    }
    assert_eq!(calls, TENANTS.len() * CLIENTS_PER_TENANT * CALLS_PER_CLIENT);

    // Control: the same pooler carries a session-level SET to the next client. One
    // server connection, so the second client's transaction lands where the first's SET
    // was made.
    drop(bouncer);
    let bouncer = Bouncer::start(&server, &database, login, password, 1)?;
    let pooled_url = bouncer.url(login, password);
    let mut first = PgConnection::connect(&pooled_url).await?;
    first.execute("SET app.tenant_id = '10'").await?;
    let mut second = PgConnection::connect(&pooled_url).await?;
    // The second client never names a tenant: with a fresh session it would see nothing.
    // (The simple protocol: outside a transaction the pooler may hand the server over
    // between an extended query's parse and its execution.)
    let leaked: Vec<String> = {
        use sqlx::Row;
        sqlx::raw_sql("SELECT full_name FROM customers ORDER BY id")
            .fetch_all(&mut second)
            .await?
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect()
    };
    assert_eq!(
        leaked, owned[&10],
        "a session-level SET by one client must reach another client's transaction through transaction pooling (this is the leak the API avoids); if it does not, the test above proves nothing"
    );
    // Directly on the server, the same read by a fresh session sees no row.
    let mut direct = PgConnection::connect(url).await?;
    direct
        .execute(sqlx::AssertSqlSafe(format!("SET ROLE {login}")))
        .await?;
    let unset: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&mut direct)
        .await?;
    assert_eq!(
        unset, 0,
        "with no tenant set, row-level security fails closed"
    );
    direct.close().await?;
    first.close().await?;
    second.close().await?;
    Ok(())
}
