//! The one PostgreSQL server the bench's sections share: a testcontainers container,
//! removed by the janitor, on which each measurement creates and drops its databases.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::Mutex;

use crate::provision::{self, Janitor, PgOptions, PgProviderChoice};
use tenantgate::db::quote;

pub struct BenchServer {
    /// The URL of the server's `postgres` database.
    pub admin_url: String,
    admin: Mutex<PgConnection>,
}

impl BenchServer {
    pub async fn start(image: &str, janitor: &Janitor) -> anyhow::Result<BenchServer> {
        let options = PgOptions {
            choice: PgProviderChoice::Container,
            image: image.to_string(),
            server_url: None,
        };
        let database = provision::postgres(&options, janitor)
            .await
            .context("start the bench's PostgreSQL server")?;
        let admin = PgConnection::connect(&database.url)
            .await
            .context("connect to the bench's PostgreSQL server")?;
        Ok(BenchServer {
            admin_url: database.url,
            admin: Mutex::new(admin),
        })
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        provision::with_database(&self.admin_url, name)
    }

    pub async fn version(&self) -> anyhow::Result<String> {
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut *self.admin.lock().await)
            .await?;
        Ok(format!(
            "PostgreSQL {}",
            version.split_whitespace().next().unwrap_or_default()
        ))
    }

    /// The server's major version (15 for 15.18), to pick matching client tools.
    pub async fn major_version(&self) -> anyhow::Result<u32> {
        let number: String = sqlx::query_scalar("SHOW server_version_num")
            .fetch_one(&mut *self.admin.lock().await)
            .await?;
        Ok(number.parse::<u32>().unwrap_or(0) / 10_000)
    }

    /// Creates database `name` (from `template` when given); returns how long the
    /// statement took.
    pub async fn create(&self, name: &str, template: Option<&str>) -> anyhow::Result<Duration> {
        let sql = match template {
            // FILE_COPY (15+) copies the files instead of logging every page: faster for
            // a small template, which is what a per-test database is cloned from.
            Some(template) => format!(
                "CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY",
                quote(name),
                quote(template)
            ),
            None => format!("CREATE DATABASE {}", quote(name)),
        };
        let mut admin = self.admin.lock().await;
        let started = Instant::now();
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *admin)
            .await
            .with_context(|| format!("create database {name}"))?;
        Ok(started.elapsed())
    }

    pub async fn drop(&self, name: &str) -> anyhow::Result<()> {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote(name)
        )))
        .execute(&mut *self.admin.lock().await)
        .await
        .with_context(|| format!("drop database {name}"))?;
        Ok(())
    }
}
