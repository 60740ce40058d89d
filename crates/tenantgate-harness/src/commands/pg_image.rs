//! `cargo xtask pg-image`: a PostgreSQL image built from Debian packages, for machines
//! that reach Debian's mirror but no container registry. Its entrypoint honours the
//! official image's contract (POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB).

use std::path::Path;

use anyhow::{Context, bail};
use clap::Args;
use xshell::{Shell, cmd};

#[derive(Args)]
pub(crate) struct PgImage {
    /// PostgreSQL major version: 15 (Debian bookworm), 17 (trixie) or 18 (forky).
    #[arg(long, default_value_t = 15, value_parser = parse_major)]
    version: u32,
    /// Tag of the image to build (default: tenantgate/postgres:<version>).
    #[arg(long)]
    tag: Option<String>,
    /// Debian mirror for debootstrap.
    #[arg(long, default_value = "http://deb.debian.org/debian")]
    mirror: String,
    /// Rebuild even if the tag exists.
    #[arg(long)]
    force: bool,
}

/// Runs as the image's PID 1 (through exec), so `docker stop` reaches the postmaster.
///
/// A new container's cluster is a copy of one `initdb` made when the image was built
/// (`--make-seed`) whenever the container asks for what that one is (the superuser and
/// database `postgres`, password authentication, no `initdb` arguments but `--no-sync`):
/// the copy and the password set in single-user mode take about 0.1 s, `initdb` 0.55 s
/// (measured on the 2-core machine), most of a throwaway container's start. Anything else
/// runs `initdb` as the official image does.
const ENTRYPOINT: &str = r#"#!/bin/sh
# Entrypoint of the image built by `cargo xtask pg-image`: the official postgres
# image's contract (POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB, PGDATA,
# POSTGRES_HOST_AUTH_METHOD, POSTGRES_INITDB_ARGS, server options as arguments).
set -eu
BIN=/usr/lib/postgresql/@MAJOR@/bin
SEED=/var/lib/postgresql/seed
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
AUTH="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
new_cluster() { # $1: where, $2: file holding the superuser's password
    as_postgres "$BIN/initdb" -D "$1" -U "$POSTGRES_USER" --pwfile="$2" -A "$AUTH" -E UTF8 --locale=C ${POSTGRES_INITDB_ARGS:-} >/dev/null
    echo "host all all all $AUTH" >> "$1/pg_hba.conf"
}
if [ "${1:-}" = --make-seed ]; then
    mkdir -p "$SEED"
    chown postgres:postgres "$SEED"
    chmod 700 "$SEED"
    pwfile=$(mktemp)
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$pwfile"
    chown postgres "$pwfile"
    POSTGRES_INITDB_ARGS=--no-sync new_cluster "$SEED" "$pwfile"
    rm -f "$pwfile"
    exit 0
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$AUTH" != trust ]; then
        echo "error: the database is uninitialized and POSTGRES_PASSWORD is not set" >&2
        exit 1
    fi
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    if [ -s "$SEED/PG_VERSION" ] && [ "$POSTGRES_USER" = postgres ] && [ "$POSTGRES_DB" = postgres ] \
        && [ "$AUTH" = scram-sha-256 ] \
        && { [ -z "${POSTGRES_INITDB_ARGS:-}" ] || [ "$POSTGRES_INITDB_ARGS" = --no-sync ]; }; then
        cp -a "$SEED/." "$PGDATA/"
        quoted=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")
        printf "ALTER ROLE postgres PASSWORD '%s'\n" "$quoted" \
            | as_postgres "$BIN/postgres" --single -D "$PGDATA" -c fsync=off -c log_checkpoints=off postgres >/dev/null
        echo "pg-image: cluster copied from the image's seed" >&2
    else
        pwfile=$(mktemp)
        printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
        chown postgres "$pwfile"
        new_cluster "$PGDATA" "$pwfile"
        rm -f "$pwfile"
        if [ "$POSTGRES_DB" != postgres ]; then
            echo "CREATE DATABASE \"$POSTGRES_DB\"" | as_postgres "$BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
        fi
    fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
"#;

use crate::pg_image::SUITES;

fn parse_major(text: &str) -> Result<u32, String> {
    let major: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a PostgreSQL major version (15, 17 or 18)"))?;
    if SUITES.iter().any(|(m, _)| *m == major) {
        Ok(major)
    } else {
        Err(format!(
            "no Debian suite packages PostgreSQL {major}: bookworm has 15, trixie 17 and forky 18 (16 is in no Debian suite; use the official postgres:16 image where a registry is reachable)"
        ))
    }
}

impl PgImage {
    pub(crate) fn run(self) -> anyhow::Result<std::process::ExitCode> {
        let sh = Shell::new()?;
        let major = self.version;
        let suite = SUITES
            .iter()
            .find(|(m, _)| *m == major)
            .map(|(_, s)| *s)
            .expect("parse_major accepts only these");
        let tag = &self
            .tag
            .clone()
            .unwrap_or_else(|| crate::pg_image::tag_of(major));
        if cmd!(sh, "docker --version")
            .quiet()
            .ignore_stdout()
            .run()
            .is_err()
        {
            bail!(
                "the docker command is not installed\nfix: `apt-get install docker.io` and start `dockerd`"
            );
        }
        if cmd!(sh, "docker info")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_err()
        {
            bail!(
                "no Docker engine answers\nfix: start it (`dockerd > /tmp/dockerd.log 2>&1 &` or `systemctl start docker`)"
            );
        }
        if !self.force {
            match crate::pg_image::seeded(tag) {
                Some(true) => {
                    eprintln!("pg-image: {tag} already exists (pass --force to rebuild)");
                    return Ok(std::process::ExitCode::SUCCESS);
                }
                // An image of an earlier build starts containers without the seed cluster.
                Some(false) => {
                    eprintln!("pg-image: {tag} was built without a seed cluster; rebuilding")
                }
                None => {}
            }
        }
        if cmd!(sh, "debootstrap --version")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_err()
        {
            bail!("debootstrap is not installed\nfix: `apt-get install debootstrap`");
        }
        let work = tempfile::Builder::new()
            .prefix("tenantgate-pg-image-")
            .tempdir()
            .context("create a work folder")?;
        let root = work.path().join("rootfs");
        let mirror = &self.mirror;
        eprintln!(
            "pg-image: debootstrap {suite} with postgresql-{major} from {mirror} (about a minute)"
        );
        let package = format!("postgresql-{major}");
        // The suites after bookworm share sid's script; an older debootstrap may not name
        // them yet.
        let script: Vec<String> = match suite {
            "bookworm" => Vec::new(),
            _ => ["/usr/share/debootstrap/scripts/sid"]
                .iter()
                .filter(|p| Path::new(p).exists())
                .map(|p| p.to_string())
                .collect(),
        };
        cmd!(
            sh,
            "debootstrap --variant=minbase --include={package} {suite} {root} {mirror} {script...}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("debootstrap a Debian {suite} root with {package}"))?;
        slim_down(&root, major)?;
        let entrypoint = root.join("usr/local/bin/docker-entrypoint.sh");
        std::fs::write(
            &entrypoint,
            ENTRYPOINT.replace("@MAJOR@", &major.to_string()),
        )
        .context("write the entrypoint")?;
        std::fs::set_permissions(
            &entrypoint,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;

        let tarball = work.path().join("rootfs.tar");
        eprintln!("pg-image: importing as {tag}");
        let settings = image_settings(major);
        let changes = &settings;
        cmd!(sh, "tar -C {root} -cf {tarball} .")
            .quiet()
            .run()
            .context("pack the root file system")?;
        cmd!(sh, "docker import {changes...} {tarball} {tag}")
            .quiet()
            .ignore_stdout()
            .run()
            .context("docker import the root file system")?;
        work.close().context("remove the work folder")?;
        eprintln!("pg-image: making the cluster new containers copy");
        make_seed(&sh, tag, &settings)?;
        eprintln!(
            "pg-image: built {tag}; use it with TENANTGATE_PG_IMAGE={tag} or --pg-image {tag}"
        );
        Ok(std::process::ExitCode::SUCCESS)
    }
}

/// The image's settings, as `docker import` and `docker commit` take them: its
/// entrypoint, `PATH` and port.
fn image_settings(major: u32) -> Vec<String> {
    [
        r#"ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]"#.to_string(),
        format!(
            "ENV PATH=/usr/lib/postgresql/{major}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ),
        "EXPOSE 5432".to_string(),
    ]
    .into_iter()
    .flat_map(|setting| ["--change".to_string(), setting])
    .collect()
}

/// Runs the image's entrypoint with `--make-seed` (an `initdb` into the image's seed
/// folder) and commits the result under the same tag, with the import's `settings`, no
/// command and the label that says so.
fn make_seed(sh: &Shell, tag: &str, settings: &[String]) -> anyhow::Result<()> {
    let seeding = format!("tenantgate-pg-seed-{}", std::process::id());
    let label = format!(
        "LABEL {}={}",
        crate::pg_image::LABEL,
        crate::pg_image::LABEL_VALUE
    );
    let made = cmd!(sh, "docker run --name {seeding} {tag} --make-seed")
        .quiet()
        .ignore_stdout()
        .run()
        .context("run initdb in the image")
        .and_then(|()| {
            cmd!(
                sh,
                "docker commit {settings...} --change 'CMD []' --change {label} {seeding} {tag}"
            )
            .quiet()
            .ignore_stdout()
            .run()
            .context("commit the image with its seed cluster")
        });
    let removed = cmd!(sh, "docker rm -f {seeding}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("remove the container {seeding}"));
    made.and(removed)
}

/// The packages' cluster and the apt caches are not needed in the image.
fn slim_down(root: &Path, major: u32) -> anyhow::Result<()> {
    for dir in [
        "var/cache/apt/archives".to_string(),
        "var/lib/apt/lists".to_string(),
        format!("var/lib/postgresql/{major}"),
        format!("etc/postgresql/{major}"),
    ] {
        let path = root.join(dir);
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("remove {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_major;

    #[test]
    fn only_the_majors_a_debian_suite_packages_are_accepted() {
        assert_eq!(parse_major("15"), Ok(15));
        assert_eq!(parse_major("17"), Ok(17));
        assert_eq!(parse_major("18"), Ok(18));
        let sixteen = parse_major("16").unwrap_err();
        assert!(sixteen.contains("16 is in no Debian suite"), "{sixteen}");
        assert!(
            parse_major("eighteen")
                .unwrap_err()
                .contains("not a PostgreSQL major")
        );
    }
}
