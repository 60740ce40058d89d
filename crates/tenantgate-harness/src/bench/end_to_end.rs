//! Section `end-to-end`: warm `cargo xtask migrate-test` (both backends, as a developer
//! runs it) against the sum of its raw parts, measured in the same run: provision the
//! databases, apply every migration, introspect the schema. The ratio is what the harness
//! adds: checks, snapshots, isolation cases, reports, cleanup. Also what `cargo` itself
//! adds before the harness starts (`cargo xtask --help`: its check that nothing needs
//! building, and the binary's start), and the ratio without it.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::apply::migrate_all;
use super::{Context, Measurement, Results, Section, Stats};
use crate::provision::{self, Janitor, PgOptions, PgProviderChoice};
use tenantgate::Backend;
use tenantgate::db::Conn;
use tenantgate::schema::Schema;

pub async fn run(context: &Context<'_>, results: &mut Results) -> anyhow::Result<()> {
    let runs = context.bench.runs;
    context.say(&format!(
        "end-to-end: {runs} runs of `cargo xtask migrate-test` and of its raw parts"
    ));
    let mut whole = Vec::new();
    let mut cargo = Vec::new();
    let mut parts = Vec::new();
    let mut postgres_parts = Vec::new();
    let mut sqlite_parts = Vec::new();
    for _ in 0..runs {
        whole.push(cargo_xtask(context, &["migrate-test"]).await?);
        cargo.push(cargo_xtask(context, &["--help"]).await?);
        let postgres = raw_parts(context, Backend::Postgres).await?;
        let sqlite = raw_parts(context, Backend::Sqlite).await?;
        postgres_parts.push(postgres);
        sqlite_parts.push(sqlite);
        parts.push(postgres + sqlite);
    }
    let whole = Stats::of(&whole);
    let parts = Stats::of(&parts);
    let ratio = whole.median_ms / parts.median_ms.max(f64::MIN_POSITIVE);
    let cargo = Stats::of(&cargo);
    let without_cargo =
        (whole.median_ms - cargo.median_ms) / parts.median_ms.max(f64::MIN_POSITIVE);
    results.measurements.push(Measurement {
        section: Section::EndToEnd,
        name: "raw parts: postgres (container, apply, introspect)".to_string(),
        stats: Stats::of(&postgres_parts),
        comparison: None,
        note: None,
    });
    results.measurements.push(Measurement {
        section: Section::EndToEnd,
        name: "raw parts: sqlite (file, apply, introspect)".to_string(),
        stats: Stats::of(&sqlite_parts),
        comparison: None,
        note: None,
    });
    results.measurements.push(Measurement {
        section: Section::EndToEnd,
        name: "raw parts: sum of both".to_string(),
        stats: parts,
        comparison: Some("baseline".to_string()),
        note: None,
    });
    results.measurements.push(Measurement {
        section: Section::EndToEnd,
        name: "cargo xtask migrate-test".to_string(),
        comparison: Some(format!("{ratio:.2}× the raw parts")),
        stats: whole.clone(),
        note: None,
    });
    results.measurements.push(Measurement {
        section: Section::EndToEnd,
        name: "cargo xtask --help (cargo's check, the binary's start)".to_string(),
        comparison: Some(format!(
            "migrate-test less it: {without_cargo:.2}× the raw parts"
        )),
        stats: cargo,
        note: None,
    });
    results.target(
        "warm migrate-test ≤ 1.5× its raw parts",
        format!("{ratio:.2}×"),
        ratio <= 1.5,
    );
    results.target(
        "warm migrate-test ≤ 10 s",
        super::duration_text(whole.median_ms),
        whole.median_ms <= 10_000.0,
    );
    Ok(())
}

/// One `cargo xtask <args>`, as a developer types it, timed: `migrate-test`, or `--help`
/// for what `cargo xtask` costs before any command runs.
async fn cargo_xtask(context: &Context<'_>, args: &[&str]) -> anyhow::Result<Duration> {
    let command = format!("cargo xtask {}", args.join(" "));
    let started = Instant::now();
    let output = tokio::process::Command::from(crate::workspace::cargo())
        .arg("xtask")
        .args(args)
        .env("TENANTGATE_PG_IMAGE", &context.image)
        .output()
        .await
        .with_context(|| format!("run {command}"))?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!(
            "{command} failed, so its time means nothing; fix it first:\n{}",
            super::failure_tail(&output, 15)
        );
    }
    Ok(took)
}

/// Provision a fresh database, apply every migration, read the schema.
async fn raw_parts(context: &Context<'_>, backend: Backend) -> anyhow::Result<Duration> {
    let janitor = Janitor::new();
    let started = Instant::now();
    let result = async {
        let database = match backend {
            Backend::Postgres => {
                let options = PgOptions {
                    choice: PgProviderChoice::Container,
                    image: context.image.clone(),
                    server_url: None,
                };
                provision::postgres(&options, &janitor).await?
            }
            Backend::Sqlite => provision::sqlite(&janitor)?,
        };
        let migrator = context.migrator(backend)?;
        migrate_all(migrator, backend, &database.url).await?;
        let mut conn = Conn::connect(backend, &database.url).await?;
        let schema = Schema::read(
            &mut conn,
            &migrator.table_name,
            &tenantgate::db::Scope::Database,
        )
        .await?;
        conn.close().await;
        anyhow::ensure!(!schema.tables.is_empty(), "introspection found no table");
        Ok(started.elapsed())
    }
    .await;
    let leftovers = janitor.finish(false).await;
    anyhow::ensure!(
        leftovers.is_empty(),
        "cleanup failed: {}",
        leftovers.join("; ")
    );
    result
}
