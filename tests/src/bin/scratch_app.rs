//! `app`'s command line over a scratch copy of the migrations, for the integration tests:
//! they run it as a separate process to kill it mid-apply and to run two at once. The
//! scratch folder (laid out like the repository, see `Scratch`) is in TENANTGATE_SCRATCH.

use std::path::PathBuf;
use std::process::ExitCode;

use app::Backend;
use app::cli::Sources;
use app::config::Config;
use tenantgate_tests::live::scratch_source_in;

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
    Ok(Sources {
        postgres: runtime.block_on(scratch_source_in(&dir, Backend::Postgres))?,
        sqlite: runtime.block_on(scratch_source_in(&dir, Backend::Sqlite))?,
        config,
    })
}
