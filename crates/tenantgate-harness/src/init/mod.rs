//! `cargo xtask init`: a starter `tenantgate.toml` for an existing migrations folder.
//!
//! The migrations are applied, one at a time, to throwaway databases of each backend
//! present; the schema after the last one says which table holds the tenants, which
//! column carries them, which tables are global or owned through a parent, and how the
//! policies name the current tenant ([`infer`]). Every migration that exists is adopted
//! history (the baseline), and the first version from which the isolation rules hold is
//! where they start. What only a person can say (why a table is shared) is left as an
//! empty `reason` the gate refuses, and listed.

pub mod infer;
mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tenantgate::Backend;
use tenantgate::checks::Failure;
use tenantgate::db::{Conn, Scope, quote, quote_table};
use tenantgate::rules::{RoleFacts, RuleInput};
use tenantgate::schema::Schema;

use crate::folder::Folder;
use crate::migration_set::MigrationSet;
use crate::provision::{self, Janitor, PgOptions};
pub use render::Starter;

/// What `init` is asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the configuration is written; its folder is where the paths in it start.
    pub config: PathBuf,
    /// The folders, when given; found beside the configuration otherwise.
    pub postgres: Option<PathBuf>,
    pub sqlite: Option<PathBuf>,
    pub column: Option<String>,
    pub tenants_table: Option<String>,
    pub baseline: Baseline,
    pub force: bool,
}

/// How much of the history is adopted as it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Baseline {
    /// Every migration that exists now (the default: it is deployed).
    Everything,
    /// None: every migration is held to every rule.
    Nothing,
    /// Up to and including this version.
    UpTo(i64),
}

/// The starter configuration, written, and what needs a person.
#[derive(Debug)]
pub struct Written {
    pub config: PathBuf,
    pub starter: Starter,
    pub lock_files: Vec<PathBuf>,
}

/// One backend's migrations applied step by step.
struct Applied {
    backend: Backend,
    conn: Conn,
    /// The schema after each migration: (version, file, schema).
    steps: Vec<(i64, String, Schema)>,
    sql: Vec<String>,
}

/// Finds the folders, applies them, infers the configuration and writes it with the
/// lock files. The databases are registered with `janitor`.
pub async fn run(options: &Options, pg: &PgOptions, janitor: &Janitor) -> anyhow::Result<Written> {
    let path = crate::workspace::absolute(&options.config);
    if path.exists() && !options.force {
        bail!(
            "{} exists; init writes a new configuration only where there is none\nfix: edit it, or pass --force to replace it",
            crate::display_path(&path)
        );
    }
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let folders = folders(options, &base)?;
    let mut applied = Vec::new();
    for (backend, dir) in &folders {
        applied.push(apply(*backend, dir, &path, &base, pg, janitor).await?);
    }
    let starter = infer_starter(options, &base, &folders, &mut applied).await;
    for step in applied {
        step.conn.close().await;
    }
    let starter = starter?;
    std::fs::create_dir_all(&base)
        .with_context(|| format!("create {}", crate::display_path(&base)))?;
    std::fs::write(&path, starter.render())
        .with_context(|| format!("write {}", crate::display_path(&path)))?;
    // The folders as the written configuration names them (its reasons are not written yet).
    let config = starter.provisional_config(&path)?;
    let mut lock_files = Vec::new();
    for backend in config.backends() {
        lock_files.push(crate::lock::write(&Folder::of(&config, backend)?)?);
    }
    Ok(Written {
        config: path,
        starter,
        lock_files,
    })
}

/// `(backend, folder)` of each backend: the flags, else the usual layouts beside the
/// configuration (`postgres/`, `sqlite/`, or `migrations/` holding either), else one flat
/// folder of SQL, taken as PostgreSQL's (sqlx's default layout).
fn folders(options: &Options, base: &Path) -> anyhow::Result<Vec<(Backend, PathBuf)>> {
    let given: Vec<(Backend, PathBuf)> = [
        (Backend::Postgres, &options.postgres),
        (Backend::Sqlite, &options.sqlite),
    ]
    .into_iter()
    .filter_map(|(backend, dir)| {
        dir.as_ref()
            .map(|d| (backend, crate::workspace::absolute(d)))
    })
    .collect();
    if !given.is_empty() {
        for (backend, dir) in &given {
            if !has_sql(dir) {
                bail!(
                    "--{backend} {}: no .sql migrations there",
                    crate::display_path(dir)
                );
            }
        }
        return Ok(given);
    }
    let roots = [base.to_path_buf(), base.join("migrations")];
    for root in &roots {
        let mut found = Vec::new();
        for (backend, names) in [
            (
                Backend::Postgres,
                ["postgres", "postgresql", "pg"].as_slice(),
            ),
            (Backend::Sqlite, ["sqlite", "sqlite3"].as_slice()),
        ] {
            if let Some(dir) = names.iter().map(|n| root.join(n)).find(|d| has_sql(d)) {
                found.push((backend, dir));
            }
        }
        if !found.is_empty() {
            return Ok(found);
        }
        if has_sql(root) {
            return Ok(vec![(Backend::Postgres, root.clone())]);
        }
    }
    bail!(
        "no migrations found beside {} (looked for postgres/, sqlite/ or .sql files in {})\nfix: name the folders: `cargo xtask init --postgres <dir>` and/or `--sqlite <dir>`",
        crate::display_path(&base.join("tenantgate.toml")),
        roots
            .iter()
            .map(|r| crate::display_path(r))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn has_sql(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "sql"))
    })
}

/// Applies `dir`'s migrations to a fresh `backend` database, reading the schema after each.
async fn apply(
    backend: Backend,
    dir: &Path,
    config_path: &Path,
    base: &Path,
    pg: &PgOptions,
    janitor: &Janitor,
) -> anyhow::Result<Applied> {
    // A configuration that names only the folder: sqlx's settings (sqlx.toml) and the
    // migrations as sqlx reads them.
    let config = Starter::folders_only(&[(backend, dir.to_path_buf())], base)
        .provisional_config(config_path)?;
    let folder = Folder::of(&config, backend)?;
    if !folder.problems.is_empty() {
        bail!(
            "{} holds files sqlx would not read as migrations:\n{}",
            crate::display_path(dir),
            folder
                .problems
                .iter()
                .map(|p| format!("  {}", p.render().replace('\n', "\n  ")))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    if folder.migrations.is_empty() {
        bail!("{} holds no migrations", crate::display_path(dir));
    }
    let set = MigrationSet::load(&config, backend, None).await?;
    let database = match backend {
        Backend::Postgres => provision::postgres(pg, janitor).await?,
        Backend::Sqlite => provision::sqlite(janitor)?,
    };
    eprintln!(
        "init: applying {} {backend} migrations from {} ({})",
        folder.migrations.len(),
        crate::display_path(dir),
        database.provider
    );
    let mut conn = Conn::connect(backend, &database.url).await?;
    let table = set.table().to_string();
    conn.ensure_migrations_table(&table)
        .await
        .map_err(|error| anyhow::format_err!("create the migrations table `{table}`: {error}"))?;
    let mut steps = Vec::new();
    let mut sql = Vec::new();
    for migration in set.ups() {
        let file = set.file(migration.version, true);
        if let Err(error) = conn.apply(&table, migration).await {
            let failure: Failure =
                crate::rehearsal::errors::apply_failure(&file, migration.sql.as_str(), error);
            let hint = if backend == Backend::Sqlite {
                "\n(if the app migrates SQLite with other settings, e.g. foreign keys off, init cannot know it: write the configuration by hand with [sqlite] migration_pragmas)"
            } else {
                ""
            };
            bail!("{}{hint}", failure.render());
        }
        let schema = Schema::read(&mut conn, &table, &Scope::Database)
            .await
            .with_context(|| format!("introspect the schema after {file}"))?;
        steps.push((migration.version, file, schema));
        sql.push(migration.sql.as_str().to_string());
    }
    Ok(Applied {
        backend,
        conn,
        steps,
        sql,
    })
}

/// Everything the starter configuration says, from the applied migrations.
async fn infer_starter(
    options: &Options,
    base: &Path,
    folders: &[(Backend, PathBuf)],
    applied: &mut [Applied],
) -> anyhow::Result<Starter> {
    let mut starter = Starter::folders_only(folders, base);
    // PostgreSQL's schema says the most (policies, grants); SQLite's is used alone.
    let primary = applied
        .iter()
        .position(|a| a.backend == Backend::Postgres)
        .unwrap_or(0);
    let (final_schema, sql) = {
        let a = &applied[primary];
        (
            a.steps.last().expect("a migration").2.clone(),
            a.sql.clone(),
        )
    };
    let tenancy = infer::tenancy(
        &final_schema,
        options.column.as_deref(),
        options.tenants_table.as_deref(),
    )
    .map_err(|problem| anyhow::format_err!("init cannot tell the tenancy: {problem}"))?;
    starter.notes.push(format!(
        "tenants: `{}` keyed by `{}` ({}), carried by `{}` in {} table(s)",
        tenancy.tenants_table,
        tenancy.key,
        key_type_name(tenancy.key_type),
        tenancy.column,
        tenancy
            .tables
            .values()
            .filter(|d| matches!(d, infer::Declared::Owned { .. }))
            .count()
    ));
    starter.dropped_globals = dropped_globals(&applied[primary].steps, &final_schema, &tenancy);
    starter.default_tenant = default_tenant(&mut applied[primary].conn, &tenancy).await;
    let newest = applied
        .iter()
        .filter_map(|a| a.steps.last().map(|s| s.0))
        .max()
        .expect("a migration");
    starter.baseline = match options.baseline {
        Baseline::Everything => Some(newest),
        Baseline::Nothing => None,
        Baseline::UpTo(version) => Some(version),
    };
    if let [a, b] = applied {
        let versions = |x: &Applied| x.steps.iter().map(|s| s.0).collect::<Vec<_>>();
        if versions(a) != versions(b) {
            starter.parity = false;
            starter.notes.push(
                "parity: off (the PostgreSQL and SQLite folders have different versions)"
                    .to_string(),
            );
        }
    }
    if let Some(sqlite) = applied.iter().find(|a| a.backend == Backend::Sqlite) {
        let schema = &sqlite.steps.last().expect("a migration").2;
        if let Ok(sqlite_tenancy) =
            infer::tenancy(schema, Some(&tenancy.column), Some(&tenancy.tenants_table))
        {
            starter.sqlite_immutable =
                infer::sqlite_tenant_column_immutable(schema, &sqlite_tenancy);
        }
    }
    let postgres_rls = applied[primary].backend == Backend::Postgres
        && final_schema
            .tables
            .values()
            .any(|t| t.row_level_security.is_some_and(|(enabled, _)| enabled));
    starter.isolation = if postgres_rls {
        let policies = infer::policies(&final_schema, &tenancy, &sql);
        let roles = infer::app_role(&final_schema, &tenancy);
        let act_as = act_as(&final_schema, &tenancy, &policies);
        render::Isolation::RowLevelSecurity {
            roles,
            setting: policies.settings.first().cloned(),
            functions: policies.functions.clone(),
            predicates: policies.predicates.clone(),
            act_as,
        }
    } else if applied[primary].backend == Backend::Postgres {
        render::Isolation::WithoutRowLevelSecurity
    } else {
        render::Isolation::SqliteOnly
    };
    for (signature, function) in &final_schema.objects.functions {
        let name = signature.split('(').next().unwrap_or(signature).to_string();
        let why = match (function.security_definer, function.search_path.is_some()) {
            (true, true) => "runs with its owner's rights (SECURITY DEFINER)",
            (true, false) => "runs with its owner's rights and has no fixed search_path",
            (false, false) => "has no fixed search_path",
            (false, true) => continue,
        };
        if !starter.functions.iter().any(|(n, _)| *n == name) {
            starter.functions.push((name, why.to_string()));
        }
    }
    starter.tenancy = Some(tenancy);
    (starter.isolated_from, starter.rules_hold) =
        isolated_from(&starter, base, &mut applied[primary]).await;
    Ok(starter)
}

fn key_type_name(key: tenantgate::KeyType) -> &'static str {
    match key {
        tenantgate::KeyType::Integer => "integer",
        tenantgate::KeyType::Uuid => "uuid",
        tenantgate::KeyType::Text => "text",
    }
}

/// Tables an earlier migration made without the tenant column and a later one dropped:
/// global where they exist, `(table, the last file after which it exists)`.
fn dropped_globals(
    steps: &[(i64, String, Schema)],
    last: &Schema,
    tenancy: &infer::Tenancy,
) -> Vec<(String, String)> {
    let mut last_seen: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for (_, file, schema) in steps {
        for (name, table) in &schema.tables {
            let carries = table.column(&tenancy.column).is_some();
            let file_name = file.rsplit('/').next().unwrap_or(file).to_string();
            last_seen.insert(name.clone(), (file_name, carries));
        }
    }
    last_seen
        .into_iter()
        .filter(|(name, (_, carries))| {
            !carries
                && !last.tables.contains_key(name)
                && !tenantgate::config::same_table(name, &tenancy.tenants_table)
        })
        .map(|(name, (file, _))| (name, file))
        .collect()
}

/// The only tenant the migrations made (a backfill's default tenant), if there is one.
async fn default_tenant(conn: &mut Conn, tenancy: &infer::Tenancy) -> Option<String> {
    let table = quote_table(&tenancy.tenants_table);
    let count = conn
        .count(&format!("SELECT count(*) FROM {table}"))
        .await
        .ok()?;
    if count != 1 {
        return None;
    }
    conn.texts(&format!(
        "SELECT CAST({} AS TEXT) FROM {table}",
        quote(&tenancy.key)
    ))
    .await
    .ok()?
    .into_iter()
    .next()
}

/// How a session acts as a tenant when the policies ask a membership predicate: as the
/// first member of the tenant, signed in the Supabase way (`auth.uid()` reads the JWT's
/// `sub`).
fn act_as(schema: &Schema, tenancy: &infer::Tenancy, policies: &infer::Policies) -> Option<String> {
    if policies.predicates.is_empty() || !policies.functions.is_empty() {
        return None;
    }
    let (table, column, person) = infer::membership(schema, tenancy)?;
    let member = format!(
        "(SELECT {person}::text FROM {table} WHERE {column} = {{tenant}} ORDER BY {person} LIMIT 1)"
    );
    let settings = &policies.settings;
    if settings.iter().any(|s| s == "request.jwt.claim.sub") {
        Some(format!(
            "SELECT set_config('request.jwt.claim.sub', {member}, true)"
        ))
    } else if settings.iter().any(|s| s == "request.jwt.claims") {
        Some(format!(
            "SELECT set_config('request.jwt.claims', json_build_object('sub', {member})::text, true)"
        ))
    } else {
        None
    }
}

/// The first version after which the isolation rules hold at every later step (the app
/// role's facts as the last migration leaves them; none when they hold from the first),
/// and whether they hold after the last migration.
async fn isolated_from(
    starter: &Starter,
    base: &Path,
    applied: &mut Applied,
) -> (Option<i64>, bool) {
    let Ok(config) = starter.provisional_config(&base.join("tenantgate.toml")) else {
        return (None, false);
    };
    let role = match (&mut applied.conn, config.row_level_security()) {
        (Conn::Postgres(pg), Some(rls)) => {
            match RoleFacts::read(pg, &rls.app_role, &Scope::Database).await {
                Ok(facts) => Some(facts),
                Err(_) => return (None, false),
            }
        }
        _ => None,
    };
    let mut created_by = BTreeMap::new();
    let mut holds_from = None;
    for (version, file, schema) in &applied.steps {
        for name in schema.tables.keys() {
            created_by
                .entry(name.clone())
                .or_insert_with(|| file.clone());
        }
        let input = RuleInput {
            config: &config,
            schema,
            backend: applied.backend,
            role: role.as_ref(),
            created_by: &created_by,
            config_file: "tenantgate.toml",
        };
        let holds = tenantgate::rules::static_rules(&input)
            .iter()
            .all(|outcome| outcome.failures.is_empty());
        holds_from = match (holds, holds_from) {
            (true, None) => Some(*version),
            (true, since) => since,
            (false, _) => None,
        };
    }
    let first = applied.steps.first().map(|s| s.0);
    (
        holds_from.filter(|v| Some(*v) != first),
        holds_from.is_some(),
    )
}
