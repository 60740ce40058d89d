//! Backend parity: when an app has both a PostgreSQL and a SQLite folder, they carry the
//! same versions under the same names, so that no migration ships that nobody ran on the
//! other database. A migration that belongs to one backend only is listed, with its
//! reason, in the configuration's `[[parity_exemptions]]`; an app whose two histories
//! diverged on purpose turns parity off (`[migrations] parity = false`).

use tenantgate::Backend;
use tenantgate::checks::Failure;
use tenantgate::config::Config;

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
                failures.push(
                    Failure::new(format!(
                        "{file} and {} share version {} but not a name",
                        crate::display_path(&counterpart.up),
                        migration.version
                    ))
                    .fix("give both the same name (`git mv`); one change, one name on every backend")
                    .in_file(file.clone()),
                );
            }
            Some(_) => {}
            None if exempt(&stem) => {}
            None => failures.push(
                Failure::new(format!(
                    "{file} has no {other} counterpart in {}: the {other} schema would silently fall behind",
                    crate::display_path(&theirs.dir)
                ))
                .fix(format!(
                    "add {stem}.up.sql and .down.sql there (`cargo xtask new-migration` creates both backends' files); if it truly concerns {backend} only, exempt it in {config_file}:\n  [[parity_exemptions]]\n  migration = \"{stem}\"\n  only_in = \"{backend}\"\n  reason = \"…\"\nor, if the two histories differ on purpose, set `parity = false` under [migrations]"
                ))
                .in_file(file.clone()),
            ),
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
            failures.push(
                Failure::new(format!(
                    "the parity exemption for `{}` (only in {backend}) is stale: {}",
                    exemption.migration,
                    if on_ours {
                        format!("{other} has it too")
                    } else {
                        format!("{backend} has no such migration")
                    }
                ))
                .fix(format!("remove it from {config_file}"))
                .in_file(config_file.clone()),
            );
        }
    }
    failures
}
