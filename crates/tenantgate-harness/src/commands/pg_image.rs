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
const ENTRYPOINT: &str = r#"#!/bin/sh
# Entrypoint of the image built by `cargo xtask pg-image`: the official postgres
# image's contract (POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB, PGDATA,
# POSTGRES_HOST_AUTH_METHOD, POSTGRES_INITDB_ARGS, server options as arguments).
set -eu
BIN=/usr/lib/postgresql/@MAJOR@/bin
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
        let path_env = format!(
            "ENV PATH=/usr/lib/postgresql/{major}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        );
        cmd!(sh, "tar -C {root} -cf {tarball} .")
            .quiet()
            .run()
            .context("pack the root file system")?;
        cmd!(
            sh,
            "docker import
                --change 'ENTRYPOINT [\"/usr/local/bin/docker-entrypoint.sh\"]'
                --change {path_env}
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
