//! Section `history`: `migrate-test` of a long history. The app's own migrations plus
//! `--history N` generated ones (default 300) on both backends — tables with their tenant
//! column, keys, row-level security and grants, added columns, indexes, and data moved
//! into them and back — rehearsed with both passes (apply and reversibility), as a
//! developer runs `cargo xtask migrate-test` on such a history. It reports the wall time
//! and what each pass costs per migration.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{Context, Measurement, Results, Section, Stats};
use crate::provision::{Janitor, PgOptions};
use crate::rehearsal::{self, Options};
use tenantgate::{Backend, Config};

#[derive(Clone, Debug, Serialize)]
pub struct HistoryPass {
    pub backend: String,
    pub migrations: usize,
    pub pass: &'static str,
    pub seconds: f64,
    pub per_migration_ms: f64,
}

pub async fn run(context: &Context<'_>, results: &mut Results) -> anyhow::Result<()> {
    let count = context.bench.history;
    let dir = context.scratch.path().join("history");
    let config_path = generate(context.config(), &dir, count)?;
    context.say(&format!(
        "history: {count} generated migrations after the app's; accepting the snapshots once"
    ));
    migrate_test(context, &config_path, true).await?;
    let runs = context.bench.runs;
    context.say(&format!(
        "history: {runs} runs of `migrate-test` (both backends, both passes)"
    ));
    let mut wall = Vec::new();
    for _ in 0..runs {
        wall.push(migrate_test(context, &config_path, false).await?);
    }
    let wall = Stats::of(&wall);
    let config = Config::load(&config_path)?;
    let total = config
        .backends()
        .iter()
        .map(|b| config.migrations_dir(*b).map_or(0, count_ups))
        .max()
        .unwrap_or(0);
    results.measurements.push(Measurement {
        section: Section::History,
        name: format!("migrate-test, {total} migrations, both backends, both passes"),
        stats: wall.clone(),
        comparison: None,
        note: None,
    });
    // Per pass and backend, from one rehearsal in this process.
    let app = crate::AppUnderTest {
        config,
        embedded: None,
        api: context.app.api,
    };
    for backend in app.config.backends() {
        let janitor = Janitor::new();
        let pg = PgOptions {
            image: context.image.clone(),
            ..PgOptions::on_server(&context.server.admin_url)
        };
        let report = rehearsal::rehearse(backend, &app, &pg, &janitor, Options::default()).await;
        let leftovers = janitor.finish(false).await;
        anyhow::ensure!(
            leftovers.is_empty(),
            "cleanup failed: {}",
            leftovers.join("; ")
        );
        if let Some((check, failure)) = report.failures().next() {
            bail!(
                "the {backend} rehearsal of the generated history failed, so its time means nothing: {check}: {}",
                failure.render()
            );
        }
        let migrations = report.steps.len();
        for pass in ["migrate", "reversibility"] {
            let seconds = report
                .phases
                .iter()
                .find(|(phase, _)| *phase == pass)
                .map_or(Duration::ZERO, |(_, d)| *d)
                .as_secs_f64();
            results.history.push(HistoryPass {
                backend: backend.to_string(),
                migrations,
                pass,
                seconds,
                per_migration_ms: seconds * 1e3 / migrations.max(1) as f64,
            });
        }
    }
    results.target(
        format!("migrate-test of {total} migrations, both backends, both passes ≤ 6 s"),
        super::duration_text(wall.median_ms),
        wall.median_ms <= 6_000.0,
    );
    Ok(())
}

pub fn render(passes: &[HistoryPass]) -> String {
    let mut out = format!(
        "  {:<10} {:<14} {:>10} {:>10} {:>16}\n",
        "backend", "pass", "migrations", "time", "per migration"
    );
    for pass in passes {
        out.push_str(&format!(
            "  {:<10} {:<14} {:>10} {:>10} {:>13.1} ms\n",
            pass.backend,
            pass.pass,
            pass.migrations,
            super::duration_text(pass.seconds * 1e3),
            pass.per_migration_ms
        ));
    }
    out
}

/// One `xtask migrate-test --config` of the generated history, as a developer runs it
/// (with `--accept` the first time).
async fn migrate_test(
    context: &Context<'_>,
    config: &Path,
    accept: bool,
) -> anyhow::Result<Duration> {
    let xtask = match &context.bench.xtask {
        Some(xtask) => xtask.clone(),
        None => std::env::current_exe().context("locate the xtask binary")?,
    };
    let mut command = tokio::process::Command::new(xtask);
    command
        .arg("migrate-test")
        .arg("--config")
        .arg(config)
        .arg("--junit")
        .arg(config.with_file_name("migrate-test.xml"))
        .env("TENANTGATE_PG_PROVIDER", "url")
        .env("TENANTGATE_PG_URL", &context.server.admin_url);
    if accept {
        command.arg("--accept");
    }
    let started = Instant::now();
    let output = command.output().await.context("run xtask migrate-test")?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!(
            "migrate-test of the generated history failed, so its time means nothing:\n{}",
            super::failure_tail(&output, 20)
        );
    }
    Ok(took)
}

fn count_ups(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".up.sql"))
                .count()
        })
        .unwrap_or(0)
}

/// Copies the app's configuration, folders and fixture into `dir`, adds `count`
/// migrations to every backend's folder, and returns the copy's configuration path.
fn generate(config: &Config, dir: &Path, count: usize) -> anyhow::Result<PathBuf> {
    let tenancy_table = config.tenancy.tenants_table.as_str();
    let column = &config.tenancy.column;
    let config_dir = config.path.parent().context("the configuration's folder")?;
    std::fs::create_dir_all(dir)?;
    let mut text = std::fs::read_to_string(&config.path)?;
    // Every path of the copy is absolute, except the folders, which are copied beside it.
    let mut folders = Vec::new();
    for backend in config.backends() {
        let source = config
            .migrations_dir(backend)
            .context("a configured backend has a folder")?;
        let name = backend.name().to_string();
        copy_sql(source, &dir.join(&name))?;
        folders.push((backend, dir.join(&name)));
    }
    text = rewrite_paths(&text, config_dir);
    let snapshots = dir.join("snapshots");
    std::fs::create_dir_all(&snapshots)?;
    let config_path = dir.join("tenantgate.toml");
    std::fs::write(&config_path, text)?;
    let last = folders
        .iter()
        .filter_map(|(_, folder)| last_version(folder))
        .max()
        .unwrap_or(0);
    let role = config.row_level_security().map(|rls| rls.app_role.clone());
    let setting = config
        .row_level_security()
        .and_then(|rls| rls.tenant_setting.clone());
    for (backend, folder) in &folders {
        for index in 0..count {
            let version = last + 1 + index as i64;
            let (up, down) = generated(
                *backend,
                index,
                tenancy_table,
                column,
                role.as_deref(),
                setting.as_deref(),
                config,
            );
            let stem = format!("{version:04}_history_{index:03}");
            std::fs::write(folder.join(format!("{stem}.up.sql")), up)?;
            std::fs::write(folder.join(format!("{stem}.down.sql")), down)?;
        }
        let _ = std::fs::remove_file(crate::lock::path(folder));
    }
    // The lock files, as `cargo xtask migrations lock` writes them.
    let copy = Config::load(&config_path)?;
    for backend in copy.backends() {
        crate::lock::write(&crate::folder::Folder::of(&copy, backend)?)?;
    }
    Ok(config_path)
}

/// The configuration's text with `[migrations]` folders pointing at the copies and every
/// other relative path (snapshots aside) made absolute against the original folder.
fn rewrite_paths(text: &str, original_dir: &Path) -> String {
    let mut out = String::new();
    let mut section = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.to_string();
        }
        let rewritten = match trimmed.split_once('=') {
            Some((key, _)) if section == "[migrations]" => match key.trim() {
                "postgres" => "postgres = \"postgres\"".to_string(),
                "sqlite" => "sqlite = \"sqlite\"".to_string(),
                "snapshots" => "snapshots = \"snapshots\"".to_string(),
                _ => line.to_string(),
            },
            Some((key, value)) if section == "[fixtures]" && key.trim() == "seed" => {
                let relative = value.trim().trim_matches('"');
                let absolute = original_dir.join(relative);
                format!("seed = {:?}", absolute.display().to_string())
            }
            _ => line.to_string(),
        };
        out.push_str(&rewritten);
        out.push('\n');
    }
    out
}

fn copy_sql(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn last_version(folder: &Path) -> Option<i64> {
    std::fs::read_dir(folder)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.split('_').next()?.parse::<i64>().ok()
        })
        .max()
}

/// Migration `index` of the generated history: five kinds in turn on the table the last
/// "create" made — create a tenant-owned table (tenant column, composite key, foreign key
/// to the tenants table, and on PostgreSQL row-level security, its policy and the app
/// role's grants), add a column, index it after the tenant column, move rows into the
/// table from the tenants table, fill the column from another.
fn generated(
    backend: Backend,
    index: usize,
    tenants: &str,
    column: &str,
    role: Option<&str>,
    setting: Option<&str>,
    config: &Config,
) -> (String, String) {
    let table = format!("history_{:03}", index / 5);
    let key = config
        .tenancy
        .tenants_key
        .as_deref()
        .unwrap_or("id")
        .to_string();
    match index % 5 {
        0 => {
            let mut up = format!(
                "CREATE TABLE {table} (\n    {column} bigint NOT NULL REFERENCES {tenants} ({key}),\n    id bigint NOT NULL,\n    label text,\n    PRIMARY KEY ({column}, id)\n);\n"
            );
            match backend {
                Backend::Postgres => {
                    if let (Some(role), Some(setting)) = (role, setting) {
                        up.push_str(&format!(
                            "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\nALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
                             CREATE POLICY {table}_tenant_isolation ON {table}\n    \
                             USING ({column} = NULLIF(current_setting('{setting}', true), '')::bigint)\n    \
                             WITH CHECK ({column} = NULLIF(current_setting('{setting}', true), '')::bigint);\n\
                             GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role};\n"
                        ));
                    }
                }
                Backend::Sqlite => {
                    if config.sqlite.tenant_column_immutable {
                        up.push_str(&format!(
                            "CREATE TRIGGER {table}_{column}_immutable\nBEFORE UPDATE OF {column} ON {table}\n\
                             WHEN NEW.{column} IS NOT OLD.{column}\nBEGIN\n    \
                             SELECT RAISE(ABORT, '{column} of {table} cannot change');\nEND;\n"
                        ));
                    }
                }
            }
            (up, format!("DROP TABLE {table};\n"))
        }
        1 => (
            format!("ALTER TABLE {table} ADD COLUMN note_{index} text;\n"),
            format!("ALTER TABLE {table} DROP COLUMN note_{index};\n"),
        ),
        2 => (
            format!(
                "CREATE INDEX {table}_note_{prev} ON {table} ({column}, note_{prev});\n",
                prev = index - 1
            ),
            format!("DROP INDEX {table}_note_{};\n", index - 1),
        ),
        3 => (
            format!(
                "INSERT INTO {table} ({column}, id, label) SELECT {key}, {key}, 'moved' FROM {tenants};\n"
            ),
            format!("DELETE FROM {table} WHERE label = 'moved';\n"),
        ),
        _ => (
            format!(
                "UPDATE {table} SET note_{col} = label WHERE note_{col} IS NULL;\n",
                col = index - 3
            ),
            format!("UPDATE {table} SET note_{} = NULL;\n", index - 3),
        ),
    }
}
