//! The `app` binary: operators run it to apply and inspect the migrations it embeds.

use anyhow::Context;
use clap::{Parser, Subcommand};

use app::status::State;
use app::{Backend, Db};

#[derive(Parser)]
#[command(
    name = "app",
    version,
    about = "Multi-tenant back-office for retail and service shops"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply every pending migration embedded in this binary.
    Migrate {
        /// Database to migrate: postgres://… or sqlite:path.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Show applied and pending migrations, and checksum mismatches; exits 1 on a mismatch.
    Status {
        /// Database to inspect: postgres://… or sqlite:path.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// List the migrations this binary embeds, with their checksums.
    Migrations,
    /// Check that this binary is the one a release manifest describes (its sha256, its
    /// migrations' checksums, its schema snapshots, and that every gate passed).
    VerifyManifest {
        /// The manifest written by `cargo xtask release` (app.manifest.json).
        manifest: std::path::PathBuf,
        /// The binary to check [default: this one].
        #[arg(long)]
        binary: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match Cli::parse().command.run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

impl Command {
    async fn run(self) -> anyhow::Result<std::process::ExitCode> {
        match self {
            Command::Migrate { database_url } => {
                let backend = Backend::from_url(&database_url)?;
                let db = Db::connect(&database_url)
                    .await
                    .with_context(|| format!("connect to the {backend} database"))?;
                db.migrate()
                    .await
                    .with_context(|| format!("apply the embedded {backend} migrations"))?;
                db.close().await;
                print_status(&database_url).await
            }
            Command::Status { database_url } => print_status(&database_url).await,
            Command::Migrations => {
                for backend in Backend::ALL {
                    for migration in backend.migrator().iter() {
                        let kind = if migration.migration_type.is_up_migration() {
                            "up"
                        } else {
                            "down"
                        };
                        println!(
                            "{backend}\t{:04}\t{kind}\t{}\t{}",
                            migration.version,
                            migration.description,
                            hex(&migration.checksum)
                        );
                    }
                }
                Ok(std::process::ExitCode::SUCCESS)
            }
            Command::VerifyManifest { manifest, binary } => verify_manifest(&manifest, binary),
        }
    }
}

fn verify_manifest(
    path: &std::path::Path,
    binary: Option<std::path::PathBuf>,
) -> anyhow::Result<std::process::ExitCode> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the manifest {}", path.display()))?;
    let manifest: app::manifest::Manifest = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a release manifest written by `cargo xtask release`",
            path.display()
        )
    })?;
    let binary = match binary {
        Some(binary) => binary,
        None => std::env::current_exe().context("locate this binary")?,
    };
    let findings = app::manifest::verify(&manifest, &binary);
    for finding in &findings {
        println!(
            "{:4}  {:16}  {}",
            if finding.ok { "ok" } else { "FAIL" },
            finding.check,
            finding.detail
        );
    }
    let failed: Vec<&str> = findings.iter().filter(|f| !f.ok).map(|f| f.check).collect();
    if failed.is_empty() {
        println!(
            "verify-manifest: PASS — {} is app {} at {}, as released",
            binary.display(),
            manifest.app.version,
            &manifest.git.commit[..manifest.git.commit.len().min(12)]
        );
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        println!(
            "verify-manifest: FAIL — {} does not match {} ({}); do not deploy it",
            binary.display(),
            path.display(),
            failed.join(", ")
        );
        Ok(std::process::ExitCode::FAILURE)
    }
}

async fn print_status(database_url: &str) -> anyhow::Result<std::process::ExitCode> {
    let rows = app::status::status(database_url)
        .await
        .context("read the migrations table")?;
    let mut mismatches = 0;
    println!("{:>7}  {:<40}  state", "version", "migration");
    for row in &rows {
        let state = match row.state {
            State::Applied => "applied",
            State::Pending => "pending",
            State::ChecksumMismatch => {
                "CHECKSUM MISMATCH: the database ran a different build of this migration"
            }
            State::Unknown => {
                "UNKNOWN: applied by a build that embeds a migration this one does not"
            }
            State::Dirty => "DIRTY: recorded as failed; repair the database before migrating",
        };
        if !matches!(row.state, State::Applied | State::Pending) {
            mismatches += 1;
        }
        println!("{:>7}  {:<40}  {state}", row.version, row.description);
    }
    let applied = rows.iter().filter(|r| r.state == State::Applied).count();
    let pending = rows.iter().filter(|r| r.state == State::Pending).count();
    println!("{applied} applied, {pending} pending, {mismatches} mismatched");
    Ok(if mismatches == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

fn hex(bytes: &[u8]) -> String {
    app::manifest::hex(bytes)
}
