//! Helpers shared by the integration tests: real databases from the harness's own
//! provisioning, and scratch copies of the migrations to break on purpose.

use std::path::{Path, PathBuf};

use tenantgate::Backend;
use tenantgate::config::Config;
use tenantgate_harness::AppUnderTest;
use tenantgate_harness::provision::{self, Database, Janitor, PgOptions, PgProviderChoice};
use tenantgate_harness::rehearsal::{BackendReport, Options, rehearse_all};

/// The demo app's `tenantgate.toml`.
pub fn demo_config_path() -> PathBuf {
    tenantgate_harness::workspace::root().join("migrations/tenantgate.toml")
}

/// The demo app as its xtask hands it to the harness: its own configuration, the
/// migrations it embeds, and its tenant-scoped API.
pub fn demo_app() -> AppUnderTest<'static> {
    let config = Config::load(&demo_config_path()).expect("the demo app's configuration loads");
    AppUnderTest {
        config,
        embedded: Some(&app::TENANTGATE),
        api: Some(&app::api::SHOP_API),
    }
}

/// The workspace's project, as its xtask hands it to the harness's commands.
pub fn demo_project() -> tenantgate_harness::Project<'static> {
    tenantgate_harness::Project {
        package: "app",
        config: "migrations/tenantgate.toml",
        app: Some(&app::TENANTGATE),
        api: Some(&app::api::SHOP_API),
    }
}

/// A configuration's folders read from disk, with the demo app's API when the tables are
/// the demo's (a scratch copy of its migrations).
pub fn scratch_app(config: Config) -> AppUnderTest<'static> {
    AppUnderTest {
        config,
        embedded: None,
        api: Some(&app::api::SHOP_API),
    }
}

/// A fresh database of `backend`, registered with `janitor`. PostgreSQL comes from the
/// same providers as `cargo xtask migrate-test` (TENANTGATE_PG_* variables included).
pub async fn fresh_database(backend: Backend, janitor: &Janitor) -> anyhow::Result<Database> {
    match backend {
        Backend::Postgres => provision::postgres(&PgOptions::from_env(), janitor).await,
        Backend::Sqlite => provision::sqlite(janitor),
    }
}

/// Runs `test` on a fresh database of `backend`, then removes the database whether the
/// test passed or returned an error, and fails if that cleanup did.
pub async fn with_fresh_database(
    backend: Backend,
    test: impl AsyncFnOnce(&Database) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let janitor = Janitor::new();
    let outcome = match fresh_database(backend, &janitor).await {
        Ok(database) => test(&database).await,
        Err(error) => Err(error),
    };
    let leftovers = janitor.finish(false).await;
    outcome?;
    anyhow::ensure!(leftovers.is_empty(), "cleanup failed: {leftovers:?}");
    Ok(())
}

/// Rehearses `backends` of a scratch copy of the demo app as `migrate-test` does and
/// checks that nothing was left behind.
pub async fn rehearse(config: &Config, backends: &[Backend]) -> Vec<BackendReport> {
    rehearse_with(config, backends, Options::default()).await
}

/// [`rehearse`] with options (`--rows`, no reversibility pass).
pub async fn rehearse_with(
    config: &Config,
    backends: &[Backend],
    options: Options,
) -> Vec<BackendReport> {
    rehearse_app(&scratch_app(config.clone()), backends, options).await
}

/// Rehearses `app` as `migrate-test` does and checks that nothing was left behind.
pub async fn rehearse_app(
    app: &AppUnderTest<'_>,
    backends: &[Backend],
    options: Options,
) -> Vec<BackendReport> {
    rehearse_app_on(app, backends, options, &PgOptions::from_env()).await
}

/// Where a test that changes what belongs to the whole server (a role's attributes or
/// memberships) gets PostgreSQL: a server of its own, never the one the suite shares
/// (`cargo xtask ci` hands every test binary one in TENANTGATE_PG_URL), whose other tests
/// would see the change.
pub fn own_server() -> PgOptions {
    let mut pg = PgOptions::from_env();
    if pg.choice == PgProviderChoice::Url {
        pg.choice = PgProviderChoice::Auto;
        pg.server_url = None;
    }
    pg
}

/// [`rehearse_app`] with PostgreSQL from `pg`.
pub async fn rehearse_app_on(
    app: &AppUnderTest<'_>,
    backends: &[Backend],
    options: Options,
    pg: &PgOptions,
) -> Vec<BackendReport> {
    let janitor = Janitor::new();
    let reports = rehearse_all(backends, app, pg, &janitor, options).await;
    let leftovers = janitor.finish(false).await;
    assert!(leftovers.is_empty(), "cleanup failed: {leftovers:?}");
    reports
}

/// Every failure of a report as "check: message" lines.
pub fn failures(report: &BackendReport) -> Vec<String> {
    report
        .failures()
        .map(|(check, failure)| format!("{check}: {}", failure.render()))
        .collect()
}

/// Asserts that `check` reported a failure whose message contains every needle.
pub fn assert_fails_with(report: &BackendReport, check: &str, needles: &[&str]) {
    let failures = failures(report);
    let found = failures
        .iter()
        .any(|f| f.starts_with(&format!("{check}:")) && needles.iter().all(|n| f.contains(n)));
    assert!(
        found,
        "{}: expected a `{check}` failure containing {needles:?}, got {failures:#?}",
        report.backend
    );
}

/// Asserts that a note of `report` contains `needle`.
pub fn assert_notes(report: &BackendReport, needle: &str) {
    assert!(
        report.notes.iter().any(|n| n.contains(needle)),
        "{}: expected a note containing {needle:?}, got {:#?}",
        report.backend,
        report.notes
    );
}

/// A copy of `migrations/` (both folders, the snapshots and the configuration) and of the
/// fixture, laid out as in the repository, in a temporary folder.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    config_file: PathBuf,
}

impl Scratch {
    pub fn new() -> anyhow::Result<Scratch> {
        let root = tenantgate_harness::workspace::root();
        let dir = tempfile::Builder::new()
            .prefix("tenantgate-scratch-")
            .tempdir()?;
        copy_dir(&root.join("migrations"), &dir.path().join("migrations"))?;
        copy_dir(
            &root.join("tests/fixtures"),
            &dir.path().join("tests/fixtures"),
        )?;
        let config_file = dir.path().join("migrations/tenantgate.toml");
        Ok(Scratch { dir, config_file })
    }

    /// A copy of the example app `tests/examples/<name>` (its migrations, configuration,
    /// snapshots and fixture) in a temporary folder.
    pub fn example(name: &str) -> anyhow::Result<Scratch> {
        let source = example_dir(name);
        let dir = tempfile::Builder::new()
            .prefix(&format!("tenantgate-{name}-"))
            .tempdir()?;
        copy_dir(&source, dir.path())?;
        let config_file = dir.path().join("tenantgate.toml");
        Ok(Scratch { dir, config_file })
    }

    pub fn config_path(&self) -> PathBuf {
        self.config_file.clone()
    }

    pub fn config(&self) -> anyhow::Result<Config> {
        Config::load(&self.config_path())
    }

    /// The folder of `backend`'s migrations, as the configuration names it.
    pub fn migrations_dir(&self, backend: Backend) -> PathBuf {
        let config = self.config().expect("the scratch configuration loads");
        config
            .migrations_dir(backend)
            .unwrap_or_else(|| panic!("the scratch configuration has no {backend} folder"))
            .to_path_buf()
    }

    /// Appends `text` to the scratch configuration.
    pub fn append_config(&self, text: &str) -> anyhow::Result<()> {
        let mut config = std::fs::read_to_string(&self.config_file)?;
        config.push('\n');
        config.push_str(text);
        std::fs::write(&self.config_file, config)?;
        Ok(())
    }

    /// Adds `<version>_<name>.up.sql` and `.down.sql` to the backend's folder.
    pub fn add_migration(
        &self,
        backend: Backend,
        version: &str,
        name: &str,
        up: &str,
        down: &str,
    ) -> anyhow::Result<()> {
        let dir = self.migrations_dir(backend);
        std::fs::write(dir.join(format!("{version}_{name}.up.sql")), up)?;
        std::fs::write(dir.join(format!("{version}_{name}.down.sql")), down)?;
        Ok(())
    }

    /// Declares in the scratch configuration that `stem` exists for `backend` only.
    pub fn exempt_from_parity(&self, stem: &str, backend: Backend) -> anyhow::Result<()> {
        let path = self.config_path();
        let mut text = std::fs::read_to_string(&path)?;
        text.push_str(&format!(
            "\n[[parity_exemptions]]\nmigration = \"{stem}\"\nonly_in = \"{}\"\nreason = \"a test scenario for one backend\"\n",
            backend.name()
        ));
        std::fs::write(&path, text)?;
        Ok(())
    }

    /// Replaces `from` with `to` in one migration file, which must contain it.
    pub fn edit(&self, backend: Backend, file: &str, from: &str, to: &str) -> anyhow::Result<()> {
        let path = self.migrations_dir(backend).join(file);
        let text = std::fs::read_to_string(&path)?;
        anyhow::ensure!(
            text.contains(from),
            "{} does not contain {from:?}",
            path.display()
        );
        std::fs::write(&path, text.replacen(from, to, 1))?;
        Ok(())
    }
}

/// The folder of the example app `name` under `tests/examples`.
pub fn example_dir(name: &str) -> PathBuf {
    tenantgate_harness::workspace::root()
        .join("tests/examples")
        .join(name)
}

/// The example apps under `tests/examples`.
pub const EXAMPLES: [&str; 5] = [
    "uuid-orgs",
    "text-accounts",
    "born-multitenant",
    "adopted-history",
    "membership",
];

pub fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// SQL for the scenarios several test files share: a new tenant-owned table, done right
/// or broken in one way.
pub mod scenarios {
    use tenantgate::Backend;

    /// A `loyalty_cards` table done right for `backend`, with `customer_fk` as its reference
    /// to customers; `rls` adds PostgreSQL's row-level security and policy.
    pub fn loyalty_cards(backend: Backend, customer_fk: &str, rls: bool) -> String {
        let mut sql = match backend {
            Backend::Postgres => format!(
                "CREATE TABLE loyalty_cards (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        tenant_id BIGINT NOT NULL REFERENCES tenants (id),
        customer_id BIGINT NOT NULL,
        points BIGINT NOT NULL DEFAULT 0,
        CONSTRAINT loyalty_cards_tenant_id_id_key UNIQUE (tenant_id, id),
        {customer_fk}
    );
    "
            ),
            Backend::Sqlite => format!(
                "CREATE TABLE loyalty_cards (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants (id),
        customer_id INTEGER NOT NULL,
        points INTEGER NOT NULL DEFAULT 0,
        UNIQUE (tenant_id, id),
        {customer_fk}
    );
    "
            ),
        };
        if rls {
            sql.push_str(&enable_rls("loyalty_cards"));
        }
        sql
    }

    /// Adds `0008_create_loyalty_cards` to both folders, referencing customers through
    /// `customer_fk`, with row-level security on PostgreSQL.
    pub fn add_loyalty_cards(scratch: &super::Scratch, customer_fk: &str) {
        for backend in Backend::ALL {
            let up = loyalty_cards(backend, customer_fk, backend == Backend::Postgres);
            scratch
                .add_migration(
                    backend,
                    "0008",
                    "create_loyalty_cards",
                    &up,
                    "DROP TABLE loyalty_cards;\n",
                )
                .unwrap();
        }
    }

    pub const COMPOSITE_FK: &str =
        "FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)";
    pub const PLAIN_FK: &str = "FOREIGN KEY (customer_id) REFERENCES customers (id)";

    /// Undoes [`enable_rls`].
    pub fn disable_rls(table: &str) -> String {
        format!(
            "DROP POLICY {table}_tenant_isolation ON {table};
    ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
    ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
    REVOKE SELECT, INSERT, UPDATE, DELETE ON {table} FROM tenantgate_app;
    "
        )
    }

    /// The policy 0007 puts on `orders`, for down migrations that restore it.
    pub const ORDERS_POLICY: &str = "CREATE POLICY orders_tenant_isolation ON orders
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint);
";

    pub fn enable_rls(table: &str) -> String {
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO tenantgate_app;
    ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
    ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
    CREATE POLICY {table}_tenant_isolation ON {table}
        USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint)
        WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint);
    "
        )
    }
}

/// Helpers for the live runner's tests (`app migrate`, `app verify`).
pub mod live {
    use std::path::Path;
    use std::time::Duration;

    use sqlx::migrate::Migrator;
    use tenantgate::db::{Conn, Scope, quote};
    use tenantgate::live::{Options, Source, Target};
    use tenantgate::{App, Backend, Embedded};

    /// The migrations of a scratch copy, as the runner takes them (leaked: tests are short).
    pub async fn scratch_source(
        scratch: &super::Scratch,
        backend: Backend,
    ) -> anyhow::Result<Source<'static>> {
        scratch_source_in(scratch.dir.path(), backend).await
    }

    /// The migrations and snapshot (when there is one) of a folder laid out like the
    /// repository.
    pub async fn scratch_source_in(
        dir: &Path,
        backend: Backend,
    ) -> anyhow::Result<Source<'static>> {
        let app = scratch_app_in(dir).await?;
        Ok(Source::of(&app, backend)?)
    }

    /// The app a scratch folder laid out like the repository describes, as its binary
    /// would embed it (leaked: tests are short).
    pub async fn scratch_app_in(dir: &Path) -> anyhow::Result<App<'static>> {
        let leak = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };
        let mut embedded = Vec::new();
        for backend in Backend::ALL {
            let migrator = Migrator::new(dir.join("migrations").join(backend.name())).await?;
            let snapshot = dir.join(format!("migrations/snapshots/{}.snap", backend.name()));
            embedded.push(Embedded {
                migrator: Box::leak(Box::new(migrator)),
                snapshot: std::fs::read_to_string(&snapshot).ok().map(leak),
            });
        }
        Ok(App {
            name: "app",
            version: app::TENANTGATE.version,
            config: leak(std::fs::read_to_string(
                dir.join("migrations/tenantgate.toml"),
            )?),
            postgres: Some(embedded.remove(0)),
            sqlite: Some(embedded.remove(0)),
        })
    }

    /// Runner options writing backups and reports under `dir`.
    pub fn options(dir: &Path) -> Options {
        Options {
            backup_dir: dir.join("backups"),
            wait_for_lock: Duration::from_secs(60),
            ..Options::default()
        }
    }

    /// Migrates to `version` without a backup and loads the fixture when it is the seed
    /// version: a database with real rows, as production has before the tenancy migrations.
    pub async fn prepare(url: &str, version: i64, dir: &Path) -> anyhow::Result<()> {
        let target = Target::new(url)?;
        let backend = target.backend;
        let options = Options {
            backup: false,
            target: Some(version),
            backup_dir: dir.join("prepare"),
            ..Options::default()
        };
        let config = app::TENANTGATE.config()?;
        let report = tenantgate::live::migrate(
            &Source::of(&app::TENANTGATE, backend)?,
            &config,
            &target,
            &options,
            &mut |_| {},
        )
        .await;
        anyhow::ensure!(report.outcome.ok(), "prepare: {}", report.render());
        if config.fixtures.as_ref().map(|f| f.seed_at_version) == Some(version) {
            let mut conn = target.connect(false).await?;
            let seed = std::fs::read_to_string(
                tenantgate_harness::workspace::root().join("tests/fixtures/seed.sql"),
            )?;
            conn.execute(&seed).await?;
            if backend == Backend::Postgres {
                // The fixture sets explicit ids; move the identity sequences past them.
                conn.execute(
                    "DO $$ DECLARE r record; BEGIN
                       FOR r IN SELECT c.relname AS t, a.attname AS col FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                                JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE n.nspname = current_schema() AND a.attidentity <> '' LOOP
                         EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, %L), coalesce((SELECT max(%I) FROM %I), 0) + 1, false)', r.t, r.col, r.col, r.t);
                       END LOOP; END $$",
                )
                .await?;
            }
            conn.close().await;
        }
        Ok(())
    }

    /// Everything a rollback must restore: the schema text and every row of every table
    /// (the migrations table included), in a deterministic order.
    pub async fn state(url: &str) -> anyhow::Result<String> {
        let target = Target::new(url)?;
        let mut conn = target.connect(false).await?;
        let mut out = tenantgate::schema::Schema::read(&mut conn, "-", &Scope::Database)
            .await?
            .render();
        let tables = match conn {
            Conn::Postgres(_) => {
                conn.texts("SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1")
                    .await?
            }
            Conn::Sqlite(_) => conn.texts("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1").await?,
        };
        for table in tables {
            let sql = match conn {
                Conn::Postgres(_) => format!(
                    "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {} t",
                    quote(&table)
                ),
                Conn::Sqlite(_) => {
                    let columns = conn
                        .texts(&format!(
                            "SELECT name FROM pragma_table_info('{}') ORDER BY cid",
                            table.replace('\'', "''")
                        ))
                        .await?;
                    let row: Vec<String> = columns
                        .iter()
                        .map(|c| format!("quote({})", quote(c)))
                        .collect();
                    format!(
                        "SELECT coalesce(group_concat(r, char(10)), '') FROM (SELECT {} AS r FROM {} ORDER BY 1)",
                        row.join(" || ',' || "),
                        quote(&table)
                    )
                }
            };
            let rows = conn.texts(&sql).await?.join("");
            out.push_str(&format!("rows of {table}:\n{rows}\n"));
        }
        conn.close().await;
        Ok(out)
    }

    /// The versions recorded in the migrations table.
    pub async fn applied_versions(url: &str) -> anyhow::Result<Vec<i64>> {
        let mut conn = Target::new(url)?.connect(false).await?;
        let versions = conn
            .texts("SELECT CAST(version AS TEXT) FROM _sqlx_migrations ORDER BY version")
            .await?;
        conn.close().await;
        Ok(versions
            .iter()
            .map(|v| v.parse().expect("a version"))
            .collect())
    }
}
