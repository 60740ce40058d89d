//! Named points of a live run where the fault-injection suite injects a fault, with the
//! `fail` crate's fail points (`FAILPOINTS=migrate::after-backup=return(sigterm)`). Built
//! only with the `failpoints` feature, which only the tests enable: in an app's build
//! [`at`] is a constant `None`.
//!
//! The faults: `sigkill`, `sigterm`, `sigint` (to this process, now or after a delay:
//! `sigterm@300`), `disk-full` and `read-only` (from this point on, every file the run
//! writes fails as a full or read-only disk would), `disconnect` (the server ends the
//! run's session, now or after a delay), `fail` (the step fails), `pause` (the run writes `<point>` to the file
//! named by `TENANTGATE_FAULT_PAUSE` and waits for it to disappear, for faults a test
//! injects from outside, such as a server restart).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// The points, in the order a run meets them.
pub const POINTS: [&str; 5] = [
    "migrate::before-backup",
    "migrate::after-backup",
    "migrate::in-migration",
    "migrate::before-verify",
    "migrate::in-rollback",
];

/// Where a fan-out takes each batch's dump (`fanout::before-dump`): not in [`POINTS`],
/// which are one run's.
pub const BEFORE_DUMP: &str = "fanout::before-dump";

/// What a point asks the run to do (the signals and pauses are done already).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Injected {
    Nothing,
    /// End the run's own database session, after this many milliseconds.
    Disconnect {
        after_ms: u64,
    },
    /// Fail the step at this point (`fail`), as a failing tool or server would.
    Fail,
}

/// 0: files are written; 1: the disk is full; 2: it is read-only.
static FILES: AtomicU8 = AtomicU8::new(0);

/// Sets up the fail points from `FAILPOINTS` for the life of the process (a no-op without
/// the `failpoints` feature).
pub fn from_env() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}

/// The fault configured at `point`, injected.
pub fn at(point: &str) -> Injected {
    #[cfg(feature = "failpoints")]
    if let Some(injected) = fail::eval(point, |arg| act(point, arg.as_deref().unwrap_or(""))) {
        return injected;
    }
    let _ = point;
    Injected::Nothing
}

/// Fails as the disk would once a `disk-full` or `read-only` fault was injected: every
/// file the run writes goes through this first.
pub fn writable() -> std::io::Result<()> {
    match FILES.load(Ordering::SeqCst) {
        0 => Ok(()),
        1 => Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
        _ => Err(std::io::Error::from_raw_os_error(libc::EROFS)),
    }
}

#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
fn act(point: &str, fault: &str) -> Injected {
    let (name, delay) = match fault.split_once('@') {
        Some((name, ms)) => (name, ms.parse().unwrap_or(0)),
        None => (fault, 0),
    };
    let signal = |number: i32| {
        let raise = move || {
            // SAFETY: kill(2) on this process's own pid.
            unsafe { libc::kill(libc::getpid(), number) };
        };
        if delay == 0 {
            raise();
        } else {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                raise();
            });
        }
    };
    match name {
        "sigkill" => signal(libc::SIGKILL),
        "sigterm" => signal(libc::SIGTERM),
        "sigint" => signal(libc::SIGINT),
        "disk-full" => FILES.store(1, Ordering::SeqCst),
        "read-only" => FILES.store(2, Ordering::SeqCst),
        "disconnect" => return Injected::Disconnect { after_ms: delay },
        "fail" => return Injected::Fail,
        "pause" => pause(point),
        _ => {}
    }
    Injected::Nothing
}

/// Waits, at most a minute, for the test to remove the pause file after its fault.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
fn pause(point: &str) {
    let Some(file) = std::env::var_os("TENANTGATE_FAULT_PAUSE") else {
        return;
    };
    if std::fs::write(&file, point).is_err() {
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::path::Path::new(&file).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}
