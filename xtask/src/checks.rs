//! The post-migration checks the teams in our story ran by hand, run on the rehearsed
//! database: each returns every failure it finds, with the table, the file and the fix.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::db::{Conn, quote};
use crate::isolation::{RoleFacts, static_rules};
use crate::schema::Schema;

pub use app::checks::{CheckOutcome, Failure};

/// What the checks need to know about the rehearsal.
pub struct Context<'a> {
    pub config: &'a Config,
    pub schema: &'a Schema,
    /// Row counts of every table right after the fixture was loaded.
    pub seeded: &'a BTreeMap<String, i64>,
    /// Which migration file created each table.
    pub created_by: &'a BTreeMap<String, String>,
    pub seed_file: String,
    /// The migration files applied after the fixture.
    pub after_seed: Vec<String>,
}

impl Context<'_> {
    fn tenant_owned_tables(&self) -> impl Iterator<Item = &String> {
        self.schema
            .tables
            .keys()
            .filter(|table| !self.config.is_global(table))
    }

    fn column(&self) -> &str {
        &self.config.tenancy.column
    }

    fn has_tenant_column(&self, table: &str) -> bool {
        self.schema
            .tables
            .get(table)
            .is_some_and(|t| t.column(self.column()).is_some())
    }

    /// Tenant-owned tables that have the tenant column (the others fail `tenant-column`).
    fn tables_with_tenant_column(&self) -> impl Iterator<Item = &String> {
        self.tenant_owned_tables()
            .filter(|table| self.has_tenant_column(table))
    }

    /// A failure about `table`, attributed to the migration file that created it.
    fn failure_in(&self, table: &str, message: String) -> Failure {
        Failure {
            message,
            file: self.created_by.get(table).cloned(),
            line: None,
        }
    }

    fn migrations_after_seed(&self) -> String {
        match (self.after_seed.first(), self.after_seed.last()) {
            (Some(first), Some(last)) if first != last => format!("{first} … {last}"),
            (Some(only), _) => only.clone(),
            _ => "no migration".to_string(),
        }
    }
}

/// Runs every check; a check that cannot run (a query fails) reports that as its failure.
pub async fn run_all(conn: &mut Conn, cx: &Context<'_>) -> Vec<CheckOutcome> {
    let mut outcomes = static_isolation_rules(conn, cx.config, cx.schema, cx.created_by).await;
    outcomes.push(no_null_tenant(conn, cx).await);
    outcomes.push(rows_preserved(conn, cx).await);
    outcomes.push(default_tenant_backfill(conn, cx).await);
    outcomes.push(tenant_query_plan(conn, cx).await);
    outcomes.push(foreign_key_integrity(conn, cx).await);
    outcomes
}

/// The static tenant-isolation rules; on PostgreSQL they also read the app role's facts.
pub async fn static_isolation_rules(
    conn: &mut Conn,
    config: &Config,
    schema: &Schema,
    created_by: &BTreeMap<String, String>,
) -> Vec<CheckOutcome> {
    let role = match conn {
        Conn::Postgres(c) => match RoleFacts::read(c, &config.tenancy.app_role).await {
            Ok(role) => Some(role),
            Err(error) => {
                return vec![CheckOutcome {
                    name: "app-role",
                    checked: 0,
                    failures: vec![Failure::new(format!(
                        "read the attributes of role `{}`: {error:#}",
                        config.tenancy.app_role
                    ))],
                }];
            }
        },
        Conn::Sqlite(_) => None,
    };
    static_rules(config, schema, role.as_ref(), created_by)
}

/// Zero rows with a NULL tenant.
async fn no_null_tenant(conn: &mut Conn, cx: &Context<'_>) -> CheckOutcome {
    let column = cx.column();
    let mut failures = Vec::new();
    let mut checked = 0;
    for table in cx.tables_with_tenant_column() {
        checked += 1;
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} IS NULL",
            quote(table),
            quote(column)
        );
        match conn.count(&sql).await {
            Ok(0) => {}
            Ok(nulls) => failures.push(cx.failure_in(table, format!(
                    "table `{table}` has {nulls} rows with a NULL `{column}`\nfix: backfill them (UPDATE {table} SET {column} = … WHERE {column} IS NULL) before the column becomes NOT NULL"
                ))),
            Err(error) => failures.push(Failure::new(format!("count NULL `{column}` in `{table}`: {error:#}"))),
        }
    }
    CheckOutcome {
        name: "no-null-tenant",
        checked,
        failures,
    }
}

/// Every table that held fixture rows holds as many after the remaining migrations.
async fn rows_preserved(conn: &mut Conn, cx: &Context<'_>) -> CheckOutcome {
    let mut failures = Vec::new();
    for (table, before) in cx.seeded {
        if !cx.schema.tables.contains_key(table) {
            if *before > 0 {
                failures.push(Failure::new(format!(
                    "table `{table}` held {before} fixture rows and no longer exists after {}\nfix: keep the table, or move its rows to a new table in the same migration",
                    cx.migrations_after_seed()
                )));
            }
            continue;
        }
        match conn.count(&format!("SELECT count(*) FROM {}", quote(table))).await {
            Ok(after) if after == *before => {}
            Ok(after) => failures.push(Failure::new(format!(
                "table `{table}` had {before} rows after the fixture ({}) and has {after} after {}: {} rows {}\nfix: the migration that rebuilds or backfills `{table}` must carry every row over",
                cx.seed_file,
                cx.migrations_after_seed(),
                before.abs_diff(after),
                if after < *before { "lost" } else { "appeared" }
            ))),
            Err(error) => failures.push(Failure::new(format!("count the rows of `{table}`: {error:#}"))),
        }
    }
    CheckOutcome {
        name: "row-counts",
        checked: cx.seeded.len(),
        failures,
    }
}

/// Every pre-existing row belongs to the default tenant, and a query filtered by that
/// tenant returns exactly those rows.
async fn default_tenant_backfill(conn: &mut Conn, cx: &Context<'_>) -> CheckOutcome {
    let column = cx.column();
    let default = cx.config.tenancy.default_tenant_id;
    let mut failures = Vec::new();
    let mut checked = 0;
    for table in cx.tables_with_tenant_column() {
        let Some(before) = cx.seeded.get(table.as_str()) else {
            continue;
        };
        checked += 1;
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} = {default}",
            quote(table),
            quote(column)
        );
        match conn.count(&sql).await {
            Ok(owned) if owned == *before => {}
            Ok(owned) => failures.push(cx.failure_in(table, format!(
                    "table `{table}`: {before} rows existed before tenancy, but a query for the default tenant ({column} = {default}) returns {owned}\nfix: the backfill must set `{column}` = {default} on every pre-existing row"
                ))),
            Err(error) => failures.push(Failure::new(format!("query `{table}` for the default tenant: {error:#}"))),
        }
    }
    CheckOutcome {
        name: "default-tenant",
        checked,
        failures,
    }
}

/// A tenant-filtered query can use an index (EXPLAIN).
async fn tenant_query_plan(conn: &mut Conn, cx: &Context<'_>) -> CheckOutcome {
    let column = cx.column();
    let default = cx.config.tenancy.default_tenant_id;
    let mut failures = Vec::new();
    let mut checked = 0;
    // The fixture's tables are small enough that PostgreSQL would rightly scan them;
    // what matters is that an index can serve the filter, so sequential scans are priced out.
    if let Conn::Postgres(_) = conn
        && let Err(error) = conn.execute("SET enable_seqscan = off").await
    {
        failures.push(Failure::new(format!(
            "disable sequential scans for EXPLAIN: {error}"
        )));
    }
    for table in cx.tables_with_tenant_column() {
        checked += 1;
        let query = format!(
            "SELECT * FROM {} WHERE {} = {default}",
            quote(table),
            quote(column)
        );
        let plan = match conn {
            Conn::Postgres(_) => conn
                .texts(&format!("EXPLAIN {query}"))
                .await
                .map(|lines| lines.join("\n")),
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
            Ok(plan) if plan.contains("Index") || plan.contains("USING INDEX") || plan.contains("USING COVERING INDEX") => {}
            Ok(plan) => failures.push(cx.failure_in(table, format!(
                    "a query of `{table}` filtered by `{column}` cannot use an index:\n    {}\nfix: add an index leading with `{column}`",
                    plan.replace('\n', "\n    ")
                ))),
            Err(error) => failures.push(Failure::new(format!("EXPLAIN a tenant query of `{table}`: {error:#}"))),
        }
    }
    if let Conn::Postgres(_) = conn {
        let _ = conn.execute("RESET enable_seqscan").await;
    }
    CheckOutcome {
        name: "tenant-query-plan",
        checked,
        failures,
    }
}

/// A row of `PRAGMA foreign_key_check`: table, rowid, parent, foreign key id.
type ForeignKeyViolation = (String, Option<i64>, String, i64);

/// No orphan rows and no unvalidated foreign keys.
async fn foreign_key_integrity(conn: &mut Conn, cx: &Context<'_>) -> CheckOutcome {
    let mut failures = Vec::new();
    let mut checked = 0;
    match conn {
        Conn::Sqlite(c) => {
            checked = cx
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
                        failures.push(cx.failure_in(&table, format!(
                                "PRAGMA foreign_key_check: {orphans} rows of `{table}` reference missing rows of `{parent}`\nfix: the migration that rebuilt `{table}` or `{parent}` must carry the referenced rows (and, for composite keys, the same tenant) over"
                            )));
                    }
                }
                Err(error) => {
                    failures.push(Failure::new(format!("PRAGMA foreign_key_check: {error}")))
                }
            }
        }
        Conn::Postgres(_) => {
            for (table, definition) in &cx.schema.tables {
                for fk in &definition.foreign_keys {
                    checked += 1;
                    let name = fk.name.as_deref().unwrap_or("?");
                    if !fk.validated {
                        failures.push(cx.failure_in(table, format!("foreign key `{name}` on `{table}` is NOT VALID: existing rows were never checked\nfix: ALTER TABLE {table} VALIDATE CONSTRAINT {name} in a later migration")));
                    }
                    let sql = fk.orphans_sql(table);
                    match conn.count(&sql).await {
                        Ok(0) => {}
                        Ok(orphans) => failures.push(cx.failure_in(table, format!("{orphans} rows of `{table}` have no parent in `{}` through `{name}`\nfix: repair or delete the orphans before adding the constraint", fk.referenced_table))),
                        Err(error) => failures.push(Failure::new(format!("look for orphans of `{name}` on `{table}`: {error:#}"))),
                    }
                }
            }
        }
    }
    CheckOutcome {
        name: "foreign-keys",
        checked,
        failures,
    }
}
