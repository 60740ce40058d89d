//! The demo app's command line over a scratch copy of the migrations, for the integration
//! tests: they run it as a separate process to kill it mid-apply and to run two at once.
//! The scratch folder (laid out like the repository, see `Scratch`) is in TENANTGATE_SCRATCH.

use std::path::PathBuf;
use std::process::ExitCode;

use tenantgate_tests::live::scratch_app_in;

fn main() -> ExitCode {
    // The fault-injection suite's faults (FAILPOINTS), for this process.
    tenantgate::live::fault::from_env();
    let dir = match std::env::var_os("TENANTGATE_SCRATCH") {
        Some(dir) => PathBuf::from(dir),
        None => {
            eprintln!("error: set TENANTGATE_SCRATCH to a scratch folder");
            return ExitCode::FAILURE;
        }
    };
    let app = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(scratch_app_in(&dir)));
    match app {
        Ok(app) => tenantgate::cli::main(&app),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
