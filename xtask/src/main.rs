//! `cargo xtask`: Tenantgate's migration harness.
//!
//! - `migrate-test` rehearses the migrations embedded in `app` on throwaway PostgreSQL
//!   and SQLite databases, checks tenancy and data preservation, and snapshots the schema;
//! - `pg-image` builds a PostgreSQL image from Debian packages, for machines that reach
//!   no container registry;
//! - `ci` runs the whole gate the way CI does;
//! - `schema` prints a database's schema as the snapshots hold it;
//! - `release` cuts a verified build of `app` with its manifest;
//! - `lint` reads new migrations for unsafe statements; `migrations lock|check` keeps the
//!   lock files; `new-migration` starts a migration on both backends;
//! - `bench` measures the harness's speed side by side and writes the figures as JSON.

mod ci;
mod lint_command;
mod migrate_test;
mod migrations_command;
mod new_migration;
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
    /// Cut a verified release of app: every gate, the release build, and its manifest.
    Release(xtask::release::Release),
    /// Lint the migrations for unsafe statements (new work by default, --all for every one).
    Lint(lint_command::Lint),
    /// Keep the migration lock files: `lock` rewrites them, `check` verifies them.
    Migrations(migrations_command::Migrations),
    /// Create the up/down pair of a new migration in both backend folders.
    NewMigration(new_migration::NewMigration),
    /// Measure the harness's speed side by side; print a table, write target/tenantgate/bench.json.
    Bench(xtask::bench::Bench),
}

/// Runs the release and prints its verdict.
fn release(command: &xtask::release::Release) -> anyhow::Result<ExitCode> {
    let outcome = command.run()?;
    println!();
    for gate in &outcome.gates {
        println!(
            "{:4}  {:16}  {:>7.1} s  {}",
            if gate.passed { "ok" } else { "FAIL" },
            gate.name,
            gate.seconds,
            gate.detail.lines().next().unwrap_or_default()
        );
    }
    match (&outcome.refused, &outcome.binary, &outcome.manifest) {
        (None, Some(binary), Some(manifest)) => {
            println!(
                "release: PASS — {} and {} in {:.0} s",
                xtask::display_path(binary),
                xtask::display_path(manifest),
                outcome.seconds
            );
            Ok(ExitCode::SUCCESS)
        }
        (Some((gate, reason)), _, _) => {
            println!("\n{reason}");
            println!(
                "release: REFUSED at {gate} after {:.0} s; no release was cut",
                outcome.seconds
            );
            Ok(ExitCode::FAILURE)
        }
        _ => Ok(ExitCode::FAILURE),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // insta looks for the workspace root with `cargo metadata`; tell it instead, so that a
    // harness run without cargo on PATH still writes snapshots beside the migrations.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var(xtask::INSTA_ROOT_VARIABLE, xtask::project_root()) };
    let result = match cli.command {
        Command::MigrateTest(command) => command.run(),
        Command::PgImage(command) => command.run().map(|()| ExitCode::SUCCESS),
        Command::Ci(command) => command.run().map(|()| ExitCode::SUCCESS),
        Command::Schema(command) => command.run(),
        Command::Release(command) => release(&command),
        Command::Lint(command) => command.run(),
        Command::Migrations(command) => command.run(),
        Command::NewMigration(command) => command.run(),
        Command::Bench(command) => command.run().map(|results| {
            println!();
            print!("{}", results.render());
            ExitCode::SUCCESS
        }),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
