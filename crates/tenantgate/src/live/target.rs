//! What one run migrates: a database, or one PostgreSQL schema of it (schema-per-tenant
//! deployments), and how the runner connects to it.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use sha2::Digest;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::Backend;
use crate::db::Conn;

/// The `application_name` of the runner's sessions, so `pg_stat_activity` (and a second
/// runner waiting for the lock) can tell who holds it.
pub const APPLICATION_NAME: &str = "tenantgate-migrate";

#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub backend: Backend,
    /// PostgreSQL: the schema to migrate (search_path is set to it); `None` is the
    /// connection's default schema.
    pub schema: Option<String>,
}

impl Target {
    pub fn new(url: &str) -> anyhow::Result<Target> {
        let backend = Backend::from_url(url)?;
        if backend == Backend::Sqlite {
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("read the SQLite url `{}`", redacted(url)))?;
            if options.get_filename().as_os_str().is_empty()
                || options.get_filename() == std::path::Path::new(":memory:")
            {
                anyhow::bail!(
                    "`{}` is an in-memory SQLite database: there is nothing to migrate safely; pass a file, e.g. sqlite:app.db",
                    redacted(url)
                );
            }
        }
        Ok(Target {
            url: url.to_string(),
            backend,
            schema: None,
        })
    }

    /// The PostgreSQL schemas a run on this target reads: one tenant schema, or the
    /// current schema and the other schemas the app's migrations create (which the
    /// snapshot and the configuration name): a live database may hold other software's.
    pub fn scope(&self, source: &super::Source<'_>, config: &crate::Config) -> crate::db::Scope {
        match self.schema {
            Some(_) => crate::db::Scope::CurrentSchema,
            None => crate::db::Scope::CurrentAnd(super::app_schemas(source, config)),
        }
    }

    /// [`Target::scope`], widened on a live PostgreSQL database to every schema the
    /// application role can use (a schema made by hand, `reporting`, is read and judged
    /// like the app's own), but the configuration's `other_software_schemas` and the
    /// schemas extensions own.
    pub async fn live_scope(
        &self,
        conn: &mut crate::db::Conn,
        source: &super::Source<'_>,
        config: &crate::Config,
    ) -> crate::db::Scope {
        let scope = self.scope(source, config);
        let (crate::db::Scope::CurrentAnd(mut schemas), crate::db::Conn::Postgres(pg), Some(rls)) =
            (scope.clone(), &mut *conn, config.row_level_security())
        else {
            return scope;
        };
        let reachable: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT n.nspname::text FROM pg_namespace n, pg_roles r
             WHERE r.rolname = $1
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
               AND n.nspname <> current_schema()
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
               AND has_schema_privilege(r.oid, n.oid, 'USAGE')
             ORDER BY 1",
        )
        .bind(&rls.app_role)
        .fetch_all(&mut *pg)
        .await;
        for schema in reachable.unwrap_or_default() {
            if !config.tenancy.other_software_schemas.contains(&schema)
                && !schemas.contains(&schema)
            {
                schemas.push(schema);
            }
        }
        crate::db::Scope::CurrentAnd(schemas)
    }

    pub fn in_schema(&self, schema: &str) -> Target {
        Target {
            schema: Some(schema.to_string()),
            ..self.clone()
        }
    }

    /// The SQLite database file.
    pub fn sqlite_file(&self) -> anyhow::Result<PathBuf> {
        Ok(SqliteConnectOptions::from_str(&self.url)?
            .get_filename()
            .to_path_buf())
    }

    /// PostgreSQL connection options with the runner's name and the schema's search_path.
    pub fn pg_options(&self) -> anyhow::Result<PgConnectOptions> {
        let mut options = PgConnectOptions::from_str(&self.url)
            .with_context(|| format!("read the PostgreSQL url `{}`", redacted(&self.url)))?
            .application_name(APPLICATION_NAME)
            .disable_statement_logging();
        if let Some(schema) = &self.schema {
            // Quoted: the name as written, spaces and capitals included.
            options = options.options([("search_path", crate::db::quote(schema))]);
        }
        Ok(options)
    }

    /// Makes `conn`, a PostgreSQL connection to this target's database that an earlier run
    /// used (on another schema, perhaps), this target's as if new: `DISCARD ALL` ends every
    /// session state a run or its migrations left (settings, role, temporary tables,
    /// prepared statements, advisory locks), sqlx forgets the statements it had prepared,
    /// and the search_path is the target's schema. An error (not a tenant schema's target,
    /// a connection in a transaction or lost) means: open a new one.
    pub async fn take_over(&self, conn: &mut Conn) -> anyhow::Result<()> {
        let (Conn::Postgres(pg), Some(schema)) = (conn, &self.schema) else {
            anyhow::bail!(
                "only a PostgreSQL connection is handed from one tenant schema's run to the next"
            );
        };
        pg.clear_cached_statements().await?;
        // Two messages: DISCARD ALL refuses to run in the implicit transaction of a
        // message holding two statements.
        sqlx::raw_sql("DISCARD ALL").execute(&mut *pg).await?;
        let sql = format!("SET search_path TO {}", crate::db::quote(schema));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *pg)
            .await?;
        Ok(())
    }

    /// Opens the runner's connection. A SQLite file must already exist: creating an empty
    /// database is `app migrate`'s job on a first deploy, which it says it does.
    pub async fn connect(&self, create: bool) -> anyhow::Result<Conn> {
        match self.backend {
            Backend::Postgres => {
                let conn = sqlx::PgConnection::connect_with(&self.pg_options()?)
                    .await
                    .with_context(|| {
                        format!(
                            "connect to {}: check the url, that the server is running and reachable, and the credentials",
                            redacted(&self.url)
                        )
                    })?;
                Ok(Conn::Postgres(conn))
            }
            Backend::Sqlite => {
                let file = self.sqlite_file()?;
                if !create && !file.exists() {
                    anyhow::bail!(
                        "the SQLite database {} does not exist; check the path in --database-url",
                        file.display()
                    );
                }
                let options = SqliteConnectOptions::from_str(&self.url)?
                    .create_if_missing(create)
                    .busy_timeout(std::time::Duration::from_secs(5));
                let conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .with_context(|| format!("open the SQLite database {}", file.display()))?;
                Ok(Conn::Sqlite(conn))
            }
        }
    }

    /// A short name for files and messages: the database (file) name, and the schema.
    pub fn label(&self) -> String {
        let database = match self.backend {
            Backend::Postgres => PgConnectOptions::from_str(&self.url)
                .ok()
                .and_then(|o| o.get_database().map(str::to_string))
                .unwrap_or_else(|| "postgres".to_string()),
            // The stem and a digest of the whole path: `eu/shop.db` and `us/shop.db`
            // share a backup folder without sharing backups.
            Backend::Sqlite => match self.sqlite_file() {
                Ok(file) => {
                    let stem = file
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "sqlite".to_string());
                    let absolute = std::path::absolute(&file).unwrap_or(file);
                    let digest = sha2::Sha256::digest(absolute.to_string_lossy().as_bytes());
                    format!("{stem}.{}", hex8(&digest))
                }
                Err(_) => "sqlite".to_string(),
            },
        };
        let name = match &self.schema {
            Some(schema) => format!("{database}.{schema}"),
            None => database,
        };
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

fn hex8(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The url without its password, for messages and reports.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn two_sqlite_files_of_one_name_in_two_folders_have_two_labels() {
        let eu = Target::new("sqlite:/srv/eu/shop.db").unwrap().label();
        let us = Target::new("sqlite:/srv/us/shop.db").unwrap().label();
        assert_ne!(eu, us);
        assert!(
            eu.starts_with("shop.") && us.starts_with("shop."),
            "{eu} {us}"
        );
        assert_eq!(eu, Target::new("sqlite:/srv/eu/shop.db").unwrap().label());
    }
}
