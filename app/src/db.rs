//! One open connection to either backend, for the harness's own statements.

use std::str::FromStr;

use anyhow::Context;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::Backend;

pub enum Conn {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl Conn {
    pub async fn connect(backend: Backend, url: &str) -> anyhow::Result<Conn> {
        Ok(match backend {
            Backend::Postgres => Conn::Postgres(
                PgConnection::connect(url)
                    .await
                    .context("connect to PostgreSQL")?,
            ),
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?.create_if_missing(true);
                Conn::Sqlite(
                    SqliteConnection::connect_with(&options)
                        .await
                        .context("open the SQLite database")?,
                )
            }
        })
    }

    pub fn backend(&self) -> Backend {
        match self {
            Conn::Postgres(_) => Backend::Postgres,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub async fn close(self) {
        let _ = match self {
            Conn::Postgres(conn) => conn.close().await,
            Conn::Sqlite(conn) => conn.close().await,
        };
    }

    /// Runs one scalar count query (SQL built by the harness from catalog names).
    pub async fn count(&mut self, sql: &str) -> anyhow::Result<i64> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        Ok(match self {
            Conn::Postgres(conn) => sqlx::query_scalar(sql).fetch_one(conn).await?,
            Conn::Sqlite(conn) => sqlx::query_scalar(sql).fetch_one(conn).await?,
        })
    }

    /// The first column of every row, as text.
    pub async fn texts(&mut self, sql: &str) -> anyhow::Result<Vec<String>> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        Ok(match self {
            Conn::Postgres(conn) => sqlx::query_scalar(sql).fetch_all(conn).await?,
            Conn::Sqlite(conn) => sqlx::query_scalar(sql).fetch_all(conn).await?,
        })
    }

    /// Runs statements that return nothing.
    pub async fn execute(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Conn::Postgres(conn) => sqlx::raw_sql(sql).execute(conn).await.map(drop),
            Conn::Sqlite(conn) => sqlx::raw_sql(sql).execute(conn).await.map(drop),
        }
    }
}

/// A SQL string literal: `it's` → `'it''s'`.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A double-quoted SQL identifier.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
