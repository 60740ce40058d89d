//! The app's tenant-scoped API on real PostgreSQL and SQLite: tenant A never sees or
//! changes tenant B's rows, and a row can never point at another tenant's row.

use app::{Db, TenantId};
use sqlx::Executor;
use tenantgate::Backend;

const SHOPS: [(i64, &str); 3] = [
    (10, "acme-repairs"),
    (20, "bolt-phones"),
    (30, "cedar-books"),
];

/// A migrated database with three tenants besides the default one, each with a store,
/// a cashier, a customer, products and an order made through the API.
async fn shops(db: &Db) -> anyhow::Result<()> {
    db.migrate().await?;
    let insert_tenants = "INSERT INTO tenants (id, slug, name) VALUES (10, 'acme-repairs', 'Acme'), (20, 'bolt-phones', 'Bolt'), (30, 'cedar-books', 'Cedar')";
    match db {
        Db::Postgres(pool) => {
            pool.execute(insert_tenants).await?;
        }
        Db::Sqlite(pool) => {
            pool.execute(insert_tenants).await?;
        }
    }
    for (id, slug) in SHOPS {
        let shop = db.tenant(TenantId(id));
        let store = shop
            .create_store("MAIN", &format!("{slug} main street"), "USD")
            .await?;
        let cashier = shop
            .create_user(Some(store), "sam", "Sam Cashier", "cashier")
            .await?;
        let customer = shop
            .create_customer(&format!("Customer of {slug}"), Some("same@mail.example"))
            .await?;
        for n in 0..id / 10 + 1 {
            shop.create_product(
                &format!("SKU-{n}"),
                &format!("{slug} product {n}"),
                100 * (n + 1),
            )
            .await?;
        }
        let product = shop.products().await?[0].id;
        let order = shop
            .create_order("0001", store, Some(customer), cashier)
            .await?;
        assert!(shop.add_order_item(order, product, 2).await?);
    }
    Ok(())
}

async fn check_isolation(db: &Db) -> anyhow::Result<()> {
    shops(db).await?;
    let [a, b, _] = SHOPS.map(|(id, _)| db.tenant(TenantId(id)));

    // Reads see exactly the tenant's own rows, although every tenant reuses the same
    // store code, username, customer email, SKUs and order number.
    for (id, slug) in SHOPS {
        let shop = db.tenant(TenantId(id));
        let stores = shop.stores().await?;
        assert_eq!(stores.len(), 1, "{slug} sees one store");
        assert!(
            stores[0].name.starts_with(slug),
            "{slug} sees its own store, not {:?}",
            stores[0]
        );
        assert_eq!(
            shop.products().await?.len() as i64,
            id / 10 + 1,
            "{slug} sees only its products"
        );
        assert!(
            shop.products()
                .await?
                .iter()
                .all(|p| p.name.starts_with(slug))
        );
        assert_eq!(shop.customers().await?.len(), 1);
        assert_eq!(shop.orders().await?.len(), 1);
    }

    // Another tenant's row, addressed by its id, is neither readable nor writable.
    let b_product = b.products().await?[0].clone();
    assert_eq!(
        a.product(b_product.id).await?,
        None,
        "A reads B's product by id"
    );
    assert!(
        !a.set_product_price(b_product.id, 1).await?,
        "A changed B's price"
    );
    assert!(
        !a.delete_product(b_product.id).await?,
        "A deleted B's product"
    );
    assert_eq!(
        b.product(b_product.id).await?,
        Some(b_product.clone()),
        "B's product is untouched"
    );

    // A row cannot point at another tenant's row: the composite foreign keys refuse.
    let b_store = b.stores().await?[0].id;
    let a_cashier = sqlx_first_user(db, 10).await?;
    let error = a
        .create_order("0002", b_store, None, a_cashier)
        .await
        .expect_err("A ordered in B's store");
    assert!(
        error.to_string().to_lowercase().contains("foreign key"),
        "unexpected error: {error}"
    );
    let a_order = a.orders().await?[0].id;
    assert!(
        !a.add_order_item(a_order, b_product.id, 1).await?,
        "A sold B's product"
    );

    // An unknown tenant sees nothing and cannot write.
    let nobody = db.tenant(TenantId(999));
    assert!(nobody.stores().await?.is_empty());
    assert!(nobody.create_store("X", "X", "USD").await.is_err());
    Ok(())
}

/// The id of the first user of a tenant, read the way the app does.
async fn sqlx_first_user(db: &Db, tenant: i64) -> anyhow::Result<i64> {
    let sql = "SELECT id FROM users WHERE tenant_id = $1 ORDER BY id LIMIT 1";
    Ok(match db {
        Db::Postgres(pool) => sqlx::query_scalar(sql).bind(tenant).fetch_one(pool).await?,
        Db::Sqlite(pool) => sqlx::query_scalar(sql).bind(tenant).fetch_one(pool).await?,
    })
}

/// Runs `check_isolation` through the API on a fresh, migrated database of `backend`.
async fn isolation_on_fresh(backend: Backend) -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(backend, async |database| {
        let db = Db::connect(&database.url).await?;
        let result = check_isolation(&db).await;
        db.close().await;
        result
    })
    .await
}

#[tokio::test]
async fn sqlite_tenants_never_see_each_other() -> anyhow::Result<()> {
    isolation_on_fresh(Backend::Sqlite).await
}

#[tokio::test]
async fn postgres_tenants_never_see_each_other() -> anyhow::Result<()> {
    isolation_on_fresh(Backend::Postgres).await
}

/// On PostgreSQL the database itself enforces isolation: connected as the application
/// role, even SQL that forgets the tenant filter sees one tenant, and with no tenant set
/// it fails closed.
#[tokio::test]
async fn postgres_row_level_security_holds_for_the_app_role() -> anyhow::Result<()> {
    tenantgate_tests::with_fresh_database(Backend::Postgres, async |database| {
        let owner = Db::connect(&database.url).await?;
        shops(&owner).await?;
        let as_app_role = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .after_connect(|conn, _| {
                Box::pin(async move { conn.execute("SET ROLE tenantgate_app").await.map(drop) })
            })
            .connect(&database.url)
            .await?;
        let result = async {
            // Guard: the suite must not pass vacuously as a role that bypasses RLS.
            let (superuser, bypass): (bool, bool) = sqlx::query_as(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
            )
            .fetch_one(&as_app_role)
            .await?;
            assert!(
                !superuser && !bypass,
                "the app role bypasses row-level security"
            );

            let unfiltered: i64 = sqlx::query_scalar("SELECT count(*) FROM products")
                .fetch_one(&as_app_role)
                .await?;
            assert_eq!(
                unfiltered, 0,
                "with no tenant set, the database must fail closed"
            );

            let mut tx = as_app_role.begin().await?;
            sqlx::query("SELECT set_config('app.tenant_id', '20', true)")
                .execute(&mut *tx)
                .await?;
            let tenants: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM products")
                .fetch_all(&mut *tx)
                .await?;
            assert_eq!(tenants, vec![20], "tenant 20 saw other tenants' products");
            let stolen = sqlx::query("UPDATE products SET price_cents = 0 WHERE tenant_id = 10")
                .execute(&mut *tx)
                .await?;
            assert_eq!(
                stolen.rows_affected(),
                0,
                "tenant 20 updated tenant 10's products"
            );
            let planted = sqlx::query(
                "INSERT INTO products (tenant_id, sku, name, price_cents) VALUES (10, 'X', 'x', 1)",
            )
            .execute(&mut *tx)
            .await;
            assert!(planted.is_err(), "tenant 20 inserted a row for tenant 10");
            tx.rollback().await?;

            // The API works unchanged through the application role.
            let app = Db::Postgres(as_app_role.clone());
            assert_eq!(app.tenant(TenantId(30)).products().await?.len(), 4);
            anyhow::Ok(())
        }
        .await;
        as_app_role.close().await;
        owner.close().await;
        result
    })
    .await
}
