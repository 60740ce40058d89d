//! The behavioural cases, generated from the model: for every tenant-owned table and each
//! of three tenants, what one tenant can read and write of another's rows, run on a real,
//! populated database.
//!
//! - PostgreSQL with row-level security, raw SQL as the application role acting as the
//!   tenant (`act_as`): row-level security alone must isolate, with no filter in the query.
//!   A guard first refuses a role that bypasses it, and a run in which the role saw no row
//!   at all fails: both would pass without proving anything.
//! - Every backend, the harness's own tenant-scoped statements (each filters by tenant, as
//!   the app's queries must): what the schema enforces beneath them, that a row cannot be
//!   made to reference another tenant's parent (composite foreign keys), and on SQLite,
//!   when the configuration says the schema guards it, that a row cannot change tenant.
//! - The app's own tenant-scoped API, when the workspace hands one over
//!   ([`tenantgate::api::TenantApi`]).
//!
//! A case passes only on the outcome it expects: a statement refused for another reason
//! (another SQLSTATE) is a failure that says so, never a pass.

use serde_json::{Map, Value};
use sqlx::{Connection, PgConnection};
use tenantgate::api::{ApiError, TenantApi, TenantApiSession};
use tenantgate::checks::Failure;
use tenantgate::config::RowLevelSecurity;
use tenantgate::db::{Conn, literal, quote, quote_table};
use tenantgate::rules::{Ownership, RoleFacts};
use tenantgate::schema::Schema;
use tenantgate::{Backend, TenantValue};

use super::model::{Model, TableModel, key_equals, key_text};
use super::populate::populate;
use super::truth::{Truth, json_text};

/// What the behavioural cases found.
#[derive(Debug, Default)]
pub struct BehaviourReport {
    pub tenants: Vec<TenantValue>,
    /// Tenant-owned tables the cases covered.
    pub tables: usize,
    /// How many assertions ran.
    pub cases: usize,
    /// Relations and functions the canary cases read and called as each tenant.
    pub relations_read: usize,
    pub functions_called: usize,
    pub failures: Vec<Failure>,
    /// What did not run, and why; how the data was populated.
    pub notes: Vec<String>,
}

/// What the cases run with: the database behind `conn` (an administrative connection,
/// used to populate and to know the truth) and `url` (for the API's own connections).
pub struct BehaviourInput<'a> {
    pub url: &'a str,
    pub config: &'a tenantgate::Config,
    pub schema: &'a Schema,
    pub api: Option<&'a dyn TenantApi>,
}

/// Runs every behavioural case that applies.
pub async fn run_behaviour(conn: &mut Conn, input: &BehaviourInput<'_>) -> BehaviourReport {
    let mut report = BehaviourReport::default();
    let backend = conn.backend();
    let model = match Model::new(input.config, input.schema, backend) {
        Ok(model) => model,
        Err(failure) => {
            report.failures.push(failure);
            return report;
        }
    };
    report.tables = model.tables.len();
    for (table, why) in &model.unplaced {
        report.notes.push(format!(
            "isolation cases: `{table}` is not covered: {why} (its tenant-column failure says how to fix it)"
        ));
    }
    if model.tables.is_empty() {
        report.failures.push(
            Failure::new("there is no tenant-owned table to run the isolation cases on").fix(
                format!(
                    "check tenancy.column and [[global_tables]] in {}",
                    model.config_file()
                ),
            ),
        );
        return report;
    }
    let rls = match (backend, input.config.row_level_security()) {
        (Backend::Postgres, Some(rls)) => Some(rls),
        _ => None,
    };
    if let (Some(rls), Conn::Postgres(pg)) = (rls, &mut *conn)
        && let Err(failure) = guard(pg, &rls.app_role, &model).await
    {
        report.failures.push(failure);
        return report;
    }
    let populated = match populate(conn, &model).await {
        Ok(populated) => populated,
        Err(failure) => {
            report.failures.push(failure);
            return report;
        }
    };
    report.notes.extend(
        populated
            .notes
            .iter()
            .map(|note| format!("isolation cases: {note}")),
    );
    report.tenants = populated.tenants.clone();
    // The canaries go in before the truth is read: the other cases compare against it.
    let planted = match (rls, &mut *conn) {
        (Some(_), Conn::Postgres(_)) => {
            match super::canary::plant(conn, &model, &populated.tenants).await {
                Ok(planted) => Some(planted),
                Err(failure) => {
                    report.failures.push(failure);
                    return report;
                }
            }
        }
        _ => None,
    };
    let truth = match Truth::read(conn, &model, &populated.tenants).await {
        Ok(truth) => truth,
        Err(failure) => {
            report.failures.push(failure);
            return report;
        }
    };
    let mut cases = Cases {
        model: &model,
        truth: &truth,
        tenants: &populated.tenants,
        report: &mut report,
    };
    match (rls, &mut *conn) {
        (Some(rls), Conn::Postgres(pg)) => {
            cases.as_the_app_role(pg, input.url, rls).await;
            if let Some(planted) = &planted {
                cases.canary_cases(pg, rls, planted).await;
            }
        }
        _ => {
            let why = match (backend, input.config.row_level_security()) {
                (Backend::Sqlite, _) => "SQLite has no row-level security".to_string(),
                (_, None) => format!(
                    "the configuration says the app does not isolate with row-level security ({})",
                    without_rls_reason(input.config)
                ),
                _ => unreachable!("handled above"),
            };
            cases.report.notes.push(format!(
                "isolation cases as the application role without a tenant filter: not applicable: {why}"
            ));
            cases.report.notes.push(format!(
                "canary cases (every relation and function the application role can reach, read as each tenant): not applicable: {why}"
            ));
        }
    }
    cases.scoped_references(conn, rls.is_some()).await;
    if backend == Backend::Sqlite {
        if input.config.sqlite.tenant_column_immutable {
            cases.sqlite_tenant_column_immutable(conn).await;
        } else {
            cases.report.notes.push(
                "isolation cases: that a row cannot move to another tenant is not checked on SQLite (nothing in SQLite refuses it unless the schema's triggers do; set `tenant_column_immutable = true` under [sqlite] when they do)".to_string(),
            );
        }
    }
    match input.api {
        Some(api) => cases.through_the_api(api, input.url, rls).await,
        None => cases.report.notes.push(
            "isolation cases through the app's own API: not run (the workspace's xtask hands the harness no `TenantApi`)".to_string(),
        ),
    }
    report
}

fn without_rls_reason(config: &tenantgate::Config) -> String {
    match &config.tenancy.isolation {
        tenantgate::config::Isolation::WithoutRowLevelSecurity { reason } => reason.clone(),
        tenantgate::config::Isolation::RowLevelSecurity(_) => String::new(),
    }
}

/// Fails when `role` would bypass row-level security, so the cases cannot pass vacuously.
async fn guard(conn: &mut PgConnection, role: &str, model: &Model<'_>) -> Result<(), Failure> {
    let facts = RoleFacts::read(conn, role, &tenantgate::db::Scope::Database)
        .await
        .map_err(|error| {
            Failure::new(format!("read the attributes of role `{role}`: {error:#}"))
        })?;
    if !facts.exists {
        return Err(Failure::new(format!(
            "the isolation cases run as `{role}`, which does not exist"
        ))
        .fix(format!(
            "create the role in a migration or correct tenancy.app_role in {}",
            model.config_file()
        )));
    }
    let owned: std::collections::BTreeSet<&str> = model.tables.iter().map(|t| t.name).collect();
    let reasons = facts.bypasses(&owned);
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Failure::new(format!(
        "refusing to run the isolation cases as `{role}`: it {}, so row-level security does not apply and every case would pass without proving anything",
        reasons.join(", and ")
    ))
    .fix("run them as the application role (tenancy.app_role), which must be NOSUPERUSER NOBYPASSRLS, own no tenant-owned table and be a member of no role that does"))
}

/// The result of one statement run as a tenant.
enum StatementResult {
    Rows(u64),
    Refused { code: String, message: String },
}

impl StatementResult {
    fn from(result: Result<u64, sqlx::Error>) -> StatementResult {
        match result {
            Ok(rows) => StatementResult::Rows(rows),
            Err(error) => {
                let (code, message) = error_code(&error);
                StatementResult::Refused { code, message }
            }
        }
    }

    fn refused_with(&self, codes: &[&str]) -> bool {
        matches!(self, StatementResult::Refused { code, .. } if codes.contains(&code.as_str()))
    }

    /// "changed 3 rows", "failed for another reason: … (23505)".
    fn describe(&self, accepted: &str) -> String {
        match self {
            StatementResult::Rows(rows) => format!("{accepted} ({rows} rows)"),
            StatementResult::Refused { code, message } => {
                format!("failed for another reason: {message} ({code})")
            }
        }
    }
}

/// The SQLSTATE of a refusal by privileges or row-level security.
pub(super) const RLS_REFUSED: &str = "42501";
/// A trigger's RAISE (PostgreSQL; SQLite's RAISE(ABORT) is SQLITE_CONSTRAINT_TRIGGER).
const RAISED: [&str; 3] = ["P0001", "1811", "19"];
/// A foreign key refused the row (PostgreSQL, SQLite's SQLITE_CONSTRAINT_FOREIGNKEY).
const FOREIGN_KEY_REFUSED: [&str; 2] = ["23503", "787"];

/// A database error's SQLSTATE (PostgreSQL) or extended code (SQLite), and its message.
pub(super) fn error_code(error: &sqlx::Error) -> (String, String) {
    match error {
        sqlx::Error::Database(db) => (
            db.code().map(|c| c.to_string()).unwrap_or_default(),
            db.message().to_string(),
        ),
        other => (String::new(), other.to_string()),
    }
}

/// A PostgreSQL connection that runs each statement as the application role acting as a
/// tenant (or as none), in a transaction that is rolled back.
pub(super) struct AppRole<'a> {
    pub(super) conn: &'a mut PgConnection,
    pub(super) role: &'a str,
    rls: &'a RowLevelSecurity,
    model: &'a Model<'a>,
}

/// How a case's session names its tenant.
#[derive(Clone, Copy)]
pub(super) enum ActingAs<'t> {
    Tenant(&'t TenantValue),
    NoTenant,
    /// The tenant setting set to ''.
    EmptyTenant,
}

impl AppRole<'_> {
    fn act_as(&self, acting: ActingAs<'_>) -> String {
        match acting {
            ActingAs::Tenant(tenant) => {
                let sql = self
                    .rls
                    .act_as_sql(&self.model.literal(tenant), tenant.as_str());
                format!("{sql};\n")
            }
            ActingAs::NoTenant => String::new(),
            ActingAs::EmptyTenant => match &self.rls.tenant_setting {
                Some(setting) => format!("SELECT set_config({}, '', true);\n", literal(setting)),
                None => String::new(),
            },
        }
    }

    /// `BEGIN`, `prelude` (as the administrator), the role and the tenant, `sql`,
    /// `ROLLBACK`: one round trip per case (two when `sql` fails). Returns each
    /// statement's result and every row.
    async fn in_rolled_back_batch(
        &mut self,
        prelude: &str,
        acting: ActingAs<'_>,
        sql: &str,
    ) -> Result<(Vec<u64>, Vec<sqlx::postgres::PgRow>), sqlx::Error> {
        use futures_util::TryStreamExt;
        use sqlx::Either;
        let prelude = if prelude.is_empty() {
            String::new()
        } else {
            format!("{prelude};\n")
        };
        // The session acts as the tenant before it becomes the application role: `act_as`
        // may look the tenant's member up in tables the role cannot read yet.
        let batch = format!(
            "BEGIN;\n{prelude}{}SET LOCAL ROLE {};\n{sql};\nROLLBACK",
            self.act_as(acting),
            quote(self.role),
        );
        let mut results = Vec::new();
        let mut rows = Vec::new();
        let outcome: Result<(), sqlx::Error> = async {
            let mut stream = sqlx::raw_sql(sqlx::AssertSqlSafe(batch)).fetch_many(&mut *self.conn);
            while let Some(item) = stream.try_next().await? {
                match item {
                    Either::Left(done) => results.push(done.rows_affected()),
                    Either::Right(row) => rows.push(row),
                }
            }
            Ok(())
        }
        .await;
        if let Err(error) = outcome {
            // The batch stopped at the error, inside the transaction.
            sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await?;
            return Err(error);
        }
        Ok((results, rows))
    }

    /// The first column of every row the statement (the batch's last) returns, as text.
    async fn texts(&mut self, acting: ActingAs<'_>, sql: &str) -> Result<Vec<String>, sqlx::Error> {
        self.texts_after("", acting, sql).await
    }

    /// [`AppRole::texts`], after `prelude` ran as the administrator in the same
    /// transaction.
    pub(super) async fn texts_after(
        &mut self,
        prelude: &str,
        acting: ActingAs<'_>,
        sql: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        use sqlx::Row;
        let wrapped = format!("SELECT 'tenantgate-rows-start';\n{sql}");
        let (_, rows) = self.in_rolled_back_batch(prelude, acting, &wrapped).await?;
        let mut texts = Vec::new();
        let mut started = false;
        for row in rows {
            let text: Option<String> = row.try_get(0).ok();
            if !started {
                started = text.as_deref() == Some("tenantgate-rows-start");
                continue;
            }
            texts.push(text.unwrap_or_default());
        }
        Ok(texts)
    }

    /// Runs a statement; its rows changed, or its refusal.
    async fn execute(&mut self, acting: ActingAs<'_>, sql: &str) -> StatementResult {
        self.execute_after("", acting, sql).await
    }

    /// [`AppRole::execute`], after `prelude` ran as the administrator in the same
    /// transaction.
    async fn execute_after(
        &mut self,
        prelude: &str,
        acting: ActingAs<'_>,
        sql: &str,
    ) -> StatementResult {
        let result = self
            .in_rolled_back_batch(prelude, acting, sql)
            .await
            .map(|(results, _)| {
                // …, the statement, ROLLBACK.
                results
                    .len()
                    .checked_sub(2)
                    .map_or(0, |statement| results[statement])
            });
        StatementResult::from(result)
    }
}

/// What some of the cases found (one table's, as the application role), kept apart so that
/// two connections can run the cases of different tables at once.
#[derive(Default)]
struct Tally {
    cases: usize,
    failures: Vec<Failure>,
    notes: Vec<String>,
    /// Rows of its own tenant a read as the application role saw.
    seen_own: usize,
}

impl Tally {
    fn case(&mut self, passed: bool, failure: impl FnOnce() -> Failure) {
        self.cases += 1;
        if !passed {
            self.failures.push(failure());
        }
    }

    /// A reference case that could not be set up (the parent's key is of a type no fresh
    /// value can be made for): said once per table and parent.
    fn not_constructed(&mut self, table: &str, parent: &str) {
        let note = format!(
            "isolation cases: that `{table}` cannot reference another tenant's `{parent}` is not checked: no fresh `{parent}` key could be made for its type"
        );
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

struct Cases<'r, 'm> {
    model: &'r Model<'m>,
    truth: &'r Truth,
    tenants: &'r [TenantValue],
    report: &'r mut BehaviourReport,
}

impl<'r> Cases<'r, '_> {
    /// What `tally` found, in the report (a note said once); the rows of their own it saw.
    fn absorb(&mut self, tally: Tally) -> usize {
        self.report.cases += tally.cases;
        self.report.failures.extend(tally.failures);
        for note in tally.notes {
            if !self.report.notes.contains(&note) {
                self.report.notes.push(note);
            }
        }
        tally.seen_own
    }

    fn case(&mut self, passed: bool, failure: impl FnOnce() -> Failure) {
        self.report.cases += 1;
        if !passed {
            self.report.failures.push(failure());
        }
    }

    /// The tenant each tenant attacks: the next one.
    fn other<'t>(&self, tenant: &'t TenantValue) -> &'r TenantValue {
        let index = self.tenants.iter().position(|t| t == tenant).unwrap_or(0);
        &self.tenants[(index + 1) % self.tenants.len()]
    }

    /// The rows of `table` that belong to `tenant`, as a condition that needs no policy
    /// to be evaluated (a tenant column, or the keys the administrative connection read).
    fn rows_of(&self, table: &TableModel<'_>, alias: &str, tenant: &TenantValue) -> String {
        match table.tenant_column() {
            Some(column) => format!("{alias}.{} = {}", quote(column), self.model.literal(tenant)),
            None => {
                let keys = &self.truth.rows(table.name, tenant).keys;
                if keys.is_empty() {
                    return "false".to_string();
                }
                format!(
                    "{} IN ({})",
                    key_text(alias, &table.key),
                    keys.iter()
                        .map(|k| literal(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
    }

    /// One row of `tenant`'s in `table`, by key.
    fn one_row_of(
        &self,
        table: &TableModel<'_>,
        alias: &str,
        tenant: &TenantValue,
    ) -> Option<String> {
        let key = self.truth.rows(table.name, tenant).keys.first()?;
        Some(key_equals(alias, &table.key, key))
    }

    /// For each reference of `table` to a tenant-owned parent (its parent reference
    /// included, for a table owned through one): the parent, the child's columns and the
    /// parent's, the tenant column left out.
    fn references<'t>(
        &self,
        table: &'t TableModel<'_>,
    ) -> Vec<(&'t str, Vec<&'t str>, Vec<&'t str>)> {
        table
            .table
            .foreign_keys
            .iter()
            .filter(|fk| self.model.is_tenant_owned(&fk.referenced_table))
            .filter(|fk| !tenantgate::config::same_table(&fk.referenced_table, table.name))
            .map(|fk| {
                let parent_column = self
                    .model
                    .table(&fk.referenced_table)
                    .and_then(|p| p.tenant_column());
                let (children, parents): (Vec<&str>, Vec<&str>) = fk
                    .columns
                    .iter()
                    .zip(&fk.referenced_columns)
                    .filter(|(c, p)| {
                        Some(c.as_str()) != table.tenant_column()
                            || Some(p.as_str()) != parent_column
                    })
                    .map(|(c, p)| (c.as_str(), p.as_str()))
                    .unzip();
                (fk.referenced_table.as_str(), children, parents)
            })
            .filter(|(_, children, _)| !children.is_empty())
            .collect()
    }

    /// `child = 'value'` assignments pointing a row at `other`'s parent row.
    fn point_at(
        &self,
        parent: &str,
        children: &[&str],
        parents: &[&str],
        other: &TenantValue,
    ) -> Option<String> {
        let parent_row = self
            .model
            .table(parent)
            .and_then(|p| self.truth.rows(p.name, other).sample.as_ref())?;
        Some(
            children
                .iter()
                .zip(parents)
                .map(|(c, p)| {
                    let value = parent_row.get(*p).map(json_text).unwrap_or_default();
                    format!("{} = {}", quote(c), literal(&value))
                })
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// A parent row of `other`'s that exists in no other tenant's data: its referenced
    /// columns get values no row has (per-tenant keys such as `(tenant_id, id)` repeat
    /// the same ids in every tenant, so a copy of another tenant's key could name the
    /// tenant's own parent). Returns the INSERT that makes it (run in the case's
    /// transaction, as the administrator) and the assignments pointing a child at it.
    fn fresh_parent(
        &self,
        parent: &str,
        children: &[&str],
        parents: &[&str],
        other: &TenantValue,
    ) -> Option<(String, String)> {
        let parent = self.model.table(parent)?;
        let rows = self.truth.rows(parent.name, other);
        let (sample, key) = (rows.sample.as_ref()?, rows.keys.first()?);
        let mut fresh: Vec<(&str, String)> = Vec::new();
        for (index, referenced) in parents.iter().enumerate() {
            let column = parent.table.column(referenced)?;
            let value = if super::values::is_integer(&column.data_type) {
                let max = self
                    .truth
                    .maxima
                    .get(&(parent.name.to_string(), column.name.clone()))?;
                (max + 1_000_003 + index as i64).to_string()
            } else if super::values::is_uuid(&column.data_type) {
                let text = format!("ffffffff-0000-4000-8000-{:012x}", index + 3);
                if self.model.backend == Backend::Postgres {
                    format!("{}::uuid", literal(&text))
                } else {
                    literal(&text)
                }
            } else if super::values::is_text(&column.data_type) {
                literal(&format!(
                    "{}-tg-ref",
                    sample.get(*referenced).map(json_text)?
                ))
            } else {
                return None;
            };
            fresh.push((referenced, value));
        }
        // A copy within the same tenant must differ in every unique key, scoped or not.
        let mut unique = super::populate::globally_unique(parent.table, &[]);
        if let Some(column) = parent.tenant_column() {
            unique.remove(column);
        }
        let writable: Vec<&tenantgate::schema::Column> = parent
            .table
            .columns
            .iter()
            .filter(|c| !c.generated)
            .collect();
        let exprs: Vec<String> = writable
            .iter()
            .map(|c| {
                let source = format!("tgsrc.{}", quote(&c.name));
                match fresh.iter().find(|(r, _)| *r == c.name) {
                    Some((_, value)) => value.clone(),
                    None if unique.contains(c.name.as_str())
                        && super::values::is_text(&c.data_type) =>
                    {
                        format!("{source} || '-tg-ref'")
                    }
                    None if unique.contains(c.name.as_str())
                        && super::values::is_integer(&c.data_type) =>
                    {
                        format!("{source} + 1000003")
                    }
                    None => source,
                }
            })
            .collect();
        let always = writable
            .iter()
            .any(|c| c.identity.as_deref() == Some("generated always as identity"));
        let prelude = format!(
            "INSERT INTO {t} ({}){} SELECT {} FROM {t} tgsrc WHERE {}",
            writable
                .iter()
                .map(|c| quote(&c.name))
                .collect::<Vec<_>>()
                .join(", "),
            if always && self.model.backend == Backend::Postgres {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            },
            exprs.join(", "),
            key_equals("tgsrc", &parent.key, key),
            t = quote_table(parent.name),
        );
        let set = children
            .iter()
            .zip(&fresh)
            .map(|(child, (_, value))| format!("{} = {value}", quote(child)))
            .collect::<Vec<_>>()
            .join(", ");
        Some((prelude, set))
    }

    /// A column an UPDATE can set to itself (neither key, tenant column nor generated).
    fn touch_column<'t>(&self, table: &'t TableModel<'_>) -> Option<&'t str> {
        table
            .table
            .columns
            .iter()
            .find(|c| {
                !c.generated
                    && c.identity.is_none()
                    && !table.key.contains(&c.name.as_str())
                    && Some(c.name.as_str()) != table.tenant_column()
            })
            .or_else(|| {
                table
                    .table
                    .columns
                    .iter()
                    .find(|c| !c.generated && c.identity.is_none())
            })
            .map(|c| c.name.as_str())
    }

    /// PostgreSQL, raw SQL as the application role acting as a tenant: row-level
    /// security must isolate tenants without any filter in the query.
    ///
    /// Every other table's cases run at the same time on a second connection to the
    /// database at `url`: each case is a transaction rolled back, which the other
    /// connection never sees (at most it waits for one to end), and the findings are
    /// reported in the tables' order as from one connection. Without a second connection
    /// (the server refusing one), all of them run on `conn`.
    async fn as_the_app_role(
        &mut self,
        conn: &mut PgConnection,
        url: &str,
        rls: &RowLevelSecurity,
    ) {
        let model = self.model;
        let role = rls.app_role.as_str();
        let mut app = AppRole {
            conn,
            role,
            rls,
            model,
        };
        // The session must be able to act as a tenant at all.
        if let Some(first) = self.tenants.first() {
            let check = app.execute(ActingAs::Tenant(first), "SELECT 1").await;
            if let StatementResult::Refused { code, message } = &check {
                self.report.failures.push(
                    Failure::new(format!(
                        "a session as `{role}` cannot act as tenant {first}: {message} ({code})"
                    ))
                    .fix(format!(
                        "correct tenancy.act_as / tenancy.tenant_setting in {}",
                        model.config_file()
                    )),
                );
                return;
            }
        }
        let tables: Vec<(usize, &TableModel<'_>)> = model.tables.iter().enumerate().collect();
        let mut second = if tables.len() > 1 {
            PgConnection::connect(url).await.ok()
        } else {
            None
        };
        let mut tallies = match &mut second {
            Some(conn) => {
                let mut other = AppRole {
                    conn,
                    role,
                    rls,
                    model,
                };
                let (evens, odds): (Vec<_>, Vec<_>) =
                    tables.into_iter().partition(|(index, _)| index % 2 == 0);
                let (mut first, second) = tokio::join!(
                    self.app_role_tables(&mut app, &evens),
                    self.app_role_tables(&mut other, &odds)
                );
                first.extend(second);
                first
            }
            None => self.app_role_tables(&mut app, &tables).await,
        };
        if let Some(second) = second {
            let _ = second.close().await;
        }
        tallies.sort_by_key(|(index, _)| *index);
        let mut seen_own = 0;
        for (_, tally) in tallies {
            seen_own += self.absorb(tally);
        }
        if seen_own == 0 && self.truth.total() > 0 {
            self.report.failures.push(
                Failure::new(format!(
                    "as `{role}`, acting as each of the tenants {}, not one row of any tenant-owned table was visible: the read cases proved nothing",
                    self.tenants.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
                ))
                .fix(format!(
                    "make tenancy.act_as (or tenancy.tenant_setting) in {} put the session in the tenant's shoes, and give `{role}` SELECT on the tables",
                    model.config_file()
                )),
            );
        }
    }

    /// The cases of [`Cases::as_the_app_role`] on `tables` (with their places in the
    /// model), each table's findings apart.
    async fn app_role_tables(
        &self,
        app: &mut AppRole<'_>,
        tables: &[(usize, &TableModel<'_>)],
    ) -> Vec<(usize, Tally)> {
        let mut tallies = Vec::new();
        for (index, table) in tables {
            let mut tally = Tally::default();
            self.app_role_table(app, table, &mut tally).await;
            tallies.push((*index, tally));
        }
        tallies
    }

    /// One table's cases as the application role, acting as each tenant and as none.
    async fn app_role_table(
        &self,
        app: &mut AppRole<'_>,
        table: &TableModel<'_>,
        tally: &mut Tally,
    ) {
        let model = self.model;
        let rls = app.rls;
        let role = app.role;
        let name = quote_table(table.name);
        let subject = table.name;
        for tenant in self.tenants {
            let other = self.other(tenant);
            let acting = ActingAs::Tenant(tenant);
            let owned = self.truth.rows(table.name, tenant);
            // Reads show none of another tenant's rows.
            let read = format!("SELECT {} FROM {name} t", key_text("t", &table.key));
            match app.texts(acting, &read).await {
                Ok(seen) => {
                    let foreign: Vec<&String> = seen
                        .iter()
                        .filter(|k| owned.keys.binary_search(k).is_err())
                        .collect();
                    tally.seen_own += seen.len() - foreign.len();
                    tally.case(foreign.is_empty(), || {
                        Failure::new(format!(
                            "postgres, as `{role}` for tenant {tenant}: SELECT from `{subject}` saw {} rows, {} of them not tenant {tenant}'s",
                            seen.len(),
                            foreign.len()
                        ))
                        .fix(policy_fix(table, rls))
                        .about(subject)
                    });
                }
                // No SELECT privilege: the table is closed to the app, which isolates.
                Err(error) if error_code(&error).0 == RLS_REFUSED => {
                    tally.case(true, Failure::default)
                }
                Err(error) => tally.case(false, || {
                    Failure::new(format!(
                        "postgres, as `{role}` for tenant {tenant}: reading `{subject}` failed: {}",
                        database_message(&error)
                    ))
                    .about(subject)
                }),
            }
            // Inserting another tenant's row is refused.
            if let Some(row) = &self.truth.rows(table.name, other).sample {
                let insert = fresh_copy_insert(table, row);
                let outcome = app.execute(acting, &insert).await;
                tally.case(outcome.refused_with(&[RLS_REFUSED]), || {
                    Failure::new(format!(
                        "postgres, as `{role}` for tenant {tenant}: inserting a row of tenant {other} into `{subject}` {}",
                        outcome.describe("was not refused by row-level security")
                    ))
                    .fix(policy_fix(table, rls))
                    .about(subject)
                });
            }
            // UPDATE and DELETE aimed at another tenant's rows change nothing.
            let theirs = self.rows_of(table, "t", other);
            let touch = self.touch_column(table).map(quote).unwrap_or_default();
            for (verb, sql) in [
                (
                    "UPDATE",
                    format!("UPDATE {name} t SET {touch} = t.{touch} WHERE {theirs}"),
                ),
                ("DELETE", format!("DELETE FROM {name} t WHERE {theirs}")),
            ] {
                let outcome = app.execute(acting, &sql).await;
                let passed = matches!(outcome, StatementResult::Rows(0))
                    || outcome.refused_with(&[RLS_REFUSED]);
                tally.case(passed, || {
                    Failure::new(format!(
                        "postgres, as `{role}` for tenant {tenant}: {verb} of tenant {other}'s rows in `{subject}` {}",
                        outcome.describe("changed them")
                    ))
                    .fix(policy_fix(table, rls))
                    .about(subject)
                });
            }
            let Some(own) = self.one_row_of(table, "t", tenant) else {
                continue;
            };
            // A row cannot be moved to another tenant.
            let moved = match table.tenant_column() {
                Some(column) => Some(format!(
                    "UPDATE {name} t SET {} = {} WHERE {own}",
                    quote(column),
                    model.literal(other)
                )),
                None => self
                    .references(table)
                    .into_iter()
                    .next()
                    .and_then(|(parent, c, p)| {
                        let set = self.point_at(parent, &c, &p, other)?;
                        Some(format!("UPDATE {name} t SET {set} WHERE {own}"))
                    }),
            };
            if let Some(moved) = moved {
                let outcome = app.execute(acting, &moved).await;
                // Refused, or the row was not even visible to change: nothing moved.
                let passed = outcome.refused_with(&[RLS_REFUSED, RAISED[0]])
                    || matches!(outcome, StatementResult::Rows(0));
                tally.case(passed, || {
                    Failure::new(format!(
                        "postgres, as `{role}` for tenant {tenant}: moving a row of `{subject}` to tenant {other} {}",
                        outcome.describe("was not refused")
                    ))
                    .fix(format!("{} (WITH CHECK refuses a row that would leave the tenant)", policy_fix(table, rls)))
                    .about(subject)
                });
            }
            // A child cannot reference another tenant's parent.
            if table.tenant_column().is_some() {
                for (parent, children, parents) in self.references(table) {
                    let Some((prelude, set)) =
                        self.fresh_parent(parent, &children, &parents, other)
                    else {
                        tally.not_constructed(table.name, parent);
                        continue;
                    };
                    let sql = format!("UPDATE {name} t SET {set} WHERE {own}");
                    let outcome = app.execute_after(&prelude, acting, &sql).await;
                    let passed = outcome.refused_with(&FOREIGN_KEY_REFUSED)
                        || outcome.refused_with(&[RLS_REFUSED, RAISED[0]])
                        || matches!(outcome, StatementResult::Rows(0));
                    tally.case(passed, || {
                        reference_failure(
                            model,
                            table,
                            parent,
                            &children,
                            &parents,
                            tenant,
                            other,
                            &outcome,
                            &format!("postgres, as `{role}`"),
                        )
                    });
                }
            }
        }
        // With no tenant (or an empty one), the database fails closed.
        let mut closed = vec![("no tenant set", ActingAs::NoTenant)];
        if rls.tenant_setting.is_some() {
            closed.push(("an empty tenant", ActingAs::EmptyTenant));
        }
        for (label, acting) in closed {
            let read = format!("SELECT count(*)::text FROM {name}");
            let seen = app.texts(acting, &read).await;
            let rows: i64 = match &seen {
                Ok(texts) => texts.first().and_then(|t| t.parse().ok()).unwrap_or(0),
                Err(_) => 0,
            };
            tally.case(rows == 0, || {
                Failure::new(format!(
                    "postgres, as `{role}` with {label}: SELECT from `{subject}` returned {rows} rows; it must fail closed (an error or no rows)"
                ))
                .fix(match &rls.tenant_setting {
                    Some(setting) => format!(
                        "compare with NULLIF(current_setting('{setting}', true), ''){} in the policy, never with a fallback tenant",
                        model.key_type.cast()
                    ),
                    None => "the tenant function must return NULL (or raise) when no tenant is set".to_string(),
                })
                .about(subject)
            });
            if let Some(row) = self
                .tenants
                .first()
                .and_then(|t| self.truth.rows(table.name, t).sample.as_ref())
            {
                let insert = fresh_copy_insert(table, row);
                let outcome = app.execute(acting, &insert).await;
                tally.case(matches!(outcome, StatementResult::Refused { .. }), || {
                    Failure::new(format!(
                        "postgres, as `{role}` with {label}: an insert into `{subject}` {}; it must fail closed",
                        outcome.describe("was accepted")
                    ))
                    .fix(policy_fix(table, rls))
                    .about(subject)
                });
            }
        }
    }

    /// PostgreSQL with row-level security: the canary cases ([`super::canary`]).
    async fn canary_cases(
        &mut self,
        conn: &mut PgConnection,
        rls: &RowLevelSecurity,
        planted: &super::canary::Planted,
    ) {
        let model = self.model;
        let mut app = AppRole {
            conn,
            role: rls.app_role.as_str(),
            rls,
            model,
        };
        let (reached, cases) =
            super::canary::read_everything(&mut app, model, planted, &mut self.report.failures)
                .await;
        self.report.cases += cases;
        self.report.relations_read = reached.relations;
        self.report.functions_called = reached.functions;
        let tenants: Vec<String> = planted
            .canaries
            .iter()
            .map(|(t, _)| t.to_string())
            .collect();
        let calls_per_tenant = reached.calls / planted.canaries.len().max(1);
        self.report.notes.push(format!(
            "canary cases: as `{}`, each of tenants {} read {} relation{} and called {} function{} ({calls_per_tenant} call{}) in every schema; canaries in {} of {} tenant-owned tables{}",
            rls.app_role,
            tenants.join(", "),
            reached.relations,
            if reached.relations == 1 { "" } else { "s" },
            reached.functions,
            if reached.functions == 1 { "" } else { "s" },
            if calls_per_tenant == 1 { "" } else { "s" },
            planted.tables,
            model.tables.len(),
            if planted.bare.is_empty() {
                String::new()
            } else {
                format!(
                    " (no column to carry one: {})",
                    planted.bare.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                )
            }
        ));
        for unread in reached.unread {
            self.report.notes.push(format!(
                "canary cases: not checked, could not be read as `{}`: {unread}",
                rls.app_role
            ));
        }
    }

    /// Every backend: through statements filtered by tenant (as the app's queries are), a
    /// row cannot be made to reference another tenant's parent. On PostgreSQL with
    /// row-level security the same statement already ran as the application role.
    async fn scoped_references(&mut self, conn: &mut Conn, covered_as_app_role: bool) {
        if covered_as_app_role {
            return;
        }
        let model = self.model;
        let backend = conn.backend();
        let mut tally = Tally::default();
        for table in &model.tables {
            let Some(column) = table.tenant_column() else {
                continue;
            };
            let name = quote_table(table.name);
            for tenant in self.tenants {
                let other = self.other(tenant);
                // SQLite's UPDATE takes no alias: the conditions name the table instead.
                let Some(own) = self.one_row_of(table, &name, tenant) else {
                    continue;
                };
                for (parent, children, parents) in self.references(table) {
                    let Some((prelude, set)) =
                        self.fresh_parent(parent, &children, &parents, other)
                    else {
                        tally.not_constructed(table.name, parent);
                        continue;
                    };
                    let sql = format!(
                        "UPDATE {name} SET {set} WHERE {name}.{} = {} AND {own}",
                        quote(column),
                        model.literal(tenant)
                    );
                    let outcome = in_rolled_back(conn, &prelude, &sql).await;
                    let passed =
                        outcome.refused_with(&FOREIGN_KEY_REFUSED) || outcome.refused_with(&RAISED);
                    tally.case(passed, || {
                        reference_failure(
                            model,
                            table,
                            parent,
                            &children,
                            &parents,
                            tenant,
                            other,
                            &outcome,
                            &format!("{backend}, through a tenant-scoped UPDATE"),
                        )
                    });
                }
            }
        }
        self.absorb(tally);
    }

    /// SQLite, when the schema guards the tenant column: a row never changes tenant.
    async fn sqlite_tenant_column_immutable(&mut self, conn: &mut Conn) {
        let model = self.model;
        for table in &model.tables {
            let Some(column) = table.tenant_column() else {
                continue;
            };
            let name = quote_table(table.name);
            for tenant in self.tenants {
                let other = self.other(tenant);
                let Some(own) = self.one_row_of(table, &name, tenant) else {
                    continue;
                };
                let sql = format!(
                    "UPDATE {name} SET {} = {} WHERE {own}",
                    quote(column),
                    model.literal(other)
                );
                let outcome = in_rolled_back(conn, "", &sql).await;
                // A trigger refuses it, or the row's composite references do.
                let passed =
                    outcome.refused_with(&RAISED) || outcome.refused_with(&FOREIGN_KEY_REFUSED);
                self.case(passed, || {
                    Failure::new(format!(
                        "sqlite: moving a row of `{}` from tenant {tenant} to tenant {other} {}",
                        table.name,
                        outcome.describe("was not refused")
                    ))
                    .fix(format!(
                        "add a BEFORE UPDATE OF {column} trigger on `{}` that raises when the tenant changes, or set `tenant_column_immutable = false` under [sqlite]",
                        table.name
                    ))
                    .about(table.name)
                });
            }
        }
    }

    /// Through the app's own tenant-scoped API.
    async fn through_the_api(
        &mut self,
        api: &dyn TenantApi,
        url: &str,
        rls: Option<&RowLevelSecurity>,
    ) {
        let model = self.model;
        let backend = model.backend;
        let session = match api.connect(url, rls.map(|r| r.app_role.as_str())).await {
            Ok(session) => session,
            Err(error) => {
                self.report.failures.push(Failure::new(format!(
                    "{backend}: connect the app's API: {error}"
                )));
                return;
            }
        };
        let mut skipped = Vec::new();
        for table in &model.tables {
            if table.physical_key || table.key.len() != 1 {
                skipped.push(table.name);
                continue;
            }
            self.api_cases(session.as_ref(), table, backend).await;
        }
        session.close().await;
        if !skipped.is_empty() {
            self.report.notes.push(format!(
                "isolation cases through the app's API: not run on {} (the API addresses rows by one key column; these have a composite key or none)",
                skipped.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            ));
        }
    }

    async fn api_cases(
        &mut self,
        api: &dyn TenantApiSession,
        table: &TableModel<'_>,
        backend: Backend,
    ) {
        let key = table.key[0];
        let subject = table.name;
        for tenant in self.tenants {
            let other = self.other(tenant);
            let who = format!("{backend}, through the app's API as tenant {tenant}");
            let owned = self.truth.rows(table.name, tenant);
            match api.keys(tenant.as_str(), table.name, key).await {
                Err(ApiError::Unsupported(why)) => {
                    self.report.notes.push(format!(
                        "isolation cases through the app's API: `{subject}` not run: {why}"
                    ));
                    return;
                }
                Ok(mut seen) => {
                    seen.sort();
                    let foreign = seen
                        .iter()
                        .filter(|k| owned.keys.binary_search(k).is_err())
                        .count();
                    self.case(foreign == 0, || {
                        Failure::new(format!(
                            "{who}: `{subject}` returned {} rows, {foreign} of them not tenant {tenant}'s; it owns {}",
                            seen.len(),
                            owned.keys.len()
                        ))
                        .about(subject)
                    });
                }
                Err(ApiError::Database { code, .. }) if code == RLS_REFUSED => {
                    self.case(true, Failure::default)
                }
                Err(error) => self.case(false, || {
                    Failure::new(format!("{who}: reading `{subject}` failed: {error}"))
                        .about(subject)
                }),
            }
            if let Some(row) = &self.truth.rows(table.name, other).sample {
                let inserted = api.insert(tenant.as_str(), table.name, row).await;
                let passed = matches!(inserted, Err(ApiError::WrongTenant(_)))
                    || matches!(&inserted, Err(ApiError::Database { code, .. }) if code == RLS_REFUSED);
                self.case(passed, || {
                    Failure::new(format!(
                        "{who}: inserting a row of tenant {other} into `{subject}` was not refused as another tenant's ({})",
                        match &inserted {
                            Ok(()) => "it was accepted".to_string(),
                            Err(error) => error.to_string(),
                        }
                    ))
                    .about(subject)
                });
            }
            let their_keys = self.truth.rows(table.name, other).keys.clone();
            let touch: Map<String, Value> = self
                .touch_column(table)
                .and_then(|c| {
                    let row = self.truth.rows(table.name, other).sample.as_ref()?;
                    Some((c.to_string(), row.get(c)?.clone()))
                })
                .into_iter()
                .collect();
            for (verb, outcome) in [
                (
                    "UPDATE",
                    api.update(tenant.as_str(), table.name, key, &their_keys, &touch)
                        .await,
                ),
                (
                    "DELETE",
                    api.delete(tenant.as_str(), table.name, key, &their_keys)
                        .await,
                ),
            ] {
                let passed = matches!(outcome, Ok(0))
                    || matches!(outcome, Err(ApiError::WrongTenant(_)))
                    || matches!(&outcome, Err(ApiError::Database { code, .. }) if code == RLS_REFUSED);
                self.case(passed, || {
                    Failure::new(format!(
                        "{who}: {verb} of tenant {other}'s rows in `{subject}` {}",
                        match &outcome {
                            Ok(n) => format!("changed {n} rows"),
                            Err(error) => format!("failed for another reason: {error}"),
                        }
                    ))
                    .about(subject)
                });
            }
            let Some(own) = owned.keys.first().cloned() else {
                continue;
            };
            if let Some(column) = table.tenant_column() {
                let mut moved = Map::new();
                moved.insert(column.to_string(), self.model.key_type.json(other));
                let outcome = api
                    .update(
                        tenant.as_str(),
                        table.name,
                        key,
                        std::slice::from_ref(&own),
                        &moved,
                    )
                    .await;
                let passed = match &outcome {
                    Err(ApiError::TenantAssigned(_) | ApiError::WrongTenant(_)) => true,
                    Err(ApiError::Database { code, .. }) => {
                        code == RLS_REFUSED || RAISED.contains(&code.as_str())
                    }
                    _ => false,
                };
                self.case(passed, || {
                    Failure::new(format!(
                        "{who}: moving row {own} of `{subject}` to tenant {other} was not refused ({})",
                        match &outcome {
                            Ok(n) => format!("{n} rows changed"),
                            Err(error) => error.to_string(),
                        }
                    ))
                    .about(subject)
                });
            }
            for (parent, children, parents) in self.references(table) {
                let Some(parent_row) = self
                    .model
                    .table(parent)
                    .and_then(|p| self.truth.rows(p.name, other).sample.clone())
                else {
                    continue;
                };
                let values: Map<String, Value> = children
                    .iter()
                    .zip(&parents)
                    .map(|(c, p)| {
                        (
                            c.to_string(),
                            parent_row.get(*p).cloned().unwrap_or(Value::Null),
                        )
                    })
                    .collect();
                let outcome = api
                    .update(
                        tenant.as_str(),
                        table.name,
                        key,
                        std::slice::from_ref(&own),
                        &values,
                    )
                    .await;
                let changed = matches!(outcome, Ok(n) if n > 0);
                if changed {
                    // Put it back, so that later cases see the data they expect.
                    if let Some(original) = &owned.sample {
                        let restore: Map<String, Value> = children
                            .iter()
                            .map(|c| {
                                (
                                    c.to_string(),
                                    original.get(*c).cloned().unwrap_or(Value::Null),
                                )
                            })
                            .collect();
                        let _ = api
                            .update(
                                tenant.as_str(),
                                table.name,
                                key,
                                std::slice::from_ref(&own),
                                &restore,
                            )
                            .await;
                    }
                }
                let passed = match &outcome {
                    Ok(0) => true,
                    Err(ApiError::WrongTenant(_) | ApiError::TenantAssigned(_)) => true,
                    Err(ApiError::Database { code, .. }) => {
                        FOREIGN_KEY_REFUSED.contains(&code.as_str())
                            || RAISED.contains(&code.as_str())
                            || code == RLS_REFUSED
                    }
                    _ => false,
                };
                self.case(passed, || {
                    Failure::new(format!(
                        "{who}: row {own} of `{subject}` {} to reference tenant {other}'s `{parent}` ({})",
                        if changed { "was changed" } else { "failed for another reason when changed" },
                        match &outcome {
                            Ok(n) => format!("{n} rows"),
                            Err(error) => error.to_string(),
                        }
                    ))
                    .fix(composite_fix(self.model, table, parent, &children, &parents))
                    .about(subject)
                });
            }
        }
    }
}

/// What the policy of `table` must say, for fix texts.
fn policy_fix(table: &TableModel<'_>, rls: &RowLevelSecurity) -> String {
    match (table.ownership, table.tenant_column(), &rls.tenant_setting) {
        (Ownership::Parent { parent, .. }, _, _) => format!(
            "the `{}` policy must admit a row only through a `{parent}` row of the current tenant, in USING and WITH CHECK",
            table.name
        ),
        (_, Some(column), Some(setting)) => format!(
            "the `{}` policy must filter USING and WITH CHECK ({column} = NULLIF(current_setting('{setting}', true), ''))",
            table.name
        ),
        _ => format!(
            "the `{}` policy must compare the tenant column with the current tenant in USING and WITH CHECK",
            table.name
        ),
    }
}

fn composite_fix(
    model: &Model<'_>,
    table: &TableModel<'_>,
    parent: &str,
    children: &[&str],
    parents: &[&str],
) -> String {
    let child_column = table
        .tenant_column()
        .unwrap_or(model.config.tenancy.column.as_str());
    let parent_column = model
        .table(parent)
        .and_then(|p| p.tenant_column())
        .unwrap_or(child_column);
    format!(
        "make the foreign key composite: FOREIGN KEY ({child_column}, {}) REFERENCES {parent} ({parent_column}, {})",
        children.join(", "),
        parents.join(", ")
    )
}

#[allow(clippy::too_many_arguments)]
fn reference_failure(
    model: &Model<'_>,
    table: &TableModel<'_>,
    parent: &str,
    children: &[&str],
    parents: &[&str],
    tenant: &TenantValue,
    other: &TenantValue,
    outcome: &StatementResult,
    who: &str,
) -> Failure {
    Failure::new(format!(
        "{who} for tenant {tenant}: a row of `{}` was made to reference tenant {other}'s `{parent}` ({}) {}",
        table.name,
        children.join(", "),
        outcome.describe("and it was not refused")
    ))
    .fix(composite_fix(model, table, parent, children, parents))
    .about(table.name)
}

fn database_message(error: &sqlx::Error) -> String {
    let (code, message) = error_code(error);
    if code.is_empty() {
        message
    } else {
        format!("{message} ({code})")
    }
}

/// Runs `prelude`, then `sql`, in a transaction that is rolled back; the result is
/// `sql`'s (a failing prelude is a failure of its own: the case could not be set up).
async fn in_rolled_back(conn: &mut Conn, prelude: &str, sql: &str) -> StatementResult {
    macro_rules! rolled_back {
        ($c:expr) => {
            match $c.begin().await {
                Ok(mut tx) => {
                    let prepared = if prelude.is_empty() {
                        Ok(())
                    } else {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(prelude.to_string()))
                            .execute(&mut *tx)
                            .await
                            .map(drop)
                    };
                    let result = match prepared {
                        Ok(()) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                            .execute(&mut *tx)
                            .await
                            .map(|d| d.rows_affected()),
                        Err(error) => Err(error),
                    };
                    let _ = tx.rollback().await;
                    result
                }
                Err(error) => Err(error),
            }
        };
    }
    let result = match conn {
        Conn::Postgres(c) => rolled_back!(c),
        Conn::Sqlite(c) => rolled_back!(c),
    };
    StatementResult::from(result)
}

/// PostgreSQL: an INSERT of a copy of `row` that nothing but isolation would refuse: a
/// key with a default is left to it, and text in unique keys gets a suffix.
fn fresh_copy_insert(table: &TableModel<'_>, row: &Map<String, Value>) -> String {
    let mut copy = row.clone();
    for column in &table.table.columns {
        let defaulted = column.default.is_some() || column.identity.is_some();
        if column.generated || (defaulted && table.key.contains(&column.name.as_str())) {
            copy.remove(&column.name);
        }
    }
    let unique: std::collections::BTreeSet<&str> = table
        .table
        .uniques
        .iter()
        .map(|k| &k.columns)
        .chain(
            table
                .table
                .indexes
                .iter()
                .filter(|i| i.unique)
                .map(|i| &i.columns),
        )
        .flatten()
        .map(String::as_str)
        .collect();
    for column in &table.table.columns {
        if unique.contains(column.name.as_str())
            && Some(column.name.as_str()) != table.tenant_column()
            && super::values::is_text(&column.data_type)
            && let Some(Value::String(text)) = copy.get_mut(&column.name)
        {
            text.push_str(" (copy)");
        }
    }
    let columns: Vec<String> = copy.keys().map(|c| quote(c)).collect();
    let name = quote_table(table.name);
    let always = table.table.columns.iter().any(|c| {
        copy.contains_key(&c.name) && c.identity.as_deref() == Some("generated always as identity")
    });
    format!(
        "INSERT INTO {name} ({list}){} SELECT {list} FROM json_populate_record(NULL::{name}, {}::json)",
        if always {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        },
        literal(&Value::Object(copy).to_string()),
        list = columns.join(", ")
    )
}
