//! The schema snapshot: the introspected text asserted with insta, beside the migrations.
//!
//! insta reports a mismatch by printing the diff and panicking; the harness is a binary
//! with more to report, so the panic is caught and turned into a failed check. The usual
//! insta flow holds: locally a `.snap.new` for `cargo insta review`; with `CI=true` nothing
//! is written; with `INSTA_UPDATE=always` (`--accept`) the snapshot is overwritten.

use std::cell::Cell;
use std::path::Path;
use std::sync::Once;

use app::Backend;

thread_local! {
    static ASSERTING: Cell<bool> = const { Cell::new(false) };
}

/// Asserts `schema_text` against `<snapshot_dir>/<backend>.snap`; the error is insta's message.
pub fn assert_schema(
    snapshot_dir: &Path,
    backend: Backend,
    schema_text: &str,
) -> Result<(), String> {
    silence_snapshot_panics();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(snapshot_dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(format!(
        "Schema of the {backend} database after every migration. Written by `cargo xtask migrate-test`; \
         after an intended change, accept it with `cargo insta review` or `cargo xtask migrate-test --accept`."
    ));
    ASSERTING.with(|flag| flag.set(true));
    let result = settings.bind(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            insta::assert_snapshot!(backend.name(), schema_text);
        }))
    });
    ASSERTING.with(|flag| flag.set(false));
    result.map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "snapshot assertion failed".to_string())
    })
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
