//! The tenancy facts the behavioural cases need, from the configuration and the
//! introspected schema alone: the tenants table and its key type, each tenant-owned table
//! with how it carries its tenant (its own column, or its parent's), and the columns that
//! identify one of its rows.

use std::collections::BTreeSet;

use tenantgate::checks::Failure;
use tenantgate::config::Config;
use tenantgate::db::{literal, quote, quote_table};
use tenantgate::rules::{Ownership, tenant_owned, tenants_key};
use tenantgate::schema::{ForeignKey, Schema, Table};
use tenantgate::{Backend, KeyType, TenantValue};

/// See the module documentation.
pub struct Model<'a> {
    pub config: &'a Config,
    pub schema: &'a Schema,
    pub backend: Backend,
    /// The tenants table, as the schema names it.
    pub tenants_table: &'a str,
    pub tenants: &'a Table,
    pub tenants_key: &'a str,
    pub key_type: KeyType,
    /// Tenant-owned tables that carry their tenant, parents before children.
    pub tables: Vec<TableModel<'a>>,
    /// Tenant-owned tables the cases cannot place in a tenant, with the reason (they fail
    /// `tenant-column`, and are reported, never dropped silently).
    pub unplaced: Vec<(&'a str, String)>,
}

impl<'a> TableModel<'a> {
    /// The table's own tenant column, when it has one.
    pub fn tenant_column(&self) -> Option<&'a str> {
        match self.ownership {
            Ownership::Column(column) => Some(column),
            Ownership::Parent { .. } => None,
        }
    }
}

pub struct TableModel<'a> {
    pub name: &'a str,
    pub table: &'a Table,
    pub ownership: Ownership<'a>,
    /// Owned through a parent: the foreign key to it.
    pub parent_fk: Option<&'a ForeignKey>,
    /// The columns that identify a row among every tenant's rows: the primary key (with
    /// the tenant column when it is part of it: `(tenant_id, id)` repeats ids across
    /// tenants), else a unique key of NOT NULL columns, else the row's physical address
    /// (PostgreSQL's `ctid`, SQLite's `rowid`), which stays put in the rolled-back
    /// transactions the cases run in.
    pub key: Vec<&'a str>,
    /// The key is `ctid` or `rowid`, not columns of the table.
    pub physical_key: bool,
}

impl<'a> Model<'a> {
    pub fn new(
        config: &'a Config,
        schema: &'a Schema,
        backend: Backend,
    ) -> Result<Model<'a>, Failure> {
        let config_file = crate::display_path(&config.path);
        let tenants_name = &config.tenancy.tenants_table;
        let (tenants_table, tenants) = schema.table(tenants_name).ok_or_else(|| {
            Failure::new(format!(
                "there is no tenants table `{tenants_name}` after the migrations, so the isolation cases have no tenants to play"
            ))
            .fix(format!("correct tenancy.tenants_table in {config_file}"))
            .in_file(config_file.clone())
        })?;
        let tenants_key = tenants_key(config, schema).ok_or_else(|| {
            Failure::new(format!(
                "the tenants table `{tenants_table}` has no single-column primary key, so the harness cannot tell its tenants apart"
            ))
            .fix(format!("name the key in tenancy.tenants_key in {config_file}"))
            .in_file(config_file.clone())
        })?;
        let key_column = tenants.column(tenants_key).ok_or_else(|| {
            Failure::new(format!(
                "tenancy.tenants_key names `{tenants_key}`, which `{tenants_table}` does not have"
            ))
            .fix(format!("correct tenancy.tenants_key in {config_file}"))
            .in_file(config_file.clone())
        })?;
        let key_type = KeyType::of(&key_column.data_type);
        let mut candidates = Vec::new();
        let mut unplaced = Vec::new();
        for (name, table, ownership) in tenant_owned(config, schema) {
            match ownership {
                Ownership::Column(column) if table.column(column).is_none() => {
                    unplaced.push((name, format!("it has no `{column}` column")));
                }
                Ownership::Parent { parent, .. } => match table.references(parent).next() {
                    Some(fk) => candidates.push((name, table, ownership, Some(fk))),
                    None => unplaced.push((name, format!("it has no foreign key to `{parent}`"))),
                },
                Ownership::Column(_) => candidates.push((name, table, ownership, None)),
            }
        }
        // Children whose parent could not be placed cannot be placed either.
        loop {
            let placed: BTreeSet<&str> = candidates.iter().map(|c| c.0).collect();
            let before = candidates.len();
            candidates.retain(|(name, _, ownership, _)| match ownership {
                Ownership::Parent { parent, .. } => {
                    let ok = placed
                        .iter()
                        .any(|p| tenantgate::config::same_table(p, parent));
                    if !ok {
                        unplaced.push((name, format!("its parent `{parent}` carries no tenant")));
                    }
                    ok
                }
                Ownership::Column(_) => true,
            });
            if candidates.len() == before {
                break;
            }
        }
        let order = parents_first(&candidates.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>());
        let tables = order
            .into_iter()
            .map(|name| {
                let (name, table, ownership, parent_fk) = *candidates
                    .iter()
                    .find(|c| c.0 == name)
                    .expect("ordered from the candidates");
                let key = row_key(table);
                let physical_key = key.is_empty();
                TableModel {
                    name,
                    table,
                    ownership,
                    parent_fk,
                    key: if physical_key {
                        vec![match backend {
                            Backend::Postgres => "ctid",
                            Backend::Sqlite => "rowid",
                        }]
                    } else {
                        key
                    },
                    physical_key,
                }
            })
            .collect();
        Ok(Model {
            config,
            schema,
            backend,
            tenants_table,
            tenants,
            tenants_key,
            key_type,
            tables,
            unplaced,
        })
    }

    pub fn table(&self, name: &str) -> Option<&TableModel<'a>> {
        self.tables
            .iter()
            .find(|t| tenantgate::config::same_table(t.name, name))
    }

    pub fn is_tenant_owned(&self, table: &str) -> bool {
        self.table(table).is_some()
    }

    pub fn is_tenants_table(&self, table: &str) -> bool {
        tenantgate::config::same_table(self.tenants_table, table)
    }

    /// The tenant as a SQL literal of the key's type.
    pub fn literal(&self, tenant: &TenantValue) -> String {
        self.key_type.literal(self.backend, tenant)
    }

    /// The SQL condition under which a row of `table` (aliased `alias`) belongs to
    /// `tenant`: its tenant column, or its parent's, through the foreign key.
    pub fn belongs(&self, table: &TableModel<'_>, alias: &str, tenant: &TenantValue) -> String {
        self.belongs_at(table, alias, tenant, 0)
    }

    fn belongs_at(
        &self,
        table: &TableModel<'_>,
        alias: &str,
        tenant: &TenantValue,
        depth: usize,
    ) -> String {
        match (table.ownership, table.parent_fk) {
            (Ownership::Column(column), _) => {
                format!("{alias}.{} = {}", quote(column), self.literal(tenant))
            }
            (Ownership::Parent { parent, .. }, Some(fk)) => {
                let parent_alias = format!("tg_parent_{depth}");
                let parent_model = self
                    .table(parent)
                    .expect("a placed child has a placed parent");
                let joins: Vec<String> = fk
                    .columns
                    .iter()
                    .zip(&fk.referenced_columns)
                    .map(|(child, parent)| {
                        format!(
                            "{parent_alias}.{} = {alias}.{}",
                            quote(parent),
                            quote(child)
                        )
                    })
                    .collect();
                format!(
                    "EXISTS (SELECT 1 FROM {} {parent_alias} WHERE {} AND {})",
                    quote_table(parent_model.name),
                    joins.join(" AND "),
                    self.belongs_at(parent_model, &parent_alias, tenant, depth + 1)
                )
            }
            (Ownership::Parent { .. }, None) => "false".to_string(),
        }
    }

    /// The configuration file, as messages name it.
    pub fn config_file(&self) -> String {
        crate::display_path(&self.config.path)
    }
}

/// The text of a row's key (`CAST(a AS TEXT) || '|' || CAST(b AS TEXT)`), for `alias`.
pub fn key_text(alias: &str, key: &[&str]) -> String {
    key.iter()
        .map(|column| match *column {
            // System columns, written bare (SQLite reads a quoted unknown name as text).
            "ctid" | "rowid" => format!("CAST({alias}.{column} AS TEXT)"),
            column => format!("CAST({alias}.{} AS TEXT)", quote(column)),
        })
        .collect::<Vec<_>>()
        .join(" || '|' || ")
}

/// `key` = the parts of `text` (as [`key_text`] writes them), compared as text.
pub fn key_equals(alias: &str, key: &[&str], text: &str) -> String {
    format!("{} = {}", key_text(alias, key), literal(text))
}

/// See [`TableModel::key`].
fn row_key(table: &Table) -> Vec<&str> {
    if !table.primary_key.is_empty() {
        return table.primary_key.iter().map(String::as_str).collect();
    }
    let not_null = |columns: &[String]| {
        columns
            .iter()
            .all(|c| table.column(c).is_some_and(|c| c.not_null))
    };
    if let Some(unique) = table.uniques.iter().find(|k| not_null(&k.columns)) {
        return unique.columns.iter().map(String::as_str).collect();
    }
    if let Some(index) = table
        .indexes
        .iter()
        .find(|i| i.unique && !i.partial && not_null(&i.columns))
    {
        return index.columns.iter().map(String::as_str).collect();
    }
    Vec::new()
}

/// Parents first (Kahn's algorithm over the references between `tables`); a cycle is
/// placed as it comes, and populating says what failed.
pub fn parents_first<'a>(tables: &[(&'a str, &'a Table)]) -> Vec<&'a str> {
    let names: BTreeSet<&str> = tables.iter().map(|(n, _)| *n).collect();
    let mut order: Vec<&str> = Vec::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    while placed.len() < tables.len() {
        let ready: Vec<&str> = tables
            .iter()
            .filter(|(name, _)| !placed.contains(name))
            .filter(|(name, table)| {
                table.foreign_keys.iter().all(|fk| {
                    let parent = fk.referenced_table.as_str();
                    parent == *name
                        || !names
                            .iter()
                            .any(|n| tenantgate::config::same_table(n, parent))
                        || placed
                            .iter()
                            .any(|p| tenantgate::config::same_table(p, parent))
                })
            })
            .map(|(name, _)| *name)
            .collect();
        let next: Vec<&str> = if ready.is_empty() {
            tables
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| !placed.contains(n))
                .collect()
        } else {
            ready
        };
        for name in next {
            placed.insert(name);
            order.push(name);
        }
    }
    order
}
