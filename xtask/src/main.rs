//! `cargo xtask`: Tenantgate's migration harness.
//!
//! - `migrate-test` rehearses the migrations embedded in `app` on throwaway PostgreSQL
//!   and SQLite databases, checks tenancy and data preservation, and snapshots the schema;
//! - `pg-image` builds a PostgreSQL image from Debian packages, for machines that reach
//!   no container registry;
//! - `ci` runs the whole gate the way CI does;
//! - `schema` prints a database's schema as the snapshots hold it.

mod ci;
mod migrate_test;
mod pg_image;
mod schema_command;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Tenantgate's migration harness",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rehearse the migrations on throwaway databases, check them, and snapshot the schema.
    MigrateTest(migrate_test::MigrateTest),
    /// Build a PostgreSQL image from Debian packages (no registry needed).
    PgImage(pg_image::PgImage),
    /// Run the gate CI runs: format, lints, workspace tests, migrate-test.
    Ci(ci::Ci),
    /// Print a database's schema as the snapshots hold it.
    Schema(schema_command::SchemaCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // insta looks for the workspace root with `cargo metadata`; tell it instead, so that a
    // harness run without cargo on PATH still writes snapshots beside the migrations.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("INSTA_WORKSPACE_ROOT", xtask::project_root()) };
    let result = match cli.command {
        Command::MigrateTest(command) => command.run(),
        Command::PgImage(command) => command.run().map(|()| ExitCode::SUCCESS),
        Command::Ci(command) => command.run().map(|()| ExitCode::SUCCESS),
        Command::Schema(command) => command.run(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
