//! Is a Docker engine there, and what did killed runs leave in it.

use std::io::{Read, Write};
use std::time::Duration;

/// Label on every container a run starts: the pid of the run that owns it.
pub(crate) const OWNER_LABEL: &str = "tenantgate.owner-pid";

/// Where the engine is expected: `DOCKER_HOST`, else the default socket.
pub(crate) fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

/// True when the engine answers `GET /_ping` within a second.
pub(crate) fn engine_answers() -> bool {
    let address = engine_address();
    let request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let timeout = Duration::from_secs(1);
    let mut response = Vec::new();
    let answered = if let Some(path) = address.strip_prefix("unix://") {
        std::os::unix::net::UnixStream::connect(path).and_then(|mut stream| {
            stream.set_read_timeout(Some(timeout))?;
            stream.write_all(request)?;
            stream.read_to_end(&mut response)
        })
    } else if let Some(host) = address.strip_prefix("tcp://") {
        use std::net::ToSocketAddrs;
        host.to_socket_addrs()
            .and_then(|mut addresses| {
                addresses
                    .next()
                    .ok_or_else(|| std::io::ErrorKind::NotFound.into())
            })
            .and_then(|socket| std::net::TcpStream::connect_timeout(&socket, timeout))
            .and_then(|mut stream| {
                stream.set_read_timeout(Some(timeout))?;
                stream.write_all(request)?;
                stream.read_to_end(&mut response)
            })
    } else {
        return false;
    };
    answered.is_ok() && response.starts_with(b"HTTP/1.") && response.windows(2).any(|w| w == b"OK")
}

/// Removes containers of earlier runs whose process is gone (killed with SIGKILL, or a
/// crash): testcontainers-rs has no reaper of its own.
pub(crate) fn sweep_leftover_containers() {
    remove_containers_where(|pid, id| {
        !super::process_alive(pid) && !super::janitor::was_kept_container(id)
    });
}

/// Whether this process ever asked for a container: an interrupted run that did not has
/// none to look for (asking the engine took seconds on a loaded machine, after Ctrl-C).
static ASKED_FOR_A_CONTAINER: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Called before a container is asked for, so that an interruption looks for it.
pub(crate) fn asking_for_a_container() {
    ASKED_FOR_A_CONTAINER.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Removes this run's own containers, including one whose start was interrupted before
/// the janitor knew of it.
pub(crate) fn remove_containers_of_this_run() {
    if !ASKED_FOR_A_CONTAINER.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let this_run = std::process::id() as i32;
    remove_containers_where(|pid, _| pid == this_run);
}

/// Removes our containers for which `remove(owner pid, short id)` is true.
fn remove_containers_where(remove: impl Fn(i32, &str) -> bool) {
    if !engine_answers() {
        return;
    }
    let shell = match xshell::Shell::new() {
        Ok(shell) => shell,
        Err(_) => return,
    };
    let filter = format!("label={OWNER_LABEL}");
    let format = format!("{{{{.ID}}}} {{{{.Label \"{OWNER_LABEL}\"}}}}");
    let Ok(listing) = xshell::cmd!(shell, "docker ps -a --filter {filter} --format {format}")
        .quiet()
        .ignore_stderr()
        .read()
    else {
        return;
    };
    for line in listing.lines() {
        let mut fields = line.split_whitespace();
        let (Some(id), Some(pid)) = (fields.next(), fields.next()) else {
            continue;
        };
        if pid.parse().is_ok_and(|pid| remove(pid, id)) {
            let _ = xshell::cmd!(shell, "docker rm -f -v {id}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run();
        }
    }
}

/// The image to start: `requested`, except that when it is the default (the official
/// image, nothing asked for), it is not on this machine, and `cargo xtask pg-image` built
/// ours, ours — on a machine that reaches no registry that is the one that can run.
pub(crate) fn image_to_use(requested: &str) -> String {
    let local = crate::pg_image::DEFAULT_TAG;
    if requested != super::DEFAULT_PG_IMAGE || image_exists(requested) || !image_exists(local) {
        return requested.to_string();
    }
    local.to_string()
}

pub(crate) fn image_exists(image: &str) -> bool {
    let Ok(shell) = xshell::Shell::new() else {
        return false;
    };
    xshell::cmd!(shell, "docker image inspect {image}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}
