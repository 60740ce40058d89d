//! Section `tenants`: `app migrate --tenant-schemas` (the live runner's fan-out) over 100
//! and 1,000 schemas of one database, with nothing pending and with one trivial pending
//! migration, with one job and with several.
//!
//! The schemas are built once per count: one schema migrated by the runner, then copied
//! from its `pg_dump` under other names (far faster than migrating each), into a template
//! database that every measured run is cloned from, so each run starts from the same state.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{Context, Results};
use tenantgate::Backend;
use tenantgate::live::fanout::{Fanout, Progress, migrate_schemas};
use tenantgate::live::{Options, Source, Target};

/// Schemas are named `bench_tenant_00000`, `bench_tenant_00001`, …
const PREFIX: &str = "bench_tenant_";

/// The trivial migration of the "one pending" runs: it changes nothing the runner checks.
const TRIVIAL_UP: &str = "COMMENT ON TABLE tenants IS 'bench: a trivial migration';\n";
const TRIVIAL_DOWN: &str = "COMMENT ON TABLE tenants IS NULL;\n";

#[derive(Clone, Debug, Serialize)]
pub struct TenantRun {
    pub schemas: usize,
    /// "none" or "one trivial migration".
    pub pending: &'static str,
    pub jobs: usize,
    pub seconds: f64,
    pub median_per_schema_ms: f64,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn render(runs: &[TenantRun]) -> String {
    let mut jobs: Vec<usize> = runs.iter().map(|r| r.jobs).collect();
    jobs.sort_unstable();
    jobs.dedup();
    let mut out = format!("{:<16}  {:<22}", "tenant schemas", "pending");
    for j in &jobs {
        out.push_str(&format!("  {:>14}", format!("--jobs {j}")));
    }
    out.push('\n');
    let mut keys: Vec<(usize, &str)> = runs.iter().map(|r| (r.schemas, r.pending)).collect();
    keys.dedup();
    for (schemas, pending) in keys {
        out.push_str(&format!("  {schemas:<14}  {pending:<22}"));
        for j in &jobs {
            let cell = runs
                .iter()
                .find(|r| r.schemas == schemas && r.pending == pending && r.jobs == *j)
                .map_or("-".to_string(), |r| {
                    if r.ok {
                        super::duration_text(r.seconds * 1e3)
                    } else {
                        "FAILED".to_string()
                    }
                });
            out.push_str(&format!("  {cell:>14}"));
        }
        out.push('\n');
    }
    for run in runs.iter().filter(|r| !r.ok) {
        out.push_str(&format!(
            "  FAIL {} schemas, {}, --jobs {}: {}\n",
            run.schemas,
            run.pending,
            run.jobs,
            run.error.as_deref().unwrap_or("see the JSON")
        ));
    }
    out
}

pub async fn run(context: &Context<'_>, results: &mut Results) -> anyhow::Result<()> {
    let mut counts = context.bench.schemas.clone();
    counts.sort_unstable();
    counts.dedup();
    let parallel = context.bench.jobs();
    let trivial_dir = context.scratch.path().join("trivial-migrations");
    let trivial = trivial_migrator(context, &trivial_dir).await?;
    let embedded = Source::of(context.project.embedded_app()?, Backend::Postgres)?;
    let with_trivial = Source {
        migrator: &trivial,
        ..Source::of(context.project.embedded_app()?, Backend::Postgres)?
    };
    let mut previous: Option<(usize, String)> = None;
    for &count in &counts {
        let template = format!("bench_tenants_{count}");
        context.say(&format!("tenants: building {count} migrated schemas"));
        let built = Instant::now();
        build_template(context, &template, count, previous.as_ref()).await?;
        context.say(&format!(
            "tenants: {count} schemas built in {:.1} s",
            built.elapsed().as_secs_f64()
        ));
        for (pending, source) in [
            ("none", &embedded),
            ("one trivial migration", &with_trivial),
        ] {
            let jobs_list = if context.bench.tenant_jobs.is_empty() {
                vec![1, parallel]
            } else {
                context.bench.tenant_jobs.clone()
            };
            for jobs in jobs_list {
                context.say(&format!(
                    "tenants: {count} schemas, pending {pending}, --jobs {jobs}"
                ));
                let run = fan_out(context, &template, count, pending, source, jobs).await?;
                context.say(&format!(
                    "tenants: {count} schemas, pending {pending}, --jobs {jobs}: {:.1} s{}",
                    run.seconds,
                    if run.ok { "" } else { " FAILED" }
                ));
                results.tenants.push(run);
            }
        }
        if let Some((_, name)) = previous.take() {
            context.server.drop(&name).await?;
        }
        previous = Some((count, template));
    }
    if let Some((_, name)) = previous {
        context.server.drop(&name).await?;
    }
    // The speed issue's targets: nothing pending ≤ 5 s, one trivial migration ≤ 60 s with
    // `--jobs 4`, and the cost per schema as flat at 1,000 schemas as at 100.
    for (pending, limit, jobs) in [
        ("none", 5.0, None),
        ("one trivial migration", 60.0, Some(4)),
    ] {
        let best = results
            .tenants
            .iter()
            .filter(|r| r.schemas == 1_000 && r.pending == pending)
            .filter(|r| jobs.is_none_or(|jobs| r.jobs == jobs))
            .min_by(|a, b| a.seconds.total_cmp(&b.seconds));
        if let Some(best) = best {
            results.target(
                format!(
                    "1,000 tenant schemas, {pending} pending{} ≤ {}",
                    jobs.map(|j| format!(", --jobs {j}")).unwrap_or_default(),
                    super::duration_text(limit * 1e3)
                ),
                format!(
                    "{} (--jobs {})",
                    super::duration_text(best.seconds * 1e3),
                    best.jobs
                ),
                best.ok && best.seconds <= limit,
            );
        }
    }
    for pending in ["none", "one trivial migration"] {
        let per_schema = |count: usize| {
            results
                .tenants
                .iter()
                .filter(|r| r.schemas == count && r.pending == pending && r.ok)
                .map(|r| (r.jobs, r.seconds / count as f64))
                .collect::<Vec<_>>()
        };
        let (small, large) = (per_schema(100), per_schema(1_000));
        for (jobs, large_cost) in &large {
            if let Some((_, small_cost)) = small.iter().find(|(j, _)| j == jobs) {
                let ratio = large_cost / small_cost.max(f64::MIN_POSITIVE);
                results.target(
                    format!("tenant schemas, {pending} pending, --jobs {jobs}: cost per schema at 1,000 ≤ 1.5× at 100"),
                    format!(
                        "{ratio:.2}× ({:.1} ms against {:.1} ms)",
                        large_cost * 1e3,
                        small_cost * 1e3
                    ),
                    ratio <= 1.5,
                );
            }
        }
    }
    Ok(())
}

/// One measured fan-out on a fresh clone of the template.
async fn fan_out(
    context: &Context<'_>,
    template: &str,
    count: usize,
    pending: &'static str,
    source: &Source<'_>,
    jobs: usize,
) -> anyhow::Result<TenantRun> {
    let name = "bench_tenants_run";
    context.server.create(name, Some(template)).await?;
    let base = Target::new(&context.server.url(name))?;
    let options = Options {
        backup_dir: context.scratch.path().join("tenant-backups"),
        report_unchanged: false,
        ..Options::default()
    };
    let fanout = Fanout {
        pattern: format!("{PREFIX}%"),
        jobs,
        fail_fast: false,
        schemas_per_dump: None,
    };
    let progress: Progress = Arc::new(Mutex::new(|_: &str| {}));
    let config = context.project.embedded_app()?.config()?;
    let started = Instant::now();
    let report = migrate_schemas(source, &config, &base, &options, &fanout, progress).await;
    let seconds = started.elapsed().as_secs_f64();
    context.server.drop(name).await?;
    let _ = std::fs::remove_dir_all(&options.backup_dir);
    let mut per_schema: Vec<f64> = report.schemas.iter().map(|s| s.seconds * 1e3).collect();
    per_schema.sort_by(f64::total_cmp);
    let ok = report.ok() && report.schemas.len() == count;
    Ok(TenantRun {
        schemas: count,
        pending,
        jobs,
        seconds,
        median_per_schema_ms: per_schema.get(per_schema.len() / 2).copied().unwrap_or(0.0),
        ok,
        error: (!ok).then(|| {
            report.error.clone().unwrap_or_else(|| {
                format!(
                    "{} of {count} schemas listed; {}",
                    report.schemas.len(),
                    report.verdict()
                )
            })
        }),
    })
}

/// A template database holding `count` migrated schemas: extends the previous, smaller
/// template when there is one.
async fn build_template(
    context: &Context<'_>,
    name: &str,
    count: usize,
    previous: Option<&(usize, String)>,
) -> anyhow::Result<()> {
    let url = context.server.url(name);
    let first_new = match previous {
        Some((previous_count, previous_name)) => {
            context.server.create(name, Some(previous_name)).await?;
            *previous_count
        }
        None => {
            context.server.create(name, None).await?;
            migrate_first_schema(context, &url).await?;
            1
        }
    };
    let major = context.server.major_version().await?;
    let dump = dump_schema(&url, &schema_name(0), major)?;
    let mut conn = PgConnection::connect(&url)
        .await
        .context("connect to the tenant template")?;
    let indexes: Vec<usize> = (first_new..count).collect();
    for batch in indexes.chunks(50) {
        let sql: String = batch
            .iter()
            .map(|&i| dump.replace(&schema_name(0), &schema_name(i)))
            .collect();
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .context("copy the migrated tenant schema")?;
    }
    // Catalog statistics as a live database's autovacuum keeps them (the bench's server
    // runs without autovacuum): every measured run is cloned from this template.
    sqlx::raw_sql("VACUUM ANALYZE")
        .execute(&mut conn)
        .await
        .context("analyze the tenant template")?;
    let _ = conn.close().await;
    Ok(())
}

fn schema_name(index: usize) -> String {
    format!("{PREFIX}{index:05}")
}

/// The first schema, migrated by the live runner itself.
async fn migrate_first_schema(context: &Context<'_>, url: &str) -> anyhow::Result<()> {
    let schema = schema_name(0);
    let mut conn = PgConnection::connect(url).await?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    let options = Options {
        backup: false,
        backup_dir: context.scratch.path().join("tenant-template"),
        report_unchanged: false,
        ..Options::default()
    };
    let report = tenantgate::live::migrate(
        &Source::of(context.project.embedded_app()?, Backend::Postgres)?,
        &context.project.embedded_app()?.config()?,
        &Target::new(url)?.in_schema(&schema),
        &options,
        &mut |_| {},
    )
    .await;
    if !report.outcome.ok() {
        bail!("migrate the first tenant schema: {}", report.render());
    }
    Ok(())
}

/// The schema as SQL (`pg_dump --inserts`, no owners), to be replayed under other names.
fn dump_schema(url: &str, schema: &str, server_major: u32) -> anyhow::Result<String> {
    let pg_dump = tenantgate::live::backup::pg_tool("pg_dump", None, server_major)?;
    let output = std::process::Command::new(&pg_dump)
        .args([
            "--schema",
            schema,
            "--inserts",
            "--no-owner",
            "--dbname",
            url,
        ])
        .output()
        .with_context(|| format!("run {}", pg_dump.display()))?;
    if !output.status.success() {
        bail!(
            "pg_dump of the tenant schema failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8(output.stdout).context("pg_dump wrote non-UTF-8")?;
    // psql meta-commands (`\restrict` in recent pg_dump releases) are not SQL.
    Ok(text
        .lines()
        .filter(|line| !line.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// The embedded PostgreSQL migrations plus one trivial migration, as a migrator.
async fn trivial_migrator(
    context: &Context<'_>,
    dir: &std::path::Path,
) -> anyhow::Result<Migrator> {
    std::fs::create_dir_all(dir)?;
    let source = context
        .config()
        .migrations_dir(Backend::Postgres)
        .context("the app has no PostgreSQL migrations")?;
    for entry in std::fs::read_dir(source)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "sql") {
            std::fs::copy(&path, dir.join(path.file_name().expect("a file")))?;
        }
    }
    let last = context
        .migrator(Backend::Postgres)?
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    let stem = format!("{:04}_bench_trivial", last + 1);
    std::fs::write(dir.join(format!("{stem}.up.sql")), TRIVIAL_UP)?;
    std::fs::write(dir.join(format!("{stem}.down.sql")), TRIVIAL_DOWN)?;
    Migrator::new(dir)
        .await
        .context("read the migrations with the trivial one")
}
