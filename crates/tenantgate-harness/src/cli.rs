//! The `cargo xtask` command line: parse the flags, dispatch to the command's module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::Project;
use crate::commands::{
    ci, init, lint, migrate_test, migrations, new_migration, pg_image, release, schema,
};

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
    /// Write a starter tenantgate.toml for an existing migrations folder, lock it, take
    /// the snapshots, and show what the first migrate-test finds.
    Init(init::Init),
    /// Rehearse the migrations on throwaway databases, check them, and snapshot the schema.
    MigrateTest(migrate_test::MigrateTest),
    /// Lint the migrations for unsafe statements (new work by default, --all for every one).
    Lint(lint::Lint),
    /// Keep the migration lock files: `lock` rewrites them, `check` verifies them.
    Migrations(migrations::Migrations),
    /// Create the up/down pair of a new migration in each configured backend folder.
    NewMigration(new_migration::NewMigration),
    /// Print a database's schema as the snapshots hold it.
    Schema(schema::SchemaCommand),
    /// Cut a verified release of the app: every gate, the release build, and its manifest.
    Release(release::Release),
    /// Run the gate CI runs: format, lints, workspace tests, migrate-test.
    Ci(ci::Ci),
    /// Measure the harness's speed side by side; print a table, write target/tenantgate/bench.json.
    Bench(crate::bench::Bench),
    /// Build a PostgreSQL image from Debian packages (no registry needed).
    PgImage(pg_image::PgImage),
}

/// Parses `cargo xtask`'s command line and runs it on `project`: the whole of an xtask's
/// `main`.
pub fn main(project: Project<'_>) -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(command) => command.run(&project),
        Command::MigrateTest(command) => command.run(&project),
        Command::Lint(command) => command.run(&project),
        Command::Migrations(command) => command.run(&project),
        Command::NewMigration(command) => command.run(&project),
        Command::Schema(command) => command.run(&project),
        Command::Release(command) => command.run_and_report(&project),
        Command::Ci(command) => command.run(&project),
        Command::Bench(command) => command.run_and_report(&project),
        Command::PgImage(command) => command.run(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
