//! Tenantgate's migration harness: what a workspace's `cargo xtask` runs to prove its
//! app's migrations safe before they merge and ship.
//!
//! `cargo xtask migrate-test` rehearses the migrations the app embeds (`sqlx::migrate!`)
//! on throwaway PostgreSQL (testcontainers, an existing server, or local binaries) and
//! SQLite databases: it applies them one at a time and reverses each, seeds data, checks
//! tenancy and data preservation, asserts an insta snapshot of the schema, and runs the
//! tenant-isolation gate (static rules after every migration, and behavioural cases as
//! the application role). `release`, `lint`, `init`, `migrations lock|check`,
//! `new-migration`, `schema`, `ci`, `bench` and `pg-image` complete it.
//!
//! Everything it knows about the app comes from the app's `tenantgate.toml` and the
//! schema it introspects; a workspace hands over its app in a few lines:
//!
//! ```ignore
//! // xtask/src/main.rs
//! fn main() -> std::process::ExitCode {
//!     tenantgate_harness::main(tenantgate_harness::Project {
//!         package: "my-app",
//!         config: "migrations/tenantgate.toml",
//!         app: Some(&my_app::TENANTGATE),
//!         api: None,
//!     })
//! }
//! ```
//!
//! with `[alias] xtask = "run --package xtask --"` in `.cargo/config.toml`. Before the
//! app embeds a configuration, `app: None` lets `cargo xtask init` write one: it applies
//! the existing migrations to throwaway databases and infers the tenancy from the schema.

pub mod bench;
pub mod checks;
mod cli;
pub mod commands;
pub mod folder;
pub mod init;
pub mod isolation;
pub mod lint;
pub mod lock;
pub mod migration_set;
pub mod parity;
pub mod provision;
pub mod rehearsal;
pub mod report;
pub mod snapshot;
pub mod static_checks;
pub mod volume;
pub mod workspace;
pub mod workspace_tests;

pub use cli::main;
pub use rehearsal::AppUnderTest;
pub use workspace::display_path;

use tenantgate::api::TenantApi;

/// A workspace's app, as its `xtask` hands it to the harness.
#[derive(Clone, Copy)]
pub struct Project<'a> {
    /// The cargo package whose binary ships (`cargo xtask release` builds it).
    pub package: &'a str,
    /// The app's `tenantgate.toml`, relative to the workspace root.
    pub config: &'a str,
    /// What the app embeds: its migrators, snapshots and configuration. `None` while a
    /// workspace adopts Tenantgate (before `cargo xtask init` has written the configuration
    /// the app embeds): `init` and `migrate-test` then read the folders from disk, and the
    /// commands that need the embedded migrations (`release`, `bench`) say so.
    pub app: Option<&'a tenantgate::App<'a>>,
    /// The app's own tenant-scoped data-access API, for the isolation cases to drive too.
    pub api: Option<&'a dyn TenantApi>,
}

impl<'a> Project<'a> {
    /// What the app embeds, for a command that needs it.
    pub fn embedded_app(&self) -> anyhow::Result<&'a tenantgate::App<'a>> {
        self.app.ok_or_else(|| {
            anyhow::format_err!(
                "this command needs the migrations `{}` embeds, and the workspace's xtask hands the harness none (`app: None`): embed them as the README's \"Adopting Tenantgate\" shows and pass `app: Some(&{}::TENANTGATE)`",
                self.package,
                self.package.replace('-', "_")
            )
        })
    }
}

/// Resolves on Ctrl-C or SIGTERM: the commands that hold throwaway resources race their
/// work against it and clean up before exiting with 130.
///
/// The handlers are installed when this is called, not when the future is first polled,
/// so a signal that arrives while the work it races runs synchronously (reading and
/// hashing a 32 MB migration) is still caught. Call it inside the runtime.
pub fn interrupted() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            () = next_signal(interrupt.as_mut()) => {}
            () = next_signal(terminate.as_mut()) => {}
        }
    }
}

/// The next delivery of `signal`; never, for one that could not be listened for.
async fn next_signal(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Facts about the image `cargo xtask pg-image` builds, shared with the provisioning errors.
pub mod pg_image {
    /// Tag of the image built from Debian packages.
    pub const DEFAULT_TAG: &str = "tenantgate/postgres:15";

    /// The label an image built by `cargo xtask pg-image` carries, with [`LABEL_VALUE`]:
    /// its containers start from the cluster made when it was built. An image without it
    /// (an earlier build) is built again.
    pub const LABEL: &str = "org.tenantgate.pg-image";
    pub const LABEL_VALUE: &str = "seeded";

    /// Whether the image `tag` carries [`LABEL`]`=`[`LABEL_VALUE`]; `None` when the
    /// engine has no such image (or does not answer).
    pub fn seeded(tag: &str) -> Option<bool> {
        let shell = xshell::Shell::new().ok()?;
        let format = format!("{{{{ index .Config.Labels \"{LABEL}\" }}}}");
        let found = xshell::cmd!(shell, "docker image inspect --format {format} {tag}")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()?;
        Some(found.trim() == LABEL_VALUE)
    }

    /// The Debian suite that packages each PostgreSQL major `cargo xtask pg-image` builds.
    pub const SUITES: [(u32, &str); 3] = [(15, "bookworm"), (17, "trixie"), (18, "forky")];

    /// The tag `cargo xtask pg-image --version <major>` builds.
    pub fn tag_of(major: u32) -> String {
        format!("tenantgate/postgres:{major}")
    }

    /// The image a run on PostgreSQL `major` starts: the one `cargo xtask pg-image` built
    /// when this machine has it, else the official `postgres:<major>` (pulled where a
    /// registry is reachable; 16, which no Debian suite packages, comes only from there).
    pub fn image_for(major: u32) -> String {
        let ours = tag_of(major);
        if crate::provision::image_exists(&ours) {
            ours
        } else {
            format!("postgres:{major}")
        }
    }

    /// How to get an image of PostgreSQL `major` onto a machine that has none, for an
    /// error's fix.
    pub fn how_to_get(major: u32) -> String {
        if SUITES.iter().any(|(m, _)| *m == major) {
            format!(
                "build it with `cargo xtask pg-image --version {major}` ({tag}, which --pg-versions picks; elsewhere pass --pg-image {tag})",
                tag = tag_of(major)
            )
        } else {
            format!(
                "`docker pull postgres:{major}` where a registry is reachable (no Debian suite packages PostgreSQL {major}, so `cargo xtask pg-image` cannot build it)"
            )
        }
    }

    /// The PostgreSQL major an image's tag names (`postgres:16`, `tenantgate/postgres:18`,
    /// `postgres:17-alpine`), if it names one.
    pub fn major_of(image: &str) -> Option<u32> {
        let (_, tag) = image.rsplit_once(':')?;
        let digits: String = tag.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse()
            .ok()
            .filter(|major| (10..100).contains(major))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn an_image_tag_names_its_major() {
            assert_eq!(major_of("postgres:16"), Some(16));
            assert_eq!(major_of("tenantgate/postgres:18"), Some(18));
            assert_eq!(major_of("postgres:17-alpine"), Some(17));
            assert_eq!(major_of("registry:5000/postgres:15.4"), Some(15));
            assert_eq!(major_of("registry:5000/postgres"), None);
            assert_eq!(major_of("postgres:latest"), None);
            assert_eq!(major_of("postgres"), None);
            assert_eq!(major_of("tenantgate/no-such-image:0"), None);
        }

        #[test]
        fn the_way_to_an_image_depends_on_whether_debian_packages_the_major() {
            for (major, _) in SUITES {
                let how = how_to_get(major);
                assert!(
                    how.contains(&format!("cargo xtask pg-image --version {major}"))
                        && how.contains(&tag_of(major)),
                    "{how}"
                );
            }
            let how = how_to_get(16);
            assert!(
                how.contains("no Debian suite packages PostgreSQL 16")
                    && how.contains("docker pull postgres:16")
                    && !how.contains("--version 16"),
                "{how}"
            );
        }
    }
}
