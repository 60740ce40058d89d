//! The schema snapshot: the introspected text asserted with insta, beside the migrations
//! (`<snapshots>/<backend>.snap`, the folder the configuration names).
//!
//! insta's macros record the file they are called from in the snapshot's `source:`
//! header; from a library that path differs between machines (a registry path, a path
//! dependency). So the harness calls the function those macros expand to, with the
//! workspace found at run time and the configuration file as the source: every machine
//! writes the same file. insta reports a mismatch by printing the diff and panicking; the
//! harness has more to report, so the panic is caught and turned into a failed check. The
//! usual insta flow holds: locally a `.snap.new` for `cargo insta review`; with `CI=true`
//! nothing is written; with `INSTA_UPDATE=always` (`--accept`) the snapshot is overwritten.

use std::cell::Cell;
use std::sync::Once;

use tenantgate::Backend;
use tenantgate::checks::{CheckOutcome, Failure};
use tenantgate::config::Config;

thread_local! {
    static ASSERTING: Cell<bool> = const { Cell::new(false) };
}

/// The PostgreSQL majors this run rehearses (`migrate-test --pg-versions`), for the
/// snapshot header: an accepted snapshot records the majors it was verified on.
static VERIFIED_ON: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();

/// Records the PostgreSQL majors of this run (once per process).
pub fn verified_on(majors: &[u32]) {
    let _ = VERIFIED_ON.set(majors.to_vec());
}

fn verified_on_text(backend: Backend) -> String {
    match (backend, VERIFIED_ON.get()) {
        (Backend::Postgres, Some(majors)) if !majors.is_empty() => {
            let majors: Vec<String> = majors.iter().map(|m| m.to_string()).collect();
            format!(" Verified on PostgreSQL {}.", majors.join(", "))
        }
        _ => String::new(),
    }
}

/// Asserts `schema_text` against `<snapshots>/<backend>.snap` of `config`, as a check.
pub fn check(config: &Config, backend: Backend, schema_text: &str) -> CheckOutcome {
    let snapshot_file = config.migrations.snapshots.join(format!("{backend}.snap"));
    let shown = crate::display_path(&snapshot_file);
    let mut outcome = CheckOutcome::new("schema-snapshot");
    outcome.checked = 1;
    if let Err(message) = assert_schema(config, backend, schema_text) {
        let first = message
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("the snapshot differs")
            .to_string();
        outcome.failures.push(
            Failure::new(format!(
                "the {backend} schema differs from {shown} ({first}; diff above)"
            ))
            .fix("if the change is intended, accept it with `cargo insta review` or `cargo xtask migrate-test --accept` and commit the snapshot")
            .in_file(shown),
        );
    }
    outcome
}

/// Asserts `schema_text` against the snapshot; the error is insta's message.
pub fn assert_schema(config: &Config, backend: Backend, schema_text: &str) -> Result<(), String> {
    silence_snapshot_panics();
    let snapshot_dir = crate::workspace::absolute(&config.migrations.snapshots);
    if let Err(error) = std::fs::create_dir_all(&snapshot_dir) {
        return Err(format!("create {}: {error}", snapshot_dir.display()));
    }
    let workspace = crate::workspace::root();
    let source = crate::workspace::absolute(&config.path);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(&snapshot_dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(format!(
        "Schema of the {backend} database after every migration. Written by `cargo xtask migrate-test`; \
         after an intended change, accept it with `cargo insta review` or `cargo xtask migrate-test --accept`.{}",
        verified_on_text(backend)
    ));
    ASSERTING.with(|flag| flag.set(true));
    let result = settings.bind(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            insta::_macro_support::assert_snapshot(
                (backend.name(), schema_text).into(),
                workspace,
                "migrate_test",
                "tenantgate",
                &source.display().to_string(),
                1,
                "schema",
            )
        }))
    });
    ASSERTING.with(|flag| flag.set(false));
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("{error}")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "snapshot assertion failed".to_string())),
    }
}

/// insta's own diff output is what the user needs; the panic location line is noise.
fn silence_snapshot_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !ASSERTING.with(|flag| flag.get()) {
                previous(info);
            }
        }));
    });
}
