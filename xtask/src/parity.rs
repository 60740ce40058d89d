//! Backend parity: `migrations/postgres` and `migrations/sqlite` carry the same versions
//! under the same names, so that no migration ships that nobody ran on the other database.
//! A migration that belongs to one backend only is listed, with its reason, in the
//! configuration's `[[parity_exemptions]]`.

use app::Backend;

use crate::checks::Failure;
use crate::config::Config;
use crate::folder::Folder;

/// The parity failures that concern `backend`: its migrations the other folder lacks, and
/// exemptions for it that no longer match a file.
pub fn check(config: &Config, backend: Backend, ours: &Folder, theirs: &Folder) -> Vec<Failure> {
    let other = backend.other();
    let exempt = |stem: &str| {
        config
            .parity_exemptions
            .iter()
            .any(|e| e.migration == stem && e.only_in == backend.name())
    };
    let config_file = crate::display_path(&config.path);
    let mut failures = Vec::new();
    for migration in &ours.migrations {
        let stem = migration.stem();
        let file = crate::display_path(&migration.up);
        match theirs.get(migration.version) {
            Some(counterpart) if counterpart.name != migration.name => {
                failures.push(Failure::in_file(
                    file.clone(),
                    format!(
                        "{file} and {} share version {} but not a name\nfix: give both the same name (`git mv`); one change, one name on every backend",
                        crate::display_path(&counterpart.up),
                        migration.version
                    ),
                ));
            }
            Some(_) => {}
            None if exempt(&stem) => {}
            None => failures.push(Failure::in_file(
                file.clone(),
                format!(
                    "{file} has no {other} counterpart in {}: the {other} schema would silently fall behind\nfix: add {stem}.up.sql and .down.sql there (`cargo xtask new-migration` creates both backends' files), or, if it truly concerns {backend} only, exempt it in {config_file}:\n  [[parity_exemptions]]\n  migration = \"{stem}\"\n  only_in = \"{backend}\"\n  reason = \"…\"",
                    crate::display_path(&theirs.dir)
                ),
            )),
        }
    }
    for exemption in config
        .parity_exemptions
        .iter()
        .filter(|e| e.only_in == backend.name())
    {
        let on_ours = ours
            .migrations
            .iter()
            .any(|m| m.stem() == exemption.migration);
        let on_theirs = theirs
            .migrations
            .iter()
            .any(|m| m.stem() == exemption.migration);
        if !on_ours || on_theirs {
            failures.push(Failure::in_file(
                config_file.clone(),
                format!(
                    "the parity exemption for `{}` (only in {backend}) is stale: {}\nfix: remove it from {config_file}",
                    exemption.migration,
                    if on_ours {
                        format!("{other} has it too")
                    } else {
                        format!("{backend} has no such migration")
                    }
                ),
            ));
        }
    }
    failures
}
