//! Verification of a live database: it is at the expected version, its schema equals the
//! snapshot embedded for that version (drift), the tenancy rules the gate checked hold, and
//! every foreign key is satisfied. `app verify` runs this alone; `app migrate` runs it after
//! applying, with row counts compared against the backup's.

use std::collections::{BTreeMap, BTreeSet};

use super::Source;
use super::backup::Counts;
use super::report::Check;
use super::validate::read_applied;
use crate::config::Config;
use crate::db::{Conn, Scope};
use crate::rules::{RoleFacts, RuleInput, static_rules};
use crate::schema::Schema;

/// Where a database stands against the source, as the `version` check found it.
pub struct Position {
    /// The highest successfully applied version.
    pub version: Option<i64>,
    /// The version it should be at: the target, or the newest embedded one.
    pub expected: Option<i64>,
    /// Exactly the source's migrations up to `expected` are applied.
    pub at_expected: bool,
}

impl Position {
    /// Whether the tenancy rules apply at this version.
    pub fn isolated(&self, config: &Config) -> bool {
        self.version
            .is_some_and(|v| v >= config.tenancy.isolated_from_version)
    }
}

/// The checks that depend on the schema alone: drift from the embedded snapshot, and the
/// tenancy rules (with the app role's facts, on PostgreSQL). Tenant schemas with the same
/// text share one run of them.
pub fn structure_checks(
    source: &Source<'_>,
    config: &Config,
    schema: &Schema,
    schema_text: &str,
    position: &Position,
    role: Option<&RoleFacts>,
) -> Vec<Check> {
    let latest = source.ups().map(|m| m.version).max();
    let mut checks = Vec::new();
    checks.push(match source.snapshot {
        Some(_) if position.expected != latest => Check::skip(
            "drift",
            "the embedded snapshot is of the newest version; this run targets an older one",
        ),
        Some(_) if !position.at_expected => Check::skip(
            "drift",
            "the database is not at the snapshot's version (see `version`)",
        ),
        Some(snapshot) => drift(snapshot_body(snapshot), schema_text, source),
        None => Check::skip("drift", "no schema snapshot was given for these migrations"),
    });
    checks.push(if !position.isolated(config) {
        Check::skip(
            "tenancy",
            format!(
                "tenant isolation starts at {:04}; the database is at {}",
                config.tenancy.isolated_from_version,
                super::report::version_text(position.version)
            ),
        )
    } else {
        let created_by = BTreeMap::new();
        let outcomes = static_rules(&RuleInput {
            config,
            schema,
            backend: source.backend,
            role,
            created_by: &created_by,
            config_file: "the embedded tenantgate.toml",
        });
        let failures: Vec<String> = outcomes
            .iter()
            .flat_map(|o| {
                o.failures.iter().map(move |f| {
                    let fix = f
                        .fix
                        .as_deref()
                        .map(|fix| format!(" (fix: {fix})"))
                        .unwrap_or_default();
                    format!("{}: {}{fix}", o.name, f.problem)
                })
            })
            .collect();
        if failures.is_empty() {
            Check::pass(
                "tenancy",
                format!(
                    "{} isolation rules passed on {} tables",
                    outcomes.len(),
                    schema.tables.len()
                ),
            )
        } else {
            Check::fail("tenancy", failures.join("\n"))
        }
    });
    checks
}

/// What verification found besides its checks: the live schema's text, for comparing
/// tenant schemas with one another and a database with its state before a run.
pub struct Verified {
    pub checks: Vec<Check>,
    pub schema_text: String,
    pub version: Option<i64>,
}

/// The body of an insta snapshot file (without its `---` header).
pub fn snapshot_body(snapshot: &str) -> &str {
    if let Some(rest) = snapshot.strip_prefix("---\n")
        && let Some(end) = rest.find("\n---\n")
    {
        return &rest[end + 5..];
    }
    snapshot
}

/// Reads the live schema (the migrations table left out) and its text.
pub async fn read_schema(
    conn: &mut Conn,
    source: &Source<'_>,
    scope: &Scope,
) -> anyhow::Result<Schema> {
    Schema::read(conn, &source.migrator.table_name, scope).await
}

/// Runs every check. `target` is the version the database should be at (the newest
/// embedded one when `None`); `full` adds the foreign-key scan.
pub async fn verify(
    conn: &mut Conn,
    source: &Source<'_>,
    config: &Config,
    target: Option<i64>,
    scope: &Scope,
    full: bool,
) -> anyhow::Result<Verified> {
    let mut checks = Vec::new();
    let applied = read_applied(conn, &source.migrator.table_name)
        .await?
        .unwrap_or_default();
    let latest = source.ups().map(|m| m.version).max();
    let expected = target.or(latest);
    let versions: BTreeSet<i64> = applied
        .iter()
        .filter(|a| a.success)
        .map(|a| a.version)
        .collect();
    let version = versions.last().copied();
    let missing: Vec<String> = source
        .ups()
        .filter(|m| expected.is_some_and(|e| m.version <= e) && !versions.contains(&m.version))
        .map(|m| source.file_of(m.version))
        .collect();
    let mismatched: Vec<String> = applied
        .iter()
        .filter(|a| {
            source
                .ups()
                .any(|m| m.version == a.version && *m.checksum != *a.checksum)
        })
        .map(|a| source.file_of(a.version))
        .collect();
    let unknown: Vec<String> = applied
        .iter()
        .filter(|a| !source.ups().any(|m| m.version == a.version) || !a.success)
        .map(|a| format!("{:04}", a.version))
        .collect();
    let at_expected = missing.is_empty() && mismatched.is_empty() && unknown.is_empty();
    checks.push(if at_expected {
        Check::pass(
            "version",
            format!("at {} as expected", super::report::version_text(version)),
        )
    } else {
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!(
                "{} not applied; run `app migrate`",
                missing.join(", ")
            ));
        }
        if !mismatched.is_empty() {
            problems.push(format!(
                "{} applied from a different build",
                mismatched.join(", ")
            ));
        }
        if !unknown.is_empty() {
            problems.push(format!(
                "{} recorded but failed or unknown to this build",
                unknown.join(", ")
            ));
        }
        Check::fail(
            "version",
            format!(
                "expected {}, found {}: {}",
                super::report::version_text(expected),
                super::report::version_text(version),
                problems.join("; ")
            ),
        )
    });

    let schema = read_schema(conn, source, scope).await?;
    let schema_text = schema.render();
    let position = Position {
        version,
        expected,
        at_expected,
    };
    let role = match (&mut *conn, config.row_level_security()) {
        (Conn::Postgres(pg), Some(rls)) if position.isolated(config) => {
            Some(RoleFacts::read(pg, &rls.app_role, scope).await?)
        }
        _ => None,
    };
    checks.extend(structure_checks(
        source,
        config,
        &schema,
        &schema_text,
        &position,
        role.as_ref(),
    ));

    if full {
        checks.push(foreign_keys(conn, &schema).await?);
    }
    Ok(Verified {
        checks,
        schema_text,
        version,
    })
}

/// Lines of each table's block, from schema text.
fn blocks(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut blocks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("table ") {
            current = Some(name.trim().to_string());
            blocks.entry(name.trim().to_string()).or_default();
        } else if let Some(table) = &current
            && !line.trim().is_empty()
        {
            blocks
                .get_mut(table)
                .expect("inserted above")
                .push(line.to_string());
        }
    }
    blocks
}

/// What `live` has and `expected` lacks, table by table, each line worded with `extra`
/// and `missing` (the runner says "extra"/"missing"; the tenant fan-out "has"/"lacks").
pub fn differences(expected: &str, live: &str, (extra, missing): (&str, &str)) -> Vec<String> {
    let expected = blocks(expected);
    let live = blocks(live);
    let mut differences = Vec::new();
    for (table, lines) in &live {
        match expected.get(table) {
            None => differences.push(format!("{extra} table {table}")),
            Some(wanted) => {
                for line in lines.iter().filter(|l| !wanted.contains(l)) {
                    differences.push(format!("table {table}: {extra} `{}`", line.trim()));
                }
                for line in wanted.iter().filter(|l| !lines.contains(l)) {
                    differences.push(format!("table {table}: {missing} `{}`", line.trim()));
                }
            }
        }
    }
    for table in expected.keys().filter(|t| !live.contains_key(*t)) {
        differences.push(format!("{missing} table {table}"));
    }
    differences
}

/// Compares live schema text with the snapshot, table by table: what is extra, what is
/// missing.
pub fn drift(expected: &str, live: &str, source: &Source<'_>) -> Check {
    let differences = differences(expected, live, ("extra", "missing"));
    if differences.is_empty() {
        Check::pass(
            "drift",
            format!("{} tables equal the embedded snapshot", blocks(live).len()),
        )
    } else {
        Check::fail(
            "drift",
            format!(
                "the live schema differs from the snapshot {} (changed by hand, or by another build):\n{}\n\
                 fix: undo the manual change, or capture it in a new migration",
                source.snapshot_name,
                differences.join("\n")
            ),
        )
    }
}

/// Every foreign key is satisfied (NOT VALID keys, or keys bypassed by a bulk load, can
/// hide orphans).
async fn foreign_keys(conn: &mut Conn, schema: &Schema) -> anyhow::Result<Check> {
    let mut problems = Vec::new();
    let checked: usize;
    match conn {
        Conn::Postgres(pg) => {
            let keys: Vec<(&String, &crate::schema::ForeignKey)> = schema
                .tables
                .iter()
                .flat_map(|(table, definition)| {
                    definition.foreign_keys.iter().map(move |fk| (table, fk))
                })
                .collect();
            checked = keys.len();
            // A hundred keys a round trip: one query a key made this check a dozen
            // round trips per schema, a thousand times over in a tenant fan-out.
            for batch in keys.chunks(100) {
                let sql = format!(
                    "SELECT ARRAY[{}]::bigint[]",
                    batch
                        .iter()
                        .map(|(table, fk)| format!("({})", fk.orphans_sql(table)))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let counts: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut *pg)
                    .await?;
                for ((table, fk), orphans) in batch.iter().zip(counts) {
                    if orphans > 0 {
                        problems.push(format!(
                            "{table} ({}) → {}: {orphans} rows reference no row",
                            fk.columns.join(", "),
                            fk.referenced_table
                        ));
                    }
                }
            }
        }
        Conn::Sqlite(_) => {
            checked = schema.tables.values().map(|t| t.foreign_keys.len()).sum();
            let violations = conn
                .texts("SELECT \"table\" || ' → ' || parent || ': row ' || coalesce(rowid, '?') FROM pragma_foreign_key_check")
                .await?;
            problems.extend(violations);
        }
    }
    Ok(if problems.is_empty() {
        Check::pass("foreign keys", format!("{checked} foreign keys satisfied"))
    } else {
        Check::fail(
            "foreign keys",
            format!(
                "{}\nfix: delete or repair the orphaned rows, then validate the key",
                problems.join("\n")
            ),
        )
    })
}

/// Row counts after a run against before it: a pre-existing table may change only if a
/// migration of the run declares `-- tenantgate:moves-data(table, …): reason`.
pub fn row_counts(
    before: &Counts,
    after: &Counts,
    declared: &BTreeSet<String>,
    migrations_table: &str,
) -> Check {
    let mut changed = Vec::new();
    for (table, count) in before
        .iter()
        .filter(|(t, _)| t.as_str() != migrations_table)
    {
        if declared.contains(table) {
            continue;
        }
        match after.get(table) {
            Some(now) if now == count => {}
            Some(now) => changed.push(format!("{table}: {count} rows before, {now} after")),
            None => changed.push(format!("{table}: {count} rows before, table gone after")),
        }
    }
    if changed.is_empty() {
        Check::pass(
            "row counts",
            format!(
                "{} pre-existing tables kept their rows",
                before.len().saturating_sub(1)
            ),
        )
    } else {
        Check::fail(
            "row counts",
            format!(
                "{}\nfix: if a migration moves data on purpose, declare it in the up file: -- tenantgate:moves-data(table): reason",
                changed.join("\n")
            ),
        )
    }
}
