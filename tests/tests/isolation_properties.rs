//! Property-based isolation: random sequences of operations by random tenants on random
//! tenant-owned tables (every table of the schema), through the app's tenant-scoped API
//! and, on PostgreSQL, as raw SQL under row-level security. After every operation by
//! tenant A, every other tenant's data is exactly what it was, and A's reads saw only A.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use app::{Db, TenantId};
use tenantgate::config::Config;
use tenantgate::db::{Conn, Scope, quote, quote_table};
use tenantgate::schema::Schema;
use tenantgate::{Backend, TenantValue};
use tenantgate_harness::isolation::{Model, key_text, populate, rows_as_json};
use tenantgate_harness::provision::Janitor;
use tenantgate_tests::fresh_database;

/// Cases per backend; `TENANTGATE_PROPTEST_CASES` raises it for a longer soak.
fn cases() -> u32 {
    std::env::var("TENANTGATE_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24)
}

#[derive(Clone, Debug)]
enum Operation {
    /// Read the table through the API.
    Read,
    /// Insert a fresh copy of a row owned by the `source` tenant.
    InsertCopy { source: usize },
    /// Rewrite a text column of the `target` tenant's rows.
    Update { target: usize, text: String },
    /// Delete one row of the `target` tenant.
    Delete { target: usize, pick: usize },
    /// PostgreSQL: an UPDATE with no tenant filter at all, as the app role.
    RawUpdateEverything { text: String },
    /// PostgreSQL: a DELETE with no tenant filter at all, as the app role.
    RawDeleteEverything,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        Just(Operation::Read),
        (0..3usize).prop_map(|source| Operation::InsertCopy { source }),
        (0..3usize, "[a-z]{1,8}").prop_map(|(target, text)| Operation::Update { target, text }),
        (0..3usize, 0..50usize).prop_map(|(target, pick)| Operation::Delete { target, pick }),
        "[a-z]{1,8}".prop_map(|text| Operation::RawUpdateEverything { text }),
        Just(Operation::RawDeleteEverything),
    ]
}

/// (acting tenant, table index, operation)
type Step = (usize, usize, Operation);

struct World<'a> {
    backend: Backend,
    admin: Conn,
    db: Db,
    model: Model<'a>,
    tenants: Vec<TenantValue>,
    role: String,
}

/// Every row of `tenant`, per table, hashed.
async fn fingerprint(
    admin: &mut Conn,
    model: &Model<'_>,
    tenant: &TenantValue,
) -> BTreeMap<String, String> {
    let mut prints = BTreeMap::new();
    for table in &model.tables {
        let filter = model.belongs(table, "t", tenant);
        let rows = admin
            .texts(&rows_as_json(admin.backend(), table, &filter))
            .await
            .unwrap();
        let digest = Sha256::digest(rows.join("\n").as_bytes());
        prints.insert(
            table.name.to_string(),
            format!("{} rows {digest:x}", rows.len()),
        );
    }
    prints
}

/// The keys of `tenant`'s rows of table number `table`, as the administrator sees them.
async fn keys(
    admin: &mut Conn,
    model: &Model<'_>,
    table: usize,
    tenant: &TenantValue,
) -> Vec<String> {
    let table = &model.tables[table];
    let sql = format!(
        "SELECT {} FROM {} t WHERE {}",
        key_text("t", &table.key),
        quote_table(table.name),
        model.belongs(table, "t", tenant)
    );
    let mut keys = admin.texts(&sql).await.unwrap();
    keys.sort();
    keys
}

impl World<'_> {
    /// Runs one step; returns an error when the property is broken.
    async fn run(&mut self, (actor, table_index, operation): &Step) -> Result<(), TestCaseError> {
        let World {
            backend,
            admin,
            db,
            model,
            tenants,
            role,
        } = self;
        let backend = *backend;
        let tenant = tenants[*actor].clone();
        let table = &model.tables[*table_index];
        let (name, key) = (table.name.to_string(), table.key[0].to_string());
        let before: Vec<(TenantValue, BTreeMap<String, String>)> = {
            let mut prints = Vec::new();
            for other in tenants.iter().filter(|t| **t != tenant) {
                prints.push((other.clone(), fingerprint(admin, model, other).await));
            }
            prints
        };
        let scoped_tenant = db.tenant(TenantId(tenant.as_str().parse().unwrap()));
        let scoped = scoped_tenant.table(&name).unwrap();
        let text_column = table
            .table
            .columns
            .iter()
            .find(|c| {
                c.data_type.to_lowercase().contains("text")
                    && c.name != key
                    && !table
                        .table
                        .foreign_keys
                        .iter()
                        .any(|fk| fk.columns.contains(&c.name))
            })
            .map(|c| c.name.clone());
        match operation {
            Operation::Read => {
                let mut seen = scoped.keys(&key).await.unwrap();
                seen.sort();
                let owned = keys(admin, model, *table_index, &tenant).await;
                prop_assert_eq!(seen, owned, "tenant {} read `{}`", tenant, name);
            }
            Operation::InsertCopy { source } => {
                let source = tenants[*source].clone();
                let filter = model.belongs(table, "t", &source);
                let rows = admin
                    .texts(&rows_as_json(backend, table, &filter))
                    .await
                    .unwrap();
                if let Some(row) = rows.first() {
                    let mut row: Map<String, Value> = serde_json::from_str(row).unwrap();
                    row.remove(&key);
                    for value in row.values_mut() {
                        if let Value::String(text) = value {
                            text.push_str(" copy");
                        }
                    }
                    let inserted = scoped.insert(&row).await;
                    if source != tenant {
                        prop_assert!(
                            matches!(inserted, Err(app::Error::WrongTenant { .. })),
                            "tenant {} inserted tenant {}'s row into `{}`: {:?}",
                            tenant,
                            source,
                            name,
                            inserted
                        );
                    }
                }
            }
            Operation::Update { target, text } => {
                let target = tenants[*target].clone();
                let keys = keys(admin, model, *table_index, &target).await;
                if let Some(column) = &text_column {
                    let mut values = Map::new();
                    values.insert(column.clone(), Value::from(text.clone()));
                    let changed = scoped.update(&key, &keys, &values).await;
                    if target != tenant {
                        prop_assert!(
                            matches!(changed, Ok(0) | Err(_)),
                            "tenant {} updated tenant {}'s `{}`: {:?}",
                            tenant,
                            target,
                            name,
                            changed
                        );
                    }
                }
            }
            Operation::Delete { target, pick } => {
                let target = tenants[*target].clone();
                let keys = keys(admin, model, *table_index, &target).await;
                if !keys.is_empty() {
                    let one = keys[pick % keys.len()].clone();
                    let deleted = scoped.delete(&key, &[one]).await;
                    if target != tenant {
                        prop_assert!(
                            matches!(deleted, Ok(0) | Err(_)),
                            "tenant {} deleted tenant {}'s `{}` row: {:?}",
                            tenant,
                            target,
                            name,
                            deleted
                        );
                    }
                }
            }
            Operation::RawUpdateEverything { text } => {
                if let (Conn::Postgres(conn), Some(column)) = (&mut *admin, &text_column) {
                    raw_as_tenant(
                        conn,
                        role,
                        &tenant,
                        &format!(
                            "UPDATE {} SET {} = {}",
                            quote_table(&name),
                            quote(column),
                            xtask_literal(text)
                        ),
                    )
                    .await;
                }
            }
            Operation::RawDeleteEverything => {
                if let Conn::Postgres(conn) = &mut *admin {
                    raw_as_tenant(
                        conn,
                        role,
                        &tenant,
                        &format!("DELETE FROM {}", quote_table(&name)),
                    )
                    .await;
                }
            }
        }
        for (other, print) in before {
            let after = fingerprint(admin, model, &other).await;
            prop_assert_eq!(
                print,
                after,
                "tenant {}'s data changed after tenant {} ran {:?} on `{}`",
                &other,
                tenant,
                operation,
                name
            );
        }
        Ok(())
    }
}

fn xtask_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Runs a statement as the app role for `tenant` and commits it; failures are allowed
/// (a DELETE of parents is refused by their children), leaks are not.
async fn raw_as_tenant(conn: &mut sqlx::PgConnection, role: &str, tenant: &TenantValue, sql: &str) {
    let script = format!(
        "BEGIN; SET LOCAL ROLE {}; SELECT set_config('app.tenant_id', '{tenant}', true); {sql}; COMMIT;",
        quote(role)
    );
    if sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .execute(&mut *conn)
        .await
        .is_err()
    {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    }
}

fn check_backend(backend: Backend) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let janitor = Janitor::new();
    let config = Config::load(&tenantgate_tests::demo_config_path()).unwrap();
    let database = runtime.block_on(fresh_database(backend, &janitor)).unwrap();
    let (mut admin, schema) = runtime.block_on(async {
        let db = Db::connect(&database.url).await.unwrap();
        db.migrate().await.unwrap();
        db.close().await;
        let mut admin = Conn::connect(backend, &database.url).await.unwrap();
        let schema = Schema::read(&mut admin, "_sqlx_migrations", &Scope::Database)
            .await
            .unwrap();
        (admin, schema)
    });
    let model = Model::new(&config, &schema, backend).unwrap();
    let tenants = runtime
        .block_on(populate(&mut admin, &model))
        .unwrap()
        .tenants;
    let role = config.row_level_security().unwrap().app_role.clone();
    let db = runtime
        .block_on(Db::connect_as(&database.url, &role))
        .unwrap();
    let tables = model.tables.len();
    let world = std::cell::RefCell::new(World {
        backend,
        admin,
        db,
        model,
        tenants,
        role,
    });
    let mut runner = TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let steps = proptest::collection::vec((0..3usize, 0..tables, operation()), 1..6);
    let result = runner.run(&steps, |steps| {
        let mut world = world.borrow_mut();
        let world = &mut *world;
        runtime.block_on(async {
            for step in &steps {
                world.run(step).await?;
            }
            Ok(())
        })
    });
    let world = world.into_inner();
    runtime.block_on(async {
        world.db.close().await;
        world.admin.close().await;
        let leftovers = janitor.finish(false).await;
        assert!(leftovers.is_empty(), "cleanup failed: {leftovers:?}");
    });
    if let Err(error) = result {
        panic!("{backend}: {error}");
    }
}

#[test]
fn no_operation_by_one_tenant_observes_or_changes_another_on_postgres() {
    check_backend(Backend::Postgres);
}

#[test]
fn no_operation_by_one_tenant_observes_or_changes_another_on_sqlite() {
    check_backend(Backend::Sqlite);
}
