//! The tenant-scoped data access API.
//!
//! A caller names its tenant once, with [`Db::tenant`]; every method of the returned
//! [`Tenant`] runs in its own transaction that is bound to that tenant:
//! - on PostgreSQL the transaction sets `app.tenant_id`, which the row-level security
//!   policies of migration 0007 check, *and* every statement filters by `tenant_id`;
//! - on SQLite, which has no row-level security, the explicit filter is the guard.
//!
//! No method takes a tenant id as an argument, so none can reach another tenant's rows.

use std::str::FromStr;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use tenantgate::Backend;

use crate::Error;

/// The key of a row in the tenants table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub i64);

/// A connection pool to either backend.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    /// Connects to `url`; a SQLite file is created when it does not exist.
    pub async fn connect(url: &str) -> Result<Db, Error> {
        Ok(match Backend::from_url(url)? {
            Backend::Postgres => {
                Db::Postgres(PgPoolOptions::new().max_connections(4).connect(url).await?)
            }
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?.create_if_missing(true);
                Db::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .connect_with(options)
                        .await?,
                )
            }
        })
    }

    /// Connects to `url` and, on PostgreSQL, switches every connection to `role` (as an
    /// app whose login role is a member of the application role does). SQLite has no roles.
    pub async fn connect_as(url: &str, role: &str) -> Result<Db, Error> {
        let Backend::Postgres = Backend::from_url(url)? else {
            return Db::connect(url).await;
        };
        let set_role = format!("SET ROLE \"{}\"", role.replace('"', "\"\""));
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _| {
                let set_role = set_role.clone();
                Box::pin(async move {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(set_role))
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            .connect(url)
            .await?;
        Ok(Db::Postgres(pool))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies every pending embedded migration.
    pub async fn migrate(&self) -> Result<(), Error> {
        match self {
            Db::Postgres(pool) => crate::POSTGRES.run(pool).await?,
            Db::Sqlite(pool) => crate::SQLITE.run(pool).await?,
        }
        Ok(())
    }

    /// The data of one tenant. The tenant is not looked up: an unknown tenant sees nothing
    /// and cannot write (the tenant foreign key rejects it).
    pub fn tenant(&self, id: TenantId) -> Tenant<'_> {
        Tenant { db: self, id }
    }

    pub async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }
}

/// A store of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Store {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub currency_code: String,
}

/// A product of a tenant's catalogue.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Product {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
}

/// A customer of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Customer {
    pub id: i64,
    pub full_name: String,
    pub email: Option<String>,
}

/// An order, with its total.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Order {
    pub id: i64,
    pub number: String,
    pub store_id: i64,
    pub customer_id: Option<i64>,
    pub total_cents: i64,
}

/// One tenant's view of the database. See the module documentation.
#[derive(Clone, Copy, Debug)]
pub struct Tenant<'db> {
    pub(crate) db: &'db Db,
    pub(crate) id: TenantId,
}

// Runs `$body` in a transaction bound to the tenant, on whichever backend `$self` uses.
// The body is written once and compiled for each backend, since sqlx's query builders
// are generic over the database.
macro_rules! in_tenant_transaction {
    ($self:ident, |$tx:ident| $body:block) => {
        match $self.db {
            Db::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
                    .bind($self.id.0.to_string())
                    .execute(&mut *$tx)
                    .await?;
                let result = $body;
                $tx.commit().await?;
                Ok(result)
            }
            Db::Sqlite(pool) => {
                let mut $tx = pool.begin().await?;
                let result = $body;
                $tx.commit().await?;
                Ok(result)
            }
        }
    };
}
pub(crate) use in_tenant_transaction;

const INSERT_STORE: &str = "INSERT INTO stores (tenant_id, code, name, currency_code) \
     VALUES ($1, $2, $3, $4) RETURNING id";
const SELECT_STORES: &str =
    "SELECT id, code, name, currency_code FROM stores WHERE tenant_id = $1 ORDER BY id";
const INSERT_PRODUCT: &str = "INSERT INTO products (tenant_id, sku, name, price_cents) \
     VALUES ($1, $2, $3, $4) RETURNING id";
const SELECT_PRODUCTS: &str =
    "SELECT id, sku, name, price_cents FROM products WHERE tenant_id = $1 ORDER BY id";
const SELECT_PRODUCT: &str =
    "SELECT id, sku, name, price_cents FROM products WHERE tenant_id = $1 AND id = $2";
const UPDATE_PRODUCT_PRICE: &str =
    "UPDATE products SET price_cents = $3 WHERE tenant_id = $1 AND id = $2";
const DELETE_PRODUCT: &str = "DELETE FROM products WHERE tenant_id = $1 AND id = $2";
const INSERT_CUSTOMER: &str =
    "INSERT INTO customers (tenant_id, full_name, email) VALUES ($1, $2, $3) RETURNING id";
const SELECT_CUSTOMERS: &str =
    "SELECT id, full_name, email FROM customers WHERE tenant_id = $1 ORDER BY id";
const INSERT_USER: &str = "INSERT INTO users (tenant_id, store_id, username, email, full_name, role) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
const INSERT_ORDER: &str = "INSERT INTO orders (tenant_id, number, store_id, customer_id, cashier_id) \
     VALUES ($1, $2, $3, $4, $5) RETURNING id";
const INSERT_ORDER_ITEM: &str = "INSERT INTO order_items (tenant_id, order_id, product_id, quantity, unit_price_cents) \
     SELECT $1, $2, id, $4, price_cents FROM products WHERE tenant_id = $1 AND id = $3 \
     RETURNING unit_price_cents * quantity";
const ADD_TO_ORDER_TOTAL: &str =
    "UPDATE orders SET total_cents = total_cents + $3 WHERE tenant_id = $1 AND id = $2";
const SELECT_ORDERS: &str = "SELECT id, number, store_id, customer_id, total_cents \
     FROM orders WHERE tenant_id = $1 ORDER BY id";

impl<'db> Tenant<'db> {
    pub fn id(&self) -> TenantId {
        self.id
    }

    pub async fn create_store(
        &self,
        code: &str,
        name: &str,
        currency_code: &str,
    ) -> Result<i64, Error> {
        in_tenant_transaction!(self, |tx| {
            sqlx::query_scalar(INSERT_STORE)
                .bind(self.id.0)
                .bind(code)
                .bind(name)
                .bind(currency_code)
                .fetch_one(&mut *tx)
                .await?
        })
    }

    pub async fn stores(&self) -> Result<Vec<Store>, Error> {
        in_tenant_transaction!(self, |tx| {
            sqlx::query_as(SELECT_STORES)
                .bind(self.id.0)
                .fetch_all(&mut *tx)
                .await?
        })
    }

    pub async fn create_product(
        &self,
        sku: &str,
        name: &str,
        price_cents: i64,
    ) -> Result<i64, Error> {
        in_tenant_transaction!(self, |tx| {
            sqlx::query_scalar(INSERT_PRODUCT)
                .bind(self.id.0)
                .bind(sku)
                .bind(name)
                .bind(price_cents)
                .fetch_one(&mut *tx)
                .await?
        })
    }

    pub async fn products(&self) -> Result<Vec<Product>, Error> {
        in_tenant_transaction!(self, |tx| {
            sqlx::query_as(SELECT_PRODUCTS)
                .bind(self.id.0)
                .fetch_all(&mut *tx)
                .await?
        })
    }

    /// The product with this id, if this tenant has one.
    pub async fn product(&self, id: i64) -> Result<Option<Product>, Error> {
        in_tenant_transaction!(self, |tx| {
            sqlx::query_as(SELECT_PRODUCT)
                .bind(self.id.0)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        })
    }

    /// Sets a product's price; false when this tenant has no such product.
    pub async fn set_product_price(&self, id: i64, price_cents: i64) -> Result<bool, Error> {
        in_tenant_transaction!(self, |tx| {
            let done = sqlx::query(UPDATE_PRODUCT_PRICE)
                .bind(self.id.0)
                .bind(id)
                .bind(price_cents)
                .execute(&mut *tx)
                .await?;
            done.rows_affected() == 1
        })
    }

    /// Deletes a product; false when this tenant has no such product.
    pub async fn delete_product(&self, id: i64) -> Result<bool, Error> {
        in_tenant_transaction!(self, |tx| {
            let done = sqlx::query(DELETE_PRODUCT)
                .bind(self.id.0)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            done.rows_affected() == 1
        })
    }

    pub async fn create_customer(
        &self,
        full_name: &str,
        email: Option<&str>,
    ) -> Result<i64, Error> {
        in_tenant_transaction!(self, |tx| {
            sqlx::query_scalar(INSERT_CUSTOMER)
                .bind(self.id.0)
                .bind(full_name)
                .bind(email)
                .fetch_one(&mut *tx)
                .await?
        })
    }

    pub async fn customers(&self) -> Result<Vec<Customer>, Error> {
        in_tenant_transaction!(self, |tx| {
            sqlx::query_as(SELECT_CUSTOMERS)
                .bind(self.id.0)
                .fetch_all(&mut *tx)
                .await?
        })
    }

    /// Creates a member of staff; `role` is one of owner, manager, cashier, technician.
    pub async fn create_user(
        &self,
        store_id: Option<i64>,
        username: &str,
        full_name: &str,
        role: &str,
    ) -> Result<i64, Error> {
        let email = format!("{username}@shop.example");
        in_tenant_transaction!(self, |tx| {
            sqlx::query_scalar(INSERT_USER)
                .bind(self.id.0)
                .bind(store_id)
                .bind(username)
                .bind(&email)
                .bind(full_name)
                .bind(role)
                .fetch_one(&mut *tx)
                .await?
        })
    }

    /// Opens an order. The store, customer and cashier must be this tenant's: the composite
    /// foreign keys reject an id that belongs to another tenant.
    pub async fn create_order(
        &self,
        number: &str,
        store_id: i64,
        customer_id: Option<i64>,
        cashier_id: i64,
    ) -> Result<i64, Error> {
        in_tenant_transaction!(self, |tx| {
            sqlx::query_scalar(INSERT_ORDER)
                .bind(self.id.0)
                .bind(number)
                .bind(store_id)
                .bind(customer_id)
                .bind(cashier_id)
                .fetch_one(&mut *tx)
                .await?
        })
    }

    /// Adds a line at the product's current price; false when this tenant has no such product.
    pub async fn add_order_item(
        &self,
        order_id: i64,
        product_id: i64,
        quantity: i64,
    ) -> Result<bool, Error> {
        in_tenant_transaction!(self, |tx| {
            let line_total: Option<i64> = sqlx::query_scalar(INSERT_ORDER_ITEM)
                .bind(self.id.0)
                .bind(order_id)
                .bind(product_id)
                .bind(quantity)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(line_total) = line_total {
                sqlx::query(ADD_TO_ORDER_TOTAL)
                    .bind(self.id.0)
                    .bind(order_id)
                    .bind(line_total)
                    .execute(&mut *tx)
                    .await?;
            }
            line_total.is_some()
        })
    }

    pub async fn orders(&self) -> Result<Vec<Order>, Error> {
        in_tenant_transaction!(self, |tx| {
            sqlx::query_as(SELECT_ORDERS)
                .bind(self.id.0)
                .fetch_all(&mut *tx)
                .await?
        })
    }
}
