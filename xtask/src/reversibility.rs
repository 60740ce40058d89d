//! The reversibility pass of a rehearsal: for every migration, on the database as the
//! rehearsal left it (fixture rows included once loaded), up → down → the schema must
//! read exactly as before the up, and every table must hold the rows it held, then up
//! again. A migration that cannot be reversed without loss says so in its file
//! (`-- tenantgate:irreversible: reason`) and is then reported as such, not skipped.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::migrate::{Migrate, MigrateError, Migration};

use crate::checks::{CheckOutcome, Failure};
use crate::db::Conn;
use crate::lint::{holds_no_statement, irreversible_reason_in};
use crate::migration_set::MigrationSet;
use crate::rehearsal::{apply, apply_failure, row_counts};
use crate::schema::Schema;

/// Lines of a schema diff shown in a failure; the rest is counted.
const DIFF_LINES: usize = 60;

/// The schema text and the row count of every table.
pub struct State {
    schema: String,
    counts: BTreeMap<String, i64>,
}

impl State {
    pub async fn read(conn: &mut Conn, migrations_table: &str) -> Result<State, Failure> {
        let schema = Schema::read(conn, migrations_table)
            .await
            .map_err(|error| Failure::new(format!("introspect the schema: {error:#}")))?
            .render();
        let counts = row_counts(conn, migrations_table).await?;
        Ok(State { schema, counts })
    }
}

/// What the pass found over every migration.
#[derive(Default)]
pub struct Pass {
    pub reversed: usize,
    pub failures: Vec<Failure>,
    pub notes: Vec<String>,
    /// Time spent reading states, reverting and re-applying.
    pub time: Duration,
}

impl Pass {
    pub fn outcome(&self) -> CheckOutcome {
        CheckOutcome {
            name: "reversibility",
            checked: self.reversed,
            failures: self.failures.clone(),
        }
    }

    /// Reverses `migration` (just applied; `before` is the state before it) and applies it
    /// again. Only a failure to re-apply stops the rehearsal.
    pub async fn reverse(
        &mut self,
        conn: &mut Conn,
        set: &MigrationSet,
        migration: &Migration,
        before: &State,
    ) -> Result<(), Failure> {
        let table_name = set.migrator.table_name.to_string();
        let up_file = set.file(migration.version, true);
        let down_file = set.file(migration.version, false);
        let down = set.down_of(migration.version);
        let irreversible =
            irreversible_reason_in(migration.sql.as_str(), down.map(|d| d.sql.as_str()));
        let Some(down) = down.filter(|d| !holds_no_statement(d.sql.as_str())) else {
            match irreversible {
                Some(reason) => self.notes.push(format!(
                    "reversibility: {up_file} is marked irreversible ({reason}); not reversed"
                )),
                None => self.failures.push(Failure::in_file(
                    up_file.clone(),
                    format!(
                        "{up_file} has no down migration (or an empty one), so it cannot be rolled back\nfix: write {down_file} to restore the schema and data as before; if that is impossible without loss, mark it `-- tenantgate:irreversible: <reason>`"
                    ),
                )),
            }
            return Ok(());
        };
        if let Err(error) = revert(conn, &table_name, down).await {
            // sqlx reverts in a transaction: the up migration is still applied.
            let mut failure = apply_failure(&down_file, down, error);
            failure.message = format!(
                "{}\nfix: the down migration must run right after its up migration; fix {down_file}",
                failure
                    .message
                    .replace("migration failed", "down migration failed")
            );
            self.failures.push(failure);
            return Ok(());
        }
        self.reversed += 1;
        let after = State::read(conn, &table_name).await?;
        if after.schema != before.schema {
            self.failures.push(Failure::in_file(
                down_file.clone(),
                format!(
                    "{down_file} does not restore the schema as it was before {up_file}:\n{}\nfix: make the down migration undo exactly what the up migration does",
                    diff(&before.schema, &after.schema)
                ),
            ));
        }
        let lost: Vec<String> = before
            .counts
            .iter()
            .filter_map(|(table, rows)| {
                let now = after.counts.get(table).copied();
                (now != Some(*rows)).then(|| match now {
                    Some(now) => format!(
                        "`{table}` had {rows} rows before the up migration, {now} after the down"
                    ),
                    None => format!("`{table}` ({rows} rows) is gone after the down"),
                })
            })
            .collect();
        if !lost.is_empty() {
            match &irreversible {
                Some(reason) => self.notes.push(format!(
                    "reversibility: {down_file} loses data, as its irreversible marker says ({reason}): {}",
                    lost.join("; ")
                )),
                None => self.failures.push(Failure::in_file(
                    down_file.clone(),
                    format!(
                        "{down_file} loses data that {up_file} kept: {}\nfix: move the data back before dropping what holds it; if that cannot be done, mark the migration `-- tenantgate:irreversible: <reason>`",
                        lost.join("; ")
                    ),
                )),
            }
        }
        apply(conn, &table_name, migration)
            .await
            .map_err(|error| apply_failure(&up_file, migration, error))
            .map_err(|mut failure| {
                failure.message = format!(
                    "{} (applying it again after its down migration)",
                    failure.message
                );
                failure
            })?;
        Ok(())
    }
}

async fn revert(
    conn: &mut Conn,
    table_name: &str,
    down: &Migration,
) -> Result<Duration, MigrateError> {
    match conn {
        Conn::Postgres(c) => c.revert(table_name, down).await,
        Conn::Sqlite(c) => c.revert(table_name, down).await,
    }
}

/// A unified diff, before → after, cut at [`DIFF_LINES`] lines.
fn diff(before: &str, after: &str) -> String {
    let text = similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(1)
        .header("before the up migration", "after the down migration")
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    let mut shown = lines[..lines.len().min(DIFF_LINES)].join("\n");
    if lines.len() > DIFF_LINES {
        shown.push_str(&format!("\n… {} more lines", lines.len() - DIFF_LINES));
    }
    shown
}
