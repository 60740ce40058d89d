//! The post-migration checks the teams in our story ran by hand, run on the rehearsed
//! database: each returns every failure it finds, with the table, the file and the fix. A
//! check that does not apply (no fixture, no default tenant) says so in a note.

use std::collections::{BTreeMap, BTreeSet};

use tenantgate::checks::{CheckOutcome, Failure};
use tenantgate::config::Config;
use tenantgate::db::{Conn, Scope, literal, quote, quote_table};
use tenantgate::rules::{RoleFacts, RuleInput, static_rules, tenants_key, tenants_key_type};
use tenantgate::schema::Schema;
use tenantgate::{Backend, TenantValue};

use crate::rehearsal::Seeded;

/// What the checks need to know about the rehearsal.
pub struct Context<'a> {
    pub config: &'a Config,
    pub schema: &'a Schema,
    /// The row counts right after the fixture, when there was one.
    pub seeded: Option<&'a Seeded>,
    /// Which migration file created each table.
    pub created_by: &'a BTreeMap<String, String>,
    /// The migration files applied after the fixture.
    pub after_seed: Vec<String>,
    /// Tables the migrations after the fixture declare they move rows of, and where.
    pub moved: &'a BTreeMap<String, String>,
}

impl Context<'_> {
    /// Tenant-owned tables with their tenant column present (the others fail
    /// `tenant-column`), and that column.
    fn tables_with_tenant_column(&self) -> Vec<(&str, &str)> {
        tenantgate::rules::tenant_owned(self.config, self.schema)
            .filter_map(|(name, table, ownership)| match ownership {
                tenantgate::rules::Ownership::Column(column) if table.column(column).is_some() => {
                    Some((name, column))
                }
                _ => None,
            })
            .collect()
    }

    /// A failure about `table`, attributed to the migration file that created it.
    fn failure_in(&self, table: &str, problem: String, fix: String) -> Failure {
        Failure::new(problem)
            .fix(fix)
            .about(table)
            .in_optional_file(self.created_by.get(table).cloned())
    }

    fn migrations_after_seed(&self) -> String {
        match (self.after_seed.first(), self.after_seed.last()) {
            (Some(first), Some(last)) if first != last => format!("{first} … {last}"),
            (Some(only), _) => only.clone(),
            _ => "no migration".to_string(),
        }
    }

    fn seed_file(&self) -> String {
        match self.config.fixtures.as_ref().and_then(|f| f.seed.as_ref()) {
            Some(seed) => crate::display_path(seed),
            None => "the generated rows".to_string(),
        }
    }

    /// A tenant to filter by: the default one, else any the tenants table holds.
    async fn some_tenant(&self, conn: &mut Conn) -> Option<TenantValue> {
        if let Some(default) = &self.config.tenancy.default_tenant_id {
            return Some(default.clone());
        }
        let (name, _) = self.schema.table(&self.config.tenancy.tenants_table)?;
        let key = tenants_key(self.config, self.schema)?;
        conn.texts(&format!(
            "SELECT CAST({} AS TEXT) FROM {} LIMIT 1",
            quote(key),
            quote_table(name)
        ))
        .await
        .ok()?
        .pop()
        .map(TenantValue::new)
    }
}

/// Runs every check; a check that cannot run (a query fails) reports that as its
/// failure. Returns the outcomes and the notes on checks that do not apply.
pub async fn run_all(conn: &mut Conn, cx: &Context<'_>) -> (Vec<CheckOutcome>, Vec<String>) {
    let mut notes = Vec::new();
    let mut outcomes = static_isolation_rules(conn, cx.config, cx.schema, cx.created_by).await;
    if conn.backend() == Backend::Postgres {
        match &cx.config.tenancy.isolation {
            tenantgate::config::Isolation::WithoutRowLevelSecurity { reason } => notes.push(format!(
                "row-level security rules ({}): not applicable: row_level_security = false ({reason})",
                tenantgate::rules::ROW_LEVEL_SECURITY_RULES.join(", ")
            )),
            tenantgate::config::Isolation::RowLevelSecurity(_) => {}
        }
    } else {
        notes.push(format!(
            "row-level security rules ({}): not applicable: SQLite has no row-level security",
            tenantgate::rules::ROW_LEVEL_SECURITY_RULES.join(", ")
        ));
    }
    outcomes.push(no_null_tenant(conn, cx).await);
    match cx.seeded {
        Some(seeded) => {
            outcomes.push(rows_preserved(conn, cx, seeded).await);
            match default_tenant_backfill(conn, cx, seeded).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(note) => notes.push(note),
            }
        }
        None => notes.push(
            "row-counts, default-tenant: not applicable: no [fixtures] (no rows existed before the migrations ran; add a fixture and its `seed_at_version` to check that migrations keep every row)".to_string(),
        ),
    }
    outcomes.push(tenant_query_plan(conn, cx).await);
    outcomes.push(foreign_key_integrity(conn, cx).await);
    (outcomes, notes)
}

/// The static tenant-isolation rules; on PostgreSQL with row-level security they also
/// read the app role's facts.
pub async fn static_isolation_rules(
    conn: &mut Conn,
    config: &Config,
    schema: &Schema,
    created_by: &BTreeMap<String, String>,
) -> Vec<CheckOutcome> {
    let role = match (&mut *conn, config.row_level_security()) {
        (Conn::Postgres(c), Some(rls)) => {
            match RoleFacts::read(c, &rls.app_role, &Scope::Database).await {
                Ok(role) => Some(role),
                Err(error) => {
                    let mut outcome = CheckOutcome::new("app-role");
                    outcome.failures.push(Failure::new(format!(
                        "read the attributes of role `{}`: {error:#}",
                        rls.app_role
                    )));
                    return vec![outcome];
                }
            }
        }
        _ => None,
    };
    let config_file = crate::display_path(&config.path);
    static_rules(&RuleInput {
        config,
        schema,
        backend: conn.backend(),
        role: role.as_ref(),
        created_by,
        config_file: &config_file,
    })
}

/// Zero rows with a NULL tenant.
async fn no_null_tenant(conn: &mut Conn, cx: &Context<'_>) -> CheckOutcome {
    let mut outcome = CheckOutcome::new("no-null-tenant");
    for (table, column) in cx.tables_with_tenant_column() {
        outcome.checked += 1;
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} IS NULL",
            quote_table(table),
            quote(column)
        );
        match conn.count(&sql).await {
            Ok(0) => {}
            Ok(nulls) => outcome.failures.push(cx.failure_in(
                table,
                format!("table `{table}` has {nulls} rows with a NULL `{column}`"),
                format!("backfill them (UPDATE {table} SET {column} = … WHERE {column} IS NULL) before the column becomes NOT NULL"),
            )),
            Err(error) => outcome.failures.push(Failure::new(format!(
                "count NULL `{column}` in `{table}`: {error:#}"
            ))),
        }
    }
    outcome
}

/// Every table that held fixture rows holds as many after the remaining migrations,
/// unless a migration declares it moves them.
async fn rows_preserved(conn: &mut Conn, cx: &Context<'_>, seeded: &Seeded) -> CheckOutcome {
    let mut outcome = CheckOutcome::new("row-counts");
    outcome.checked = seeded.counts.len();
    for (table, before) in &seeded.counts {
        if cx.moved.contains_key(table) {
            continue;
        }
        if cx.schema.table(table).is_none() {
            if *before > 0 {
                outcome.failures.push(
                    Failure::new(format!(
                        "table `{table}` held {before} fixture rows and no longer exists after {}",
                        cx.migrations_after_seed()
                    ))
                    .fix("keep the table, or move its rows to a new table in the same migration (and declare it: -- tenantgate:moves-data(table): reason)")
                    .about(table.clone()),
                );
            }
            continue;
        }
        match conn
            .count(&format!("SELECT count(*) FROM {}", quote_table(table)))
            .await
        {
            Ok(after) if after == *before => {}
            Ok(after) => outcome.failures.push(
                Failure::new(format!(
                    "table `{table}` had {before} rows after the fixture ({}) and has {after} after {}: {} rows {}",
                    cx.seed_file(),
                    cx.migrations_after_seed(),
                    before.abs_diff(after),
                    if after < *before { "lost" } else { "appeared" }
                ))
                .fix(format!("the migration that rebuilds or backfills `{table}` must carry every row over; if it moves rows on purpose, declare it in the up file (-- tenantgate:moves-data({table}): reason) or, for a locked file, as a `moves-data` acknowledgement"))
                .about(table.clone()),
            ),
            Err(error) => outcome.failures.push(Failure::new(format!(
                "count the rows of `{table}`: {error:#}"
            ))),
        }
    }
    outcome
}

/// Every row that existed before the table had a tenant column belongs to the default
/// tenant, and a query filtered by that tenant returns exactly those rows. `Err` is the
/// note saying why it does not apply.
async fn default_tenant_backfill(
    conn: &mut Conn,
    cx: &Context<'_>,
    seeded: &Seeded,
) -> Result<CheckOutcome, String> {
    let backfilled: Vec<(&str, &str)> = cx
        .tables_with_tenant_column()
        .into_iter()
        .filter(|(table, _)| seeded.before_tenancy.contains(*table))
        .collect();
    if backfilled.is_empty() {
        return Err("default-tenant: not applicable: every table the fixture filled already had its tenant column (the rows carry their own tenants)".to_string());
    }
    let Some(default) = &cx.config.tenancy.default_tenant_id else {
        return Err(format!(
            "default-tenant: not applicable: tenancy.default_tenant_id is not set, although {} gained a tenant column after the fixture",
            backfilled
                .iter()
                .map(|(t, _)| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let mut outcome = CheckOutcome::new("default-tenant");
    let backend = conn.backend();
    let key_type = tenants_key_type(cx.config, cx.schema);
    let literal = key_type.literal(backend, default);
    let config_file = crate::display_path(&cx.config.path);
    if let (Some((tenants, _)), Some(key)) = (
        cx.schema.table(&cx.config.tenancy.tenants_table),
        tenants_key(cx.config, cx.schema),
    ) {
        let exists = conn
            .count(&format!(
                "SELECT count(*) FROM {} WHERE {} = {literal}",
                quote_table(tenants),
                quote(key)
            ))
            .await;
        outcome.checked += 1;
        match exists {
            Ok(0) => {
                outcome.failures.push(
                    Failure::new(format!(
                        "the default tenant {default} (tenancy.default_tenant_id) does not exist in `{tenants}` after the migrations, so the rows that predate tenancy belong to no tenant"
                    ))
                    .fix(format!("insert the default tenant in the migration that creates `{tenants}`, or correct tenancy.default_tenant_id in {config_file}"))
                    .in_file(config_file.clone()),
                );
                return Ok(outcome);
            }
            Ok(_) => {}
            Err(error) => outcome.failures.push(Failure::new(format!(
                "look for the default tenant in `{tenants}`: {error:#}"
            ))),
        }
    }
    for (table, column) in backfilled {
        let Some(before) = seeded.counts.get(table) else {
            continue;
        };
        outcome.checked += 1;
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} = {literal}",
            quote_table(table),
            quote(column)
        );
        match conn.count(&sql).await {
            Ok(owned) if owned == *before => {}
            Ok(owned) => outcome.failures.push(cx.failure_in(
                table,
                format!("table `{table}`: {before} rows existed before tenancy, but a query for the default tenant ({column} = {default}) returns {owned}"),
                format!("the backfill must set `{column}` = {default} on every pre-existing row"),
            )),
            Err(error) => outcome.failures.push(Failure::new(format!(
                "query `{table}` for the default tenant: {error:#}"
            ))),
        }
    }
    Ok(outcome)
}

/// A tenant-filtered query can use an index (EXPLAIN).
async fn tenant_query_plan(conn: &mut Conn, cx: &Context<'_>) -> CheckOutcome {
    let mut outcome = CheckOutcome::new("tenant-query-plan");
    let backend = conn.backend();
    let key_type = tenants_key_type(cx.config, cx.schema);
    let tenant = cx
        .some_tenant(conn)
        .await
        .unwrap_or_else(|| key_type.new_values(&[], 1).remove(0));
    let literal = key_type.literal(backend, &tenant);
    // The fixture's tables are small enough that PostgreSQL would rightly scan them;
    // what matters is that an index can serve the filter, so sequential scans are priced out.
    if let Conn::Postgres(_) = conn
        && let Err(error) = conn.execute("SET enable_seqscan = off").await
    {
        outcome.failures.push(Failure::new(format!(
            "disable sequential scans for EXPLAIN: {error}"
        )));
    }
    for (table, column) in cx.tables_with_tenant_column() {
        outcome.checked += 1;
        let query = format!(
            "SELECT * FROM {} WHERE {} = {literal}",
            quote_table(table),
            quote(column)
        );
        let plan = match conn {
            Conn::Postgres(_) => postgres_plan(conn, &query, table, column).await,
            Conn::Sqlite(c) => sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(
                format!("EXPLAIN QUERY PLAN {query}"),
            ))
            .fetch_all(c)
            .await
            .map(|rows| {
                rows.into_iter()
                    .map(|row| row.3)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .map_err(anyhow::Error::from),
        };
        match plan {
            Ok(plan)
                if plan.contains("Index")
                    || plan.contains("USING INDEX")
                    || plan.contains("USING COVERING INDEX")
                    || plan.contains("USING PRIMARY KEY") => {}
            Ok(plan) => outcome.failures.push(cx.failure_in(
                table,
                format!(
                    "a query of `{table}` filtered by `{column}` cannot use an index:\n    {}",
                    plan.replace('\n', "\n    ")
                ),
                format!("add an index leading with `{column}`"),
            )),
            Err(error) => outcome.failures.push(Failure::new(format!(
                "EXPLAIN a tenant query of `{table}`: {error:#}"
            ))),
        }
    }
    if let Conn::Postgres(_) = conn {
        let _ = conn.execute("RESET enable_seqscan").await;
    }
    outcome
}

/// How long a tenant index that older transactions keep from the planner is waited for.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// PostgreSQL's plan of `query` (on `table`, filtered by `column`). An index built while a
/// transaction older than it ran anywhere on the server — a HOT chain it found broken,
/// `pg_index.indcheckxmin` — is left out of every plan until those transactions end: a
/// second rehearsal database applying a migration, another run on a shared server. Such an
/// index leading with the column is waited for, not reported missing.
async fn postgres_plan(
    conn: &mut Conn,
    query: &str,
    table: &str,
    column: &str,
) -> anyhow::Result<String> {
    let explain = format!("EXPLAIN {query}");
    let waiting = format!(
        "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = {}::regclass AND i.indcheckxmin AND i.indisvalid AND a.attname = {}",
        literal(&quote_table(table)),
        literal(column)
    );
    let deadline = std::time::Instant::now() + INDEX_WAIT;
    loop {
        let plan = conn.texts(&explain).await?.join("\n");
        if plan.contains("Index") || conn.count(&waiting).await? == 0 {
            return Ok(plan);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(format!(
                "{plan}\n(an index leading with `{column}` exists, but transactions older than it still ran on the server after {} s, and the planner leaves it out until they end)",
                INDEX_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A row of `PRAGMA foreign_key_check`: table, rowid, parent, foreign key id.
type ForeignKeyViolation = (String, Option<i64>, String, i64);

/// No orphan rows and no unvalidated foreign keys.
async fn foreign_key_integrity(conn: &mut Conn, cx: &Context<'_>) -> CheckOutcome {
    let mut outcome = CheckOutcome::new("foreign-keys");
    match conn {
        Conn::Sqlite(c) => {
            outcome.checked = cx
                .schema
                .tables
                .values()
                .map(|t| t.foreign_keys.len())
                .sum();
            let rows: Result<Vec<ForeignKeyViolation>, _> = sqlx::query_as(
                "SELECT \"table\", rowid, parent, fkid FROM pragma_foreign_key_check",
            )
            .fetch_all(c)
            .await;
            match rows {
                Ok(rows) => {
                    let mut by_table: BTreeMap<(String, String), usize> = BTreeMap::new();
                    for (table, _, parent, _) in rows {
                        *by_table.entry((table, parent)).or_default() += 1;
                    }
                    for ((table, parent), orphans) in by_table {
                        outcome.failures.push(cx.failure_in(
                            &table,
                            format!("PRAGMA foreign_key_check: {orphans} rows of `{table}` reference missing rows of `{parent}`"),
                            format!("the migration that rebuilt `{table}` or `{parent}` must carry the referenced rows (and, for composite keys, the same tenant) over"),
                        ));
                    }
                }
                Err(error) => outcome
                    .failures
                    .push(Failure::new(format!("PRAGMA foreign_key_check: {error}"))),
            }
        }
        Conn::Postgres(_) => {
            let tables: BTreeSet<&String> = cx.schema.tables.keys().collect();
            for table in tables {
                let definition = &cx.schema.tables[table];
                for fk in &definition.foreign_keys {
                    outcome.checked += 1;
                    let name = fk.name.as_deref().unwrap_or("?");
                    if !fk.validated {
                        outcome.failures.push(cx.failure_in(
                            table,
                            format!("foreign key `{name}` on `{table}` is NOT VALID: existing rows were never checked"),
                            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name} in a later migration"),
                        ));
                    }
                    match conn.count(&fk.orphans_sql(table)).await {
                        Ok(0) => {}
                        Ok(orphans) => outcome.failures.push(cx.failure_in(
                            table,
                            format!("{orphans} rows of `{table}` have no parent in `{}` through `{name}`", fk.referenced_table),
                            "repair or delete the orphans before adding the constraint".to_string(),
                        )),
                        Err(error) => outcome.failures.push(Failure::new(format!(
                            "look for orphans of `{name}` on `{table}`: {error:#}"
                        ))),
                    }
                }
            }
        }
    }
    outcome
}
