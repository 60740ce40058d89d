//! `cargo xtask pg-image`: a PostgreSQL image built from Debian packages, for machines
//! that reach Debian's mirror but no container registry. Its entrypoint honours the
//! official image's contract (POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB).

use std::path::Path;

use anyhow::{Context, bail};
use clap::Args;
use xshell::{Shell, cmd};

#[derive(Args)]
pub(crate) struct PgImage {
    /// Tag of the image to build.
    #[arg(long, default_value = crate::pg_image::DEFAULT_TAG)]
    tag: String,
    /// Debian mirror for debootstrap.
    #[arg(long, default_value = "http://deb.debian.org/debian")]
    mirror: String,
    /// Rebuild even if the tag exists.
    #[arg(long)]
    force: bool,
}

/// Runs as the image's PID 1 (through exec), so `docker stop` reaches the postmaster.
const ENTRYPOINT: &str = r#"#!/bin/sh
# Entrypoint of the image built by `cargo xtask pg-image`: the official postgres
# image's contract (POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB, PGDATA,
# POSTGRES_HOST_AUTH_METHOD, POSTGRES_INITDB_ARGS, server options as arguments).
set -eu
BIN=/usr/lib/postgresql/15/bin
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
AUTH="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$AUTH" != trust ]; then
        echo "error: the database is uninitialized and POSTGRES_PASSWORD is not set" >&2
        exit 1
    fi
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
    chown postgres "$pwfile"
    as_postgres "$BIN/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -A "$AUTH" -E UTF8 --locale=C ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    echo "host all all all $AUTH" >> "$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        echo "CREATE DATABASE \"$POSTGRES_DB\"" | as_postgres "$BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
    fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
"#;

impl PgImage {
    pub(crate) fn run(self) -> anyhow::Result<std::process::ExitCode> {
        let sh = Shell::new()?;
        let tag = &self.tag;
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
        if !self.force
            && cmd!(sh, "docker image inspect {tag}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .is_ok()
        {
            eprintln!("pg-image: {tag} already exists (pass --force to rebuild)");
            return Ok(std::process::ExitCode::SUCCESS);
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
            "pg-image: debootstrap bookworm with postgresql-15 from {mirror} (about a minute)"
        );
        cmd!(
            sh,
            "debootstrap --variant=minbase --include=postgresql-15 bookworm {root} {mirror}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .context("debootstrap a Debian root with postgresql-15")?;
        slim_down(&root)?;
        let entrypoint = root.join("usr/local/bin/docker-entrypoint.sh");
        std::fs::write(&entrypoint, ENTRYPOINT).context("write the entrypoint")?;
        std::fs::set_permissions(
            &entrypoint,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;

        let tarball = work.path().join("rootfs.tar");
        eprintln!("pg-image: importing as {tag}");
        cmd!(sh, "tar -C {root} -cf {tarball} .")
            .quiet()
            .run()
            .context("pack the root file system")?;
        cmd!(
            sh,
            "docker import
                --change 'ENTRYPOINT [\"/usr/local/bin/docker-entrypoint.sh\"]'
                --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
                --change 'EXPOSE 5432'
                {tarball} {tag}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .context("docker import the root file system")?;
        work.close().context("remove the work folder")?;
        eprintln!(
            "pg-image: built {tag}; use it with TENANTGATE_PG_IMAGE={tag} or --pg-image {tag}"
        );
        Ok(std::process::ExitCode::SUCCESS)
    }
}

/// The packages' cluster and the apt caches are not needed in the image.
fn slim_down(root: &Path) -> anyhow::Result<()> {
    for dir in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "var/lib/postgresql/15",
        "etc/postgresql/15",
    ] {
        let path = root.join(dir);
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("remove {}", path.display()))?;
        }
    }
    Ok(())
}
