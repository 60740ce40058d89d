//! `cargo xtask schema`: prints a database's schema as the snapshots hold it, to compare a
//! database migrated by other means (sqlx-cli, `app migrate`, a live server) with them.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use app::Backend;
use xtask::db::Conn;
use xtask::schema::Schema;

#[derive(Args)]
pub(crate) struct SchemaCommand {
    /// Database to read: postgres://… or sqlite:path.
    #[arg(long)]
    database_url: String,
}

impl SchemaCommand {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let backend = Backend::from_url(&self.database_url)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start the async runtime")?;
        let text = runtime.block_on(async {
            let mut conn = Conn::connect(backend, &self.database_url)
                .await
                .with_context(|| format!("connect to the {backend} database"))?;
            let schema = Schema::read(&mut conn, &backend.migrator().table_name)
                .await
                .context("introspect the schema");
            conn.close().await;
            anyhow::Ok(schema?.render())
        })?;
        println!("{}", text.trim_end());
        Ok(ExitCode::SUCCESS)
    }
}
