//! The reversibility pass of a rehearsal: for every migration, on the database as the
//! rehearsal left it (fixture rows included once loaded), up → down → the schema must
//! read exactly as before the up, and every table must hold the rows it held (the same
//! number, and the same values: digests of its rows and of each column), then up again. A migration that cannot be reversed without loss says so in its file
//! (`-- tenantgate:irreversible: reason`) or, when the file is locked, in the
//! configuration (`[[acknowledgements]] rule = "irreversible"`), and is then reported as
//! such, not skipped. Migrations of the baseline are not reversed (adopted history).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sqlx::migrate::Migration;
use tenantgate::Backend;
use tenantgate::checks::{CheckOutcome, Failure};
use tenantgate::config::{Acknowledgement, Config};
use tenantgate::db::{Conn, Fingerprint, Scope, Writes};
use tenantgate::schema::Schema;

use super::errors::apply_failure;
use crate::lint::{holds_no_statement, irreversible_reason_in};
use crate::migration_set::MigrationSet;

/// Lines of a schema diff shown in a failure; the rest is counted.
const DIFF_LINES: usize = 60;

/// The schema text, the row count of every table, and what every table holds (digests of
/// its rows and of each column's values).
pub struct State {
    /// The schema as read, for the rules that judge the step too.
    pub read: Schema,
    schema: String,
    contents: BTreeMap<String, Fingerprint>,
    /// By table: its columns and their types, the schema's types, and the stamp of its
    /// rows ([`Conn::row_stamps`]); a table whose key is unchanged holds what it held.
    keys: BTreeMap<String, String>,
    /// The [`Writes`] mark taken as this state was read.
    mark: Option<u64>,
    /// Every table's row count and stamp ([`Conn::row_stamps`]).
    stamps: BTreeMap<String, (i64, Option<String>)>,
    /// What the read saw, so that the next one reads again only the tables that changed
    /// ([`Schema::read_changed`]).
    marks: tenantgate::schema::Marks,
}

impl State {
    /// Reads the database's state. The digests of a table whose rows and columns are
    /// unchanged since `previous` (read on this connection, which alone wrote since;
    /// `writes` tracks what it wrote) are taken from it rather than computed again: most
    /// migrations touch a table or two.
    pub async fn read(
        conn: &mut Conn,
        migrations_table: &str,
        previous: Option<&State>,
        writes: Option<&Writes>,
    ) -> Result<State, Failure> {
        let mark = writes.map(Writes::mark);
        // Only the tables that changed since `previous` are read again; when none did, the
        // schema and its text are `previous`'s.
        let known = previous.map(|p| (&p.read, &p.marks));
        let (schema, marks) = Schema::read_changed(conn, migrations_table, known)
            .await
            .map_err(|error| Failure::new(format!("introspect the schema: {error:#}")))?;
        let text = match previous {
            Some(previous) if marks.tables_read_again() == Some(0) => previous.schema.clone(),
            _ => schema.render(),
        };
        // The tables written since `previous`; on SQLite every table, when a name written
        // is no table now (a table rebuilt under another name and renamed) or nothing
        // tracked the writes.
        let previous = match conn.backend() {
            Backend::Postgres => previous,
            Backend::Sqlite => previous.filter(|_| writes.is_some()),
        };
        let written: BTreeSet<String> = match (previous.and_then(|p| p.mark), writes) {
            (Some(mark), Some(writes)) => writes.since(mark),
            _ => BTreeSet::new(),
        };
        let stamps =
            Self::stamps(conn, &schema, migrations_table, previous, writes, &written).await?;
        let types = format!("{:?}", schema.objects.types);
        let tables: BTreeSet<String> = schema
            .tables
            .keys()
            .map(String::as_str)
            .chain([migrations_table])
            .map(str::to_lowercase)
            .collect();
        // SQLite: a written name that is no table now may be one rebuilt and renamed.
        // PostgreSQL notes a rename as a write of the table under its new name.
        let previous =
            previous.filter(|_| conn.backend() == Backend::Postgres || written.is_subset(&tables));
        let mut keys = BTreeMap::new();
        let mut contents = BTreeMap::new();
        let mut stale: Vec<&str> = Vec::new();
        for (name, table) in &schema.tables {
            let Some((_, Some(stamp))) = stamps.get(name) else {
                stale.push(name);
                continue;
            };
            let columns: Vec<(&str, &str)> = table
                .columns
                .iter()
                .map(|c| (c.name.as_str(), c.data_type.as_str()))
                .collect();
            let key = format!("{stamp} {columns:?} {types}");
            let kept = previous.and_then(|previous| {
                (previous.keys.get(name) == Some(&key) && !written.contains(&name.to_lowercase()))
                    .then(|| previous.contents.get(name))
                    .flatten()
            });
            match kept {
                Some(fingerprint) => {
                    contents.insert(name.clone(), fingerprint.clone());
                }
                None => stale.push(name),
            }
            keys.insert(name.clone(), key);
        }
        contents.extend(
            conn.fingerprints(&schema, &stale)
                .await
                .map_err(|error| Failure::new(format!("{error:#}")))?,
        );
        Ok(State {
            schema: text,
            read: schema,
            stamps,
            contents,
            keys,
            mark,
            marks,
        })
    }

    /// The row count and stamp of every table of `schema`. On PostgreSQL, with `previous`
    /// read on this connection and every write since noted in `writes`
    /// ([`Conn::apply_tracked`]), those of the tables nothing wrote to are `previous`'s:
    /// counting every table's rows again was a seventy-table query planned anew after
    /// every step, a third of a state's reading time on the server on a long history.
    /// `written`: the tables `writes` noted since `previous` was read.
    async fn stamps(
        conn: &mut Conn,
        schema: &Schema,
        migrations_table: &str,
        previous: Option<&State>,
        writes: Option<&Writes>,
        written: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, (i64, Option<String>)>, Failure> {
        let failed = |error: anyhow::Error| Failure::new(format!("{error:#}"));
        let known = match (conn.backend(), previous, writes) {
            (Backend::Postgres, Some(previous), Some(writes)) => previous
                .mark
                .filter(|mark| !writes.everything_since(*mark))
                .map(|_| previous),
            _ => None,
        };
        let Some(previous) = known else {
            return conn
                .row_stamps(&Scope::Database, Some(migrations_table))
                .await
                .map_err(failed);
        };
        let mut stamps = BTreeMap::new();
        let mut unknown = Vec::new();
        for name in schema.tables.keys() {
            match previous.stamps.get(name) {
                Some(stamp) if !written.contains(&name.to_lowercase()) => {
                    stamps.insert(name.clone(), stamp.clone());
                }
                _ => unknown.push(name.clone()),
            }
        }
        stamps.extend(conn.row_stamps_of(&unknown).await.map_err(failed)?);
        Ok(stamps)
    }

    /// How many rows `table` held.
    fn rows(&self, table: &str) -> Option<i64> {
        self.stamps.get(table).map(|(rows, _)| *rows)
    }

    /// Tables whose rows are as many as in `before` but not the same, with the columns
    /// whose values changed.
    fn changed_contents(&self, before: &State) -> Vec<String> {
        before
            .contents
            .iter()
            .filter_map(|(table, was)| {
                let now = self.contents.get(table)?;
                if now.rows == was.rows || self.rows(table) != before.rows(table) {
                    return None;
                }
                let columns = now.changed_columns(was);
                Some(if columns.is_empty() {
                    format!("`{table}`: its rows hold the same values per column, but not in the same rows")
                } else {
                    format!(
                        "`{table}`: column(s) {} no longer hold the values they held",
                        columns
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect()
    }
}

/// What the pass found over every migration.
#[derive(Default)]
pub struct Pass {
    /// Migrations the pass judged (every one it was asked to reverse, whether its down
    /// ran or not; irreversible ones are notes, not counted).
    pub judged: usize,
    pub failures: Vec<Failure>,
    pub notes: Vec<String>,
    /// Acknowledgements in the configuration that a migration turned out not to need.
    pub unused_acknowledgements: Vec<Failure>,
    /// Time spent reading states, reverting and re-applying.
    pub time: Duration,
    /// Which tables the rehearsal's connection wrote, for [`State::read`].
    pub writes: Option<Writes>,
}

impl Pass {
    pub fn outcome(&self) -> CheckOutcome {
        CheckOutcome {
            name: "reversibility",
            checked: self.judged,
            failures: self
                .failures
                .iter()
                .chain(&self.unused_acknowledgements)
                .cloned()
                .collect(),
        }
    }

    /// Reverses `migration` (just applied; `before` is the state before it) and applies it
    /// again. Only a failure to re-apply stops the rehearsal.
    pub async fn reverse(
        &mut self,
        conn: &mut Conn,
        set: &MigrationSet,
        config: &Config,
        migrations_table: &str,
        migration: &Migration,
        before: &State,
    ) -> Result<(), Failure> {
        let up_file = set.file(migration.version, true);
        let down_file = set.file(migration.version, false);
        let stem = set.stem(migration.version);
        let down = set.down_of(migration.version);
        let acknowledged = config
            .acknowledged(
                Acknowledgement::IRREVERSIBLE,
                set.backend,
                migration.version,
                &stem,
            )
            .next()
            .map(|ack| {
                format!(
                    "{} — acknowledged in {}",
                    ack.reason,
                    crate::display_path(&config.path)
                )
            });
        let irreversible = acknowledged.clone().or_else(|| {
            irreversible_reason_in(migration.sql.as_str(), down.map(|d| d.sql.as_str()))
        });
        let Some(down) = down.filter(|d| !holds_no_statement(d.sql.as_str())) else {
            match irreversible {
                Some(reason) => self.notes.push(format!(
                    "reversibility: {up_file} is marked irreversible ({reason}); not reversed"
                )),
                None => {
                    self.judged += 1;
                    self.failures.push(
                        Failure::new(format!(
                            "{up_file} has no down migration (or an empty one), so it cannot be rolled back"
                        ))
                        .fix(format!("write {down_file} to restore the schema and data as before; if that is impossible without loss, mark it `-- tenantgate:irreversible: <reason>` (or, for a locked file, acknowledge it in {})", crate::display_path(&config.path)))
                        .in_file(up_file.clone()),
                    )
                }
            }
            return Ok(());
        };
        self.judged += 1;
        if let Err(error) = conn
            .apply_tracked(migrations_table, down, false, self.writes.as_ref())
            .await
        {
            // sqlx reverts in a transaction: the up migration is still applied.
            let mut failure = apply_failure(&down_file, down.sql.as_str(), error);
            failure.problem =
                failure
                    .problem
                    .replacen("migration failed", "down migration failed", 1);
            failure.fix = Some(format!(
                "the down migration must run right after its up migration; fix {down_file}"
            ));
            self.failures.push(failure);
            return Ok(());
        }
        let after = State::read(conn, migrations_table, Some(before), self.writes.as_ref()).await?;
        let mut lossless = true;
        if after.schema != before.schema {
            lossless = false;
            self.failures.push(
                Failure::new(format!(
                    "{down_file} does not restore the schema as it was before {up_file}:\n{}",
                    diff(&before.schema, &after.schema)
                ))
                .fix("make the down migration undo exactly what the up migration does")
                .in_file(down_file.clone()),
            );
        }
        let lost: Vec<String> = before
            .stamps
            .iter()
            .filter_map(|(table, (rows, _))| {
                let now = after.rows(table);
                (now != Some(*rows)).then(|| match now {
                    Some(now) => format!(
                        "`{table}` had {rows} rows before the up migration, {now} after the down"
                    ),
                    None => format!("`{table}` ({rows} rows) is gone after the down"),
                })
            })
            .chain(after.changed_contents(before))
            .collect();
        if !lost.is_empty() {
            lossless = false;
            match &irreversible {
                Some(reason) => self.notes.push(format!(
                    "reversibility: {down_file} loses data, as its irreversible marker says ({reason}): {}",
                    lost.join("; ")
                )),
                None => self.failures.push(
                    Failure::new(format!(
                        "{down_file} loses data that {up_file} kept: {}",
                        lost.join("; ")
                    ))
                    .fix("move the data back before dropping what holds it; if that cannot be done, mark the migration `-- tenantgate:irreversible: <reason>`")
                    .in_file(down_file.clone()),
                ),
            }
        }
        if lossless && let Some(reason) = acknowledged {
            self.unused_acknowledgements.push(
                Failure::new(format!(
                    "{stem} is acknowledged as irreversible ({reason}), but its down migration restores the schema and every row"
                ))
                .fix(format!(
                    "remove the `irreversible` acknowledgement of {stem} from {}",
                    crate::display_path(&config.path)
                ))
                .in_file(crate::display_path(&config.path)),
            );
        }
        conn.apply_tracked(migrations_table, migration, true, self.writes.as_ref())
            .await
            .map_err(|error| apply_failure(&up_file, migration.sql.as_str(), error))
            .map_err(|mut failure| {
                failure.problem = format!(
                    "{} (applying it again after its down migration)",
                    failure.problem
                );
                failure
            })?;
        Ok(())
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
