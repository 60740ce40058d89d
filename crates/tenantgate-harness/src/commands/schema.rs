//! `cargo xtask schema`: prints a database's schema as the snapshots hold it, to compare a
//! database migrated by other means (sqlx-cli, `app migrate`, a live server) with them.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tenantgate::Backend;
use tenantgate::db::{Conn, Scope};
use tenantgate::schema::Schema;

use crate::Project;

#[derive(Args)]
pub(crate) struct SchemaCommand {
    /// Database to read: postgres://… or sqlite:path.
    #[arg(long)]
    database_url: String,
    /// PostgreSQL: read only this schema (one tenant's) instead of the whole database.
    #[arg(long)]
    schema: Option<String>,
}

impl SchemaCommand {
    pub(crate) fn run(self, project: &Project<'_>) -> anyhow::Result<ExitCode> {
        let target = tenantgate::live::Target::new(&self.database_url)?;
        let target = match &self.schema {
            Some(schema) => target.in_schema(schema),
            None => target,
        };
        let backend: Backend = target.backend;
        let table = project
            .app
            .embedded(backend)
            .map(|e| e.migrator.table_name.to_string())
            .unwrap_or_else(|| "_sqlx_migrations".to_string());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start the async runtime")?;
        let text = runtime.block_on(async {
            let mut conn: Conn = target.connect(false).await?;
            let scope = match (
                &self.schema,
                tenantgate::live::Source::of(project.app, backend),
            ) {
                (Some(_), _) => Scope::CurrentSchema,
                // The app's schemas, as the snapshot holds them: a live database may hold
                // other software's too.
                (None, Ok(source)) => target.scope(&source, &project.app.config()?),
                (None, Err(_)) => Scope::Database,
            };
            let schema = Schema::read(&mut conn, &table, &scope)
                .await
                .context("introspect the schema");
            conn.close().await;
            anyhow::Ok(schema?.render())
        })?;
        println!("{}", text.trim_end());
        Ok(ExitCode::SUCCESS)
    }
}
