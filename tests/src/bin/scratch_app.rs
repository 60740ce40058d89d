//! `app`'s command line over a scratch copy of the migrations, for the integration tests:
//! they run it as a separate process to kill it mid-apply and to run two at once. The
//! scratch folder (laid out like the repository, see `Scratch`) is in TENANTGATE_SCRATCH.

use std::path::PathBuf;
use std::process::ExitCode;

use app::Backend;
use app::cli::Sources;
use app::config::Config;
use app::live::Source;
use sqlx::migrate::Migrator;

fn main() -> ExitCode {
    match sources() {
        Ok(sources) => app::cli::main(sources),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn sources() -> anyhow::Result<Sources<'static>> {
    let dir = PathBuf::from(
        std::env::var_os("TENANTGATE_SCRATCH")
            .ok_or_else(|| anyhow::format_err!("set TENANTGATE_SCRATCH to a scratch folder"))?,
    );
    let config = Config::load(&dir.join("migrations/tenantgate.toml"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let source = |backend: Backend| -> anyhow::Result<Source<'static>> {
        let folder = config.migrations_dir(backend).to_path_buf();
        let migrator = runtime.block_on(Migrator::new(folder))?;
        let snapshot = config.snapshot_dir.join(format!("{}.snap", backend.name()));
        Ok(Source {
            backend,
            migrator: Box::leak(Box::new(migrator)),
            snapshot: std::fs::read_to_string(&snapshot)
                .ok()
                .map(|text| &*Box::leak(text.into_boxed_str())),
            snapshot_name: snapshot.display().to_string(),
        })
    };
    Ok(Sources {
        postgres: source(Backend::Postgres)?,
        sqlite: source(Backend::Sqlite)?,
        config: config.clone(),
    })
}
