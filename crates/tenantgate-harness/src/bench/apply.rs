//! Sections `apply` and `template`: every migration on a fresh database, by sqlx-cli and by
//! the harness; and a fresh migrated database per test, cloned from a template or
//! migrated anew.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::{Context, Measurement, Results, Section, Stats, timed};
use tenantgate::Backend;
use tenantgate::db::Conn;

pub async fn run(context: &Context<'_>, results: &mut Results) -> anyhow::Result<()> {
    let runs = context.bench.runs;
    let sqlx_cli = if context.bench.wants(Section::Apply) {
        Some(sqlx_cli(context)?)
    } else {
        None
    };
    for backend in context.config().backends() {
        let count = context
            .migrator(backend)?
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .count();
        if let Some(sqlx_cli) = &sqlx_cli {
            context.say(&format!(
                "apply: {count} {backend} migrations, {runs} runs each of sqlx-cli, the harness and app migrate"
            ));
            let dir = context
                .config()
                .migrations_dir(backend)
                .expect("a configured backend")
                .to_path_buf();
            let cli = timed(runs, async |run| {
                let database = Fresh::new(context, backend, &format!("bench_sqlx_{run}")).await?;
                let started = Instant::now();
                let output = tokio::process::Command::new(sqlx_cli)
                    .args(["migrate", "run", "--source"])
                    .arg(&dir)
                    .args(["--database-url", &database.url])
                    .output()
                    .await
                    .context("run sqlx migrate run")?;
                let took = started.elapsed();
                database.remove(context).await?;
                if !output.status.success() {
                    bail!(
                        "sqlx migrate run failed on {backend}: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    );
                }
                Ok(took)
            })
            .await?;
            let harness = timed(runs, async |run| {
                let database =
                    Fresh::new(context, backend, &format!("bench_harness_{run}")).await?;
                let started = Instant::now();
                migrate_all(context.migrator(backend)?, backend, &database.url).await?;
                let took = started.elapsed();
                database.remove(context).await?;
                Ok(took)
            })
            .await?;
            let app = timed(runs, async |run| {
                let database = Fresh::new(context, backend, &format!("bench_app_{run}")).await?;
                let backups = context.scratch.path().join("app-backups");
                let started = Instant::now();
                let output = tokio::process::Command::new(&context.app_binary)
                    .args(["migrate", "--no-backup", "--database-url", &database.url])
                    .arg("--backup-dir")
                    .arg(&backups)
                    .output()
                    .await
                    .context("run app migrate")?;
                let took = started.elapsed();
                database.remove(context).await?;
                if !output.status.success() {
                    bail!(
                        "app migrate failed on {backend}: {}",
                        String::from_utf8_lossy(&output.stdout).trim()
                    );
                }
                Ok(took)
            })
            .await?;
            let ratio = |stats: &Stats| {
                Some(format!(
                    "{:.2}× sqlx-cli",
                    stats.median_ms / cli.median_ms.max(f64::MIN_POSITIVE)
                ))
            };
            results.measurements.push(Measurement {
                section: Section::Apply,
                name: format!("{backend}: sqlx migrate run (sqlx-cli)"),
                stats: cli.clone(),
                comparison: Some("baseline".to_string()),
                note: None,
            });
            results.measurements.push(Measurement {
                section: Section::Apply,
                name: format!("{backend}: harness runner (migrate-test's apply)"),
                comparison: ratio(&harness),
                stats: harness,
                note: Some("in-process".to_string()),
            });
            results.measurements.push(Measurement {
                section: Section::Apply,
                name: format!("{backend}: app migrate --no-backup"),
                comparison: ratio(&app),
                stats: app,
                note: Some("a process; validate, lock, apply, verify".to_string()),
            });
        }
        if context.bench.wants(Section::Template) {
            template(context, results, backend).await?;
        }
    }
    Ok(())
}

/// Cloning a migrated template against migrating a fresh database, `2 × runs` each.
async fn template(
    context: &Context<'_>,
    results: &mut Results,
    backend: Backend,
) -> anyhow::Result<()> {
    let runs = context.bench.runs * 2;
    context.say(&format!(
        "template: {runs} {backend} clones of a migrated template, {runs} re-migrations"
    ));
    let template = Fresh::new(context, backend, "bench_template").await?;
    migrate_all(context.migrator(backend)?, backend, &template.url).await?;
    let clone = timed(runs, async |run| {
        let name = format!("bench_clone_{run}");
        match backend {
            Backend::Postgres => {
                let took = context.server.create(&name, Some("bench_template")).await?;
                context.server.drop(&name).await?;
                Ok(took)
            }
            Backend::Sqlite => {
                let copy = context.scratch.path().join(format!("{name}.db"));
                let started = Instant::now();
                std::fs::copy(template.sqlite_file(), &copy).context("copy the template")?;
                let took = started.elapsed();
                std::fs::remove_file(&copy)?;
                Ok(took)
            }
        }
    })
    .await?;
    let remigrate = timed(runs, async |run| {
        let started = Instant::now();
        let database = Fresh::new(context, backend, &format!("bench_remigrate_{run}")).await?;
        migrate_all(context.migrator(backend)?, backend, &database.url).await?;
        let took = started.elapsed();
        database.remove(context).await?;
        Ok(took)
    })
    .await?;
    template.remove(context).await?;
    let speedup = remigrate.median_ms / clone.median_ms.max(f64::MIN_POSITIVE);
    let (clone_name, remigrate_name) = match backend {
        Backend::Postgres => (
            "postgres: CREATE DATABASE … TEMPLATE migrated",
            "postgres: CREATE DATABASE, then every migration",
        ),
        Backend::Sqlite => (
            "sqlite: copy the migrated file",
            "sqlite: new file, then every migration",
        ),
    };
    results.measurements.push(Measurement {
        section: Section::Template,
        name: remigrate_name.to_string(),
        stats: remigrate,
        comparison: Some("baseline".to_string()),
        note: None,
    });
    results.measurements.push(Measurement {
        section: Section::Template,
        name: clone_name.to_string(),
        comparison: Some(format!("{speedup:.0}× faster")),
        stats: clone.clone(),
        note: None,
    });
    results.target(
        format!("{backend}: a database from a template ≥ 10× faster than re-migrating"),
        format!("{speedup:.0}×"),
        speedup >= 10.0,
    );
    if backend == Backend::Postgres {
        results.target(
            "postgres: a database from a template ≤ 50 ms",
            super::duration_text(clone.median_ms),
            clone.median_ms <= 50.0,
        );
    }
    Ok(())
}

/// A fresh, empty database: one on the bench's server, or a SQLite file in its folder.
pub struct Fresh {
    pub backend: Backend,
    pub name: String,
    pub url: String,
}

impl Fresh {
    pub async fn new(context: &Context<'_>, backend: Backend, name: &str) -> anyhow::Result<Fresh> {
        let url = match backend {
            Backend::Postgres => {
                context.server.create(name, None).await?;
                context.server.url(name)
            }
            Backend::Sqlite => format!(
                "sqlite://{}?mode=rwc",
                context.scratch.path().join(format!("{name}.db")).display()
            ),
        };
        Ok(Fresh {
            backend,
            name: name.to_string(),
            url,
        })
    }

    pub fn sqlite_file(&self) -> PathBuf {
        PathBuf::from(
            self.url
                .trim_start_matches("sqlite://")
                .trim_end_matches("?mode=rwc"),
        )
    }

    pub async fn remove(self, context: &Context<'_>) -> anyhow::Result<()> {
        match self.backend {
            Backend::Postgres => context.server.drop(&self.name).await,
            Backend::Sqlite => {
                let file = self.sqlite_file();
                for suffix in ["", "-wal", "-shm"] {
                    let path = PathBuf::from(format!("{}{suffix}", file.display()));
                    if path.exists() {
                        std::fs::remove_file(&path)
                            .with_context(|| format!("remove {}", path.display()))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// What migrate-test does to apply: connect, create the migrations table, apply every
/// embedded migration in order.
pub async fn migrate_all(
    migrator: &sqlx::migrate::Migrator,
    backend: Backend,
    url: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut conn = Conn::connect(backend, url).await?;
    let table = migrator.table_name.to_string();
    conn.ensure_migrations_table(&table).await?;
    for migration in migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
    {
        conn.apply(&table, migration)
            .await
            .with_context(|| format!("apply {} on {backend}", migration.description))?;
    }
    conn.close().await;
    Ok(started.elapsed())
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace::root().join("target"))
}

/// sqlx-cli: on PATH, or under `target/tools`, or installed there now.
fn sqlx_cli(context: &Context<'_>) -> anyhow::Result<PathBuf> {
    let works = |program: &std::path::Path| {
        std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("sqlx")
            })
    };
    let root = target_dir().join("tools");
    let installed = root.join("bin/sqlx");
    for candidate in [PathBuf::from("sqlx"), installed.clone()] {
        if works(&candidate) {
            return Ok(candidate);
        }
    }
    context.say(&format!(
        "sqlx-cli is not installed: installing it into {} (about 2 minutes, once)",
        crate::display_path(&root)
    ));
    let status = crate::workspace::cargo()
        .args([
            "install",
            "--quiet",
            "sqlx-cli",
            "--version",
            "^0.9",
            "--no-default-features",
            "--features",
            "postgres,sqlite,rustls",
            "--root",
        ])
        .arg(&root)
        .status()
        .context("run cargo install sqlx-cli")?;
    if !status.success() || !works(&installed) {
        bail!(
            "could not install sqlx-cli into {}\nfix: `cargo install sqlx-cli --no-default-features --features postgres,sqlite,rustls`, or run the bench with --only provisioning,template,end-to-end,volume,tenants",
            crate::display_path(&root)
        );
    }
    Ok(installed)
}
