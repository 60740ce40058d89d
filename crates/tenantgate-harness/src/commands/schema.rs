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
        let table = match project.app.and_then(|app| app.embedded(backend)) {
            Some(embedded) => embedded.migrator.table_name.to_string(),
            None => match super::load_config(project, None) {
                Ok(config) => config.sqlx_settings()?.table,
                Err(_) => "_sqlx_migrations".to_string(),
            },
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start the async runtime")?;
        let text = runtime.block_on(async {
            let mut conn: Conn = target.connect(false).await?;
            let scope = match (&self.schema, project.app) {
                (Some(_), _) => Scope::CurrentSchema,
                // The app's schemas, as the snapshot holds them: a live database may hold
                // other software's too.
                (None, Some(app)) => match tenantgate::live::Source::of(app, backend) {
                    Ok(source) => target.scope(&source, &app.config()?),
                    Err(_) => Scope::Database,
                },
                (None, None) => Scope::Database,
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
