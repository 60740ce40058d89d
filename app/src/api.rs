//! The app's tenant-scoped API as Tenantgate's harness drives it: its isolation cases
//! read and write every tenant-owned table through [`ScopedTable`] as each tenant in turn,
//! and fail when the API shows or changes another tenant's rows.

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use tenantgate::api::{ApiError, TenantApi, TenantApiSession};

use crate::{Db, Error, TenantId};

/// The demo app's API for the harness (`Project::api` in the workspace's xtask).
pub struct ShopApi;

pub static SHOP_API: ShopApi = ShopApi;

impl TenantApi for ShopApi {
    fn connect<'a>(
        &'a self,
        url: &'a str,
        role: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Box<dyn TenantApiSession>, String>> {
        Box::pin(async move {
            let db = match role {
                Some(role) => Db::connect_as(url, role).await,
                None => Db::connect(url).await,
            }
            .map_err(|error| error.to_string())?;
            Ok(Box::new(Session { db }) as Box<dyn TenantApiSession>)
        })
    }
}

struct Session {
    db: Db,
}

impl Session {
    fn tenant(tenant: &str) -> Result<TenantId, ApiError> {
        tenant.parse().map(TenantId).map_err(|_| {
            ApiError::Unsupported(format!("the shop's tenants are integers, not `{tenant}`"))
        })
    }
}

fn api_error(error: Error) -> ApiError {
    match error {
        Error::WrongTenant { .. } => ApiError::WrongTenant(error.to_string()),
        Error::TenantColumnAssigned { .. } => ApiError::TenantAssigned(error.to_string()),
        Error::Database(sqlx::Error::Database(db)) => ApiError::Database {
            code: db.code().map(|c| c.to_string()).unwrap_or_default(),
            message: db.message().to_string(),
        },
        other => ApiError::Other(other.to_string()),
    }
}

impl TenantApiSession for Session {
    fn keys<'a>(
        &'a self,
        tenant: &'a str,
        table: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ApiError>> {
        Box::pin(async move {
            let tenant = self.db.tenant(Session::tenant(tenant)?);
            let scoped = tenant.table(table).map_err(api_error)?;
            scoped.keys(key).await.map_err(api_error)
        })
    }

    fn insert<'a>(
        &'a self,
        tenant: &'a str,
        table: &'a str,
        row: &'a Map<String, Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let tenant = self.db.tenant(Session::tenant(tenant)?);
            let scoped = tenant.table(table).map_err(api_error)?;
            scoped.insert(row).await.map_err(api_error)
        })
    }

    fn update<'a>(
        &'a self,
        tenant: &'a str,
        table: &'a str,
        key: &'a str,
        keys: &'a [String],
        values: &'a Map<String, Value>,
    ) -> BoxFuture<'a, Result<u64, ApiError>> {
        Box::pin(async move {
            let tenant = self.db.tenant(Session::tenant(tenant)?);
            let scoped = tenant.table(table).map_err(api_error)?;
            scoped.update(key, keys, values).await.map_err(api_error)
        })
    }

    fn delete<'a>(
        &'a self,
        tenant: &'a str,
        table: &'a str,
        key: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<u64, ApiError>> {
        Box::pin(async move {
            let tenant = self.db.tenant(Session::tenant(tenant)?);
            let scoped = tenant.table(table).map_err(api_error)?;
            scoped.delete(key, keys).await.map_err(api_error)
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.db.close().await })
    }
}
