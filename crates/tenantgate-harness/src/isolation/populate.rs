//! Gives the database three tenants with rows in every tenant-owned table, whatever the
//! data the migrations and the fixture left:
//!
//! - the tenants: the default tenant (or the one with the most rows), other tenants that
//!   exist, and new ones (keys of the key's type: the next integers, fixed uuids, texts);
//! - a table a tenant has no rows in gets a copy of the first tenant's rows when its
//!   parents were copied the same way (globally unique keys and the references to them
//!   shifted: integers by a power of ten, uuids through md5, texts with a suffix), and
//!   two generated rows otherwise (references point at the same tenant's rows);
//! - a global table a tenant-owned table needs rows of, and that has none, gets some.
//!
//! This changes the data, so it runs last, on a throwaway database.

use std::collections::{BTreeMap, BTreeSet};

use tenantgate::checks::Failure;
use tenantgate::db::{Conn, quote, quote_table};
use tenantgate::rules::Ownership;
use tenantgate::schema::{ForeignKey, Table};
use tenantgate::{Backend, TenantValue};

use super::model::{Model, TableModel, parents_first};
use super::values::{Types, allowed_value, is_integer, is_text, is_uuid, value_of_type};

/// What populating did.
pub struct Populated {
    /// The three tenants the cases play, the first one the source of copies.
    pub tenants: Vec<TenantValue>,
    /// How each table got its rows, when not from the fixture.
    pub notes: Vec<String>,
}

/// How many tenants the cases play.
pub const TENANTS: usize = 3;

/// Rows generated for a tenant in a table nothing else filled.
const GENERATED_ROWS: usize = 2;

pub async fn populate(conn: &mut Conn, model: &Model<'_>) -> Result<Populated, Failure> {
    let types = Types::read(conn)
        .await
        .map_err(|error| Failure::new(format!("read the enums and domains: {error:#}")))?;
    let key_sql = format!(
        "SELECT CAST({} AS TEXT) FROM {} ORDER BY 1",
        quote(model.tenants_key),
        quote_table(model.tenants_table)
    );
    let existing: Vec<TenantValue> = conn
        .texts(&key_sql)
        .await
        .map_err(|error| Failure::new(format!("read the tenants: {error:#}")))?
        .into_iter()
        .map(TenantValue::new)
        .collect();
    let rows_of = rows_per_tenant(conn, model).await?;
    let default = model
        .config
        .tenancy
        .default_tenant_id
        .as_ref()
        .filter(|d| existing.contains(d));
    let source = default.cloned().or_else(|| {
        rows_of
            .iter()
            .max_by_key(|(tenant, rows)| (**rows, std::cmp::Reverse((*tenant).clone())))
            .filter(|(_, rows)| **rows > 0)
            .map(|(tenant, _)| tenant.clone())
    });
    let mut tenants: Vec<TenantValue> = source.iter().cloned().collect();
    let mut others: Vec<&TenantValue> = existing
        .iter()
        .filter(|t| Some(*t) != source.as_ref())
        .collect();
    others.sort_by_key(|t| {
        (
            std::cmp::Reverse(rows_of.get(*t).copied().unwrap_or(0)),
            (*t).clone(),
        )
    });
    for tenant in others {
        if tenants.len() == TENANTS {
            break;
        }
        tenants.push(tenant.clone());
    }
    let mut notes = Vec::new();
    let new = model
        .key_type
        .new_values(&existing, TENANTS - tenants.len());
    let template = source.clone().or_else(|| existing.first().cloned());
    for (index, tenant) in new.iter().enumerate() {
        let sql = match &template {
            Some(template) => copy_tenant(model, template, tenant, index + 1),
            None => generate_tenant(model, &types, tenant),
        };
        conn.execute(&sql).await.map_err(|error| {
            Failure::new(format!(
                "create tenant {tenant} in `{}` for the isolation cases: {error}",
                model.tenants_table
            ))
            .fix("add rows for several tenants to the fixture")
        })?;
        tenants.push(tenant.clone());
    }
    if !new.is_empty() {
        notes.push(format!(
            "{} {} created for the isolation cases{}",
            if new.len() == 1 { "tenant" } else { "tenants" },
            new.iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            match &template {
                Some(template) => format!(" as copies of tenant {template}"),
                None => String::new(),
            }
        ));
    }

    fill_global_parents(conn, model, &types).await?;

    let shift = key_shift(conn, model).await?;
    let shifted = shifted_columns(model);
    let mut copied: BTreeSet<(String, usize)> = BTreeSet::new();
    let mut generated: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for table in &model.tables {
        let source_rows = match &source {
            Some(source) => count(conn, model, table, source).await?,
            None => 0,
        };
        for (position, tenant) in tenants.iter().enumerate() {
            if count(conn, model, table, tenant).await? > 0 {
                continue;
            }
            let parents_copied = tenant_owned_parents(model, table)
                .iter()
                .all(|parent| copied.contains(&(parent.to_string(), position)));
            if let Some(source) = source
                .as_ref()
                .filter(|_| source_rows > 0 && parents_copied)
            {
                let sql = copy_rows(model, table, &shifted, source, tenant, position, shift);
                match conn.execute(&sql).await {
                    Ok(()) => {
                        copied.insert((table.name.to_string(), position));
                        continue;
                    }
                    Err(error) => notes.push(format!(
                        "`{}`: tenant {source}'s rows could not be copied to tenant {tenant} ({error}); generated rows instead",
                        table.name
                    )),
                }
            }
            for row in 0..GENERATED_ROWS {
                let sql = generate_row(model, &types, table, tenant, position, row);
                conn.execute(&sql).await.map_err(|error| {
                    Failure::new(format!(
                        "`{}` has no rows for tenant {tenant}, and a generated row was refused: {error}",
                        table.name
                    ))
                    .fix(format!(
                        "add rows for `{}` to the fixture{}",
                        table.name,
                        match model.config.fixtures.as_ref().and_then(|f| f.seed.as_ref()) {
                            Some(seed) => format!(" {}", crate::display_path(seed)),
                            None => String::new(),
                        }
                    ))
                    .about(table.name)
                })?;
            }
            generated
                .entry(table.name.to_string())
                .or_default()
                .push(tenant.to_string());
        }
    }
    for (table, tenants) in generated {
        notes.push(format!(
            "`{table}`: {GENERATED_ROWS} generated rows for tenant{} {}",
            if tenants.len() == 1 { "" } else { "s" },
            tenants.join(", ")
        ));
    }
    conn.realign_sequences()
        .await
        .map_err(|error| Failure::new(format!("realign identity sequences: {error}")))?;
    Ok(Populated { tenants, notes })
}

/// How many rows of `table` belong to `tenant`.
pub async fn count(
    conn: &mut Conn,
    model: &Model<'_>,
    table: &TableModel<'_>,
    tenant: &TenantValue,
) -> Result<i64, Failure> {
    conn.count(&format!(
        "SELECT count(*) FROM {} t WHERE {}",
        quote_table(table.name),
        model.belongs(table, "t", tenant)
    ))
    .await
    .map_err(|error| Failure::new(format!("count the rows of `{}`: {error:#}", table.name)))
}

/// Rows per tenant over the tables with a tenant column: one query for all of them, or
/// one per table when that fails (to name the table).
async fn rows_per_tenant(
    conn: &mut Conn,
    model: &Model<'_>,
) -> Result<BTreeMap<TenantValue, i64>, Failure> {
    let counts: Vec<(&str, String)> = model
        .tables
        .iter()
        .filter_map(|table| {
            let column = table.tenant_column()?;
            Some((
                table.name,
                format!(
                    "SELECT CAST({c} AS TEXT) || ':' || CAST(count(*) AS TEXT) FROM {t} WHERE {c} IS NOT NULL GROUP BY {c}",
                    c = quote(column),
                    t = quote_table(table.name)
                ),
            ))
        })
        .collect();
    let lines = super::texts_of_all(conn, &counts, "count the rows of").await?;
    let mut rows: BTreeMap<TenantValue, i64> = BTreeMap::new();
    for line in lines {
        if let Some((tenant, n)) = line.rsplit_once(':') {
            *rows.entry(TenantValue::new(tenant)).or_default() += n.parse::<i64>().unwrap_or(0);
        }
    }
    Ok(rows)
}

/// `" OVERRIDING SYSTEM VALUE"` when explicit values go into a `GENERATED ALWAYS` identity.
fn overriding(backend: Backend, table: &Table) -> &'static str {
    let always = table
        .columns
        .iter()
        .any(|c| c.identity.as_deref() == Some("generated always as identity"));
    if backend == Backend::Postgres && always {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    }
}

/// The columns an INSERT may write: generated columns are computed.
fn writable(table: &Table) -> impl Iterator<Item = &tenantgate::schema::Column> {
    table.columns.iter().filter(|c| !c.generated)
}

/// A copy of the `template` tenant's row under the key `tenant`; text in unique keys gets
/// a suffix.
fn copy_tenant(
    model: &Model<'_>,
    template: &TenantValue,
    tenant: &TenantValue,
    index: usize,
) -> String {
    let table = model.tenants;
    let unique = globally_unique(table, &[]);
    let exprs: Vec<String> = writable(table)
        .map(|c| {
            let name = quote(&c.name);
            if c.name == model.tenants_key {
                model.literal(tenant)
            } else if unique.contains(c.name.as_str()) {
                shift_expr(
                    model.backend,
                    &format!("src.{name}"),
                    &c.data_type,
                    index,
                    0,
                )
                .unwrap_or(format!("src.{name}"))
            } else {
                format!("src.{name}")
            }
        })
        .collect();
    let columns: Vec<String> = writable(table).map(|c| quote(&c.name)).collect();
    format!(
        "INSERT INTO {t} ({}){} SELECT {} FROM {t} src WHERE src.{} = {}",
        columns.join(", "),
        overriding(model.backend, table),
        exprs.join(", "),
        quote(model.tenants_key),
        model.literal(template),
        t = quote_table(model.tenants_table),
    )
}

/// A new tenants row, its NOT NULL columns generated.
fn generate_tenant(model: &Model<'_>, types: &Types, tenant: &TenantValue) -> String {
    let table = model.tenants;
    let mut columns = vec![quote(model.tenants_key)];
    let mut values = vec![model.literal(tenant)];
    for column in writable(table).filter(|c| c.name != model.tenants_key) {
        let reference = table.foreign_keys.iter().find_map(|fk| {
            let position = fk.columns.iter().position(|c| *c == column.name)?;
            Some((fk, &fk.referenced_columns[position]))
        });
        let value = if let Some((fk, referenced)) = reference {
            Some(pick_parent(model, fk, referenced, None, 0))
        } else if column.not_null && column.default.is_none() && column.identity.is_none() {
            Some(allowed_value(table, &column.name).unwrap_or_else(|| {
                value_of_type(
                    model.backend,
                    types,
                    &column.data_type,
                    &format!("tenant {tenant}"),
                    0,
                )
            }))
        } else {
            None
        };
        if let Some(value) = value {
            columns.push(quote(&column.name));
            values.push(value);
        }
    }
    format!(
        "INSERT INTO {} ({}){} VALUES ({})",
        quote_table(model.tenants_table),
        columns.join(", "),
        overriding(model.backend, table),
        values.join(", ")
    )
}

/// Global tables a tenant-owned table references that hold no row get some, so that
/// generated rows have something to reference (six: two per tenant, so that membership
/// rows can differ between tenants).
async fn fill_global_parents(
    conn: &mut Conn,
    model: &Model<'_>,
    types: &Types,
) -> Result<(), Failure> {
    let mut needed: Vec<(&str, &Table)> = Vec::new();
    let mut pending: Vec<&str> = model
        .tables
        .iter()
        .flat_map(|t| {
            t.table
                .foreign_keys
                .iter()
                .map(|fk| fk.referenced_table.as_str())
        })
        .collect();
    while let Some(parent) = pending.pop() {
        if model.is_tenant_owned(parent)
            || model.is_tenants_table(parent)
            || needed
                .iter()
                .any(|(n, _)| tenantgate::config::same_table(n, parent))
        {
            continue;
        }
        let Some((name, table)) = model.schema.table(parent) else {
            continue;
        };
        needed.push((name, table));
        pending.extend(
            table
                .foreign_keys
                .iter()
                .map(|fk| fk.referenced_table.as_str()),
        );
    }
    for name in parents_first(&needed) {
        let table = needed.iter().find(|(n, _)| *n == name).expect("needed").1;
        let rows = conn
            .count(&format!("SELECT count(*) FROM {}", quote_table(name)))
            .await
            .map_err(|error| Failure::new(format!("count the rows of `{name}`: {error:#}")))?;
        if rows > 0 {
            continue;
        }
        for row in 0..(TENANTS * GENERATED_ROWS) {
            let mut columns = Vec::new();
            let mut values = Vec::new();
            for column in writable(table) {
                let reference = table.foreign_keys.iter().find_map(|fk| {
                    let position = fk.columns.iter().position(|c| *c == column.name)?;
                    Some((fk, &fk.referenced_columns[position]))
                });
                let value = match reference {
                    Some((fk, referenced))
                        if !tenantgate::config::same_table(&fk.referenced_table, name) =>
                    {
                        Some(pick_parent(model, fk, referenced, None, row))
                    }
                    Some(_) => None,
                    None if column.not_null
                        && column.default.is_none()
                        && column.identity.is_none() =>
                    {
                        Some(key_or_value(
                            model,
                            types,
                            table,
                            name,
                            column,
                            &format!("{name} shared"),
                            row,
                        ))
                    }
                    None => None,
                };
                if let Some(value) = value {
                    columns.push(quote(&column.name));
                    values.push(value);
                }
            }
            let sql = format!(
                "INSERT INTO {} ({}){} VALUES ({})",
                quote_table(name),
                columns.join(", "),
                overriding(model.backend, table),
                values.join(", ")
            );
            conn.execute(&sql).await.map_err(|error| {
                Failure::new(format!(
                    "`{name}` (global) has no rows, and tenant-owned tables need some to reference; a generated row was refused: {error}"
                ))
                .fix(format!("add rows for `{name}` to a migration or the fixture"))
                .about(name)
            })?;
        }
    }
    Ok(())
}

/// A power of ten above every integer that copies shift, so shifted keys collide with none.
async fn key_shift(conn: &mut Conn, model: &Model<'_>) -> Result<i64, Failure> {
    let mut largest = 0;
    for table in &model.tables {
        for column in globally_unique(table.table, &scope(table)) {
            if table
                .table
                .column(column)
                .is_some_and(|c| is_integer(&c.data_type))
            {
                let max = conn
                    .count(&format!(
                        "SELECT CAST(coalesce(max({}), 0) AS BIGINT) FROM {}",
                        quote(column),
                        quote_table(table.name)
                    ))
                    .await
                    .map_err(|error| {
                        Failure::new(format!("read the keys of `{}`: {error:#}", table.name))
                    })?;
                largest = largest.max(max);
            }
        }
    }
    Ok(10_i64.pow(largest.max(1).ilog10() + 1))
}

/// The columns that scope a table's rows to a tenant: its tenant column, or its
/// reference to its parent.
pub(super) fn scope<'a>(table: &TableModel<'a>) -> Vec<&'a str> {
    match (table.ownership, table.parent_fk) {
        (Ownership::Column(column), _) => vec![column],
        (Ownership::Parent { .. }, Some(fk)) => fk.columns.iter().map(String::as_str).collect(),
        (Ownership::Parent { .. }, None) => Vec::new(),
    }
}

/// Columns of keys (the primary key, unique constraints and indexes) that do not include
/// every `scope` column: a copy must change them, or it collides with the original.
pub(super) fn globally_unique<'t>(table: &'t Table, scope: &[&str]) -> BTreeSet<&'t str> {
    let keys = std::iter::once(&table.primary_key)
        .chain(table.uniques.iter().map(|k| &k.columns))
        .chain(
            table
                .indexes
                .iter()
                .filter(|i| i.unique)
                .map(|i| &i.columns),
        );
    keys.filter(|columns| !columns.is_empty())
        .filter(|columns| scope.is_empty() || !scope.iter().all(|s| columns.iter().any(|c| c == s)))
        .flatten()
        .map(String::as_str)
        .filter(|c| !scope.contains(c) && !c.starts_with("where "))
        .filter(|c| table.column(c).is_some())
        .collect()
}

/// table → the columns a copy shifts: its globally unique key columns that are not
/// references to a global table, and every reference to a shifted column of a
/// tenant-owned parent (shifted the same way, so the copies reference the copies).
fn shifted_columns(model: &Model<'_>) -> BTreeMap<String, BTreeSet<String>> {
    let mut shifted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for table in &model.tables {
        let references_global = |column: &str| {
            table.table.foreign_keys.iter().any(|fk| {
                fk.columns.iter().any(|c| c == column)
                    && !model.is_tenant_owned(&fk.referenced_table)
            })
        };
        let mut columns: BTreeSet<String> = globally_unique(table.table, &scope(table))
            .into_iter()
            .filter(|c| !references_global(c))
            .map(str::to_string)
            .collect();
        for fk in &table.table.foreign_keys {
            let Some(parent) = model.table(&fk.referenced_table) else {
                continue;
            };
            let parent_shifted = if parent.name == table.name {
                columns.clone()
            } else {
                shifted.get(parent.name).cloned().unwrap_or_default()
            };
            for (child, referenced) in fk.columns.iter().zip(&fk.referenced_columns) {
                if parent_shifted.contains(referenced) {
                    columns.insert(child.clone());
                }
            }
        }
        shifted.insert(table.name.to_string(), columns);
    }
    shifted
}

/// The copy of `column` for copy number `index`: integers plus `index × shift`, uuids
/// through md5, texts with a suffix; `None` for a type that cannot be shifted.
fn shift_expr(
    backend: Backend,
    column: &str,
    data_type: &str,
    index: usize,
    shift: i64,
) -> Option<String> {
    if is_integer(data_type) {
        let offset = if shift == 0 { 1_000_000 } else { shift } * index as i64;
        Some(format!("{column} + {offset}"))
    } else if is_uuid(data_type) && backend == Backend::Postgres {
        Some(format!("md5(CAST({column} AS TEXT) || ':tg{index}')::uuid"))
    } else if is_text(data_type) || is_uuid(data_type) {
        Some(format!("{column} || '-tg{index}'"))
    } else {
        None
    }
}

/// The tenant-owned tables `table` references (itself left out).
fn tenant_owned_parents<'a>(model: &Model<'a>, table: &TableModel<'a>) -> Vec<&'a str> {
    table
        .table
        .foreign_keys
        .iter()
        .filter_map(|fk| model.table(&fk.referenced_table))
        .filter(|parent| parent.name != table.name)
        .map(|parent| parent.name)
        .collect()
}

/// `INSERT … SELECT` copying `source`'s rows of `table` to `tenant`.
fn copy_rows(
    model: &Model<'_>,
    table: &TableModel<'_>,
    shifted: &BTreeMap<String, BTreeSet<String>>,
    source: &TenantValue,
    tenant: &TenantValue,
    position: usize,
    shift: i64,
) -> String {
    let empty = BTreeSet::new();
    let shifted = shifted.get(table.name).unwrap_or(&empty);
    let references_tenants = |column: &str| {
        table.table.foreign_keys.iter().any(|fk| {
            fk.columns == [column.to_string()] && model.is_tenants_table(&fk.referenced_table)
        })
    };
    let exprs: Vec<String> = writable(table.table)
        .map(|c| {
            let column = format!("src.{}", quote(&c.name));
            if Some(c.name.as_str()) == table.tenant_column() || references_tenants(&c.name) {
                model.literal(tenant)
            } else if shifted.contains(&c.name) {
                shift_expr(model.backend, &column, &c.data_type, position, shift).unwrap_or(column)
            } else {
                column
            }
        })
        .collect();
    let columns: Vec<String> = writable(table.table).map(|c| quote(&c.name)).collect();
    format!(
        "INSERT INTO {t} ({}){} SELECT {} FROM {t} src WHERE {}",
        columns.join(", "),
        overriding(model.backend, table.table),
        exprs.join(", "),
        model.belongs(table, "src", source),
        t = quote_table(table.name),
    )
}

/// One generated row of `table` for `tenant` (the `position`-th tenant), number `row`.
fn generate_row(
    model: &Model<'_>,
    types: &Types,
    table: &TableModel<'_>,
    tenant: &TenantValue,
    position: usize,
    row: usize,
) -> String {
    let mut columns = Vec::new();
    let mut values = Vec::new();
    let label = format!("{} {position}", table.name);
    for column in writable(table.table) {
        let name = column.name.as_str();
        let reference = table.table.foreign_keys.iter().find_map(|fk| {
            let at = fk.columns.iter().position(|c| c == name)?;
            Some((fk, &fk.referenced_columns[at]))
        });
        let value = if Some(name) == table.tenant_column() {
            Some(model.literal(tenant))
        } else if let Some((fk, referenced)) = reference {
            if model.is_tenants_table(&fk.referenced_table) {
                Some(model.literal(tenant))
            } else if tenantgate::config::same_table(&fk.referenced_table, table.name) {
                None
            } else if model.is_tenant_owned(&fk.referenced_table) {
                Some(pick_parent(model, fk, referenced, Some(tenant), row))
            } else {
                Some(pick_parent(
                    model,
                    fk,
                    referenced,
                    None,
                    position * GENERATED_ROWS + row,
                ))
            }
        } else if column.not_null && column.default.is_none() && column.identity.is_none() {
            Some(key_or_value(
                model,
                types,
                table.table,
                table.name,
                column,
                &label,
                row,
            ))
            .filter(|v| !v.is_empty())
        } else {
            None
        };
        if let Some(value) = value {
            columns.push(quote(name));
            values.push(value);
        }
    }
    format!(
        "INSERT INTO {} ({}){} VALUES ({})",
        quote_table(table.name),
        columns.join(", "),
        overriding(model.backend, table.table),
        values.join(", ")
    )
}

/// A NOT NULL column's value in a generated row: an integer key continues after the
/// largest (SQLite's INTEGER PRIMARY KEY numbers itself: empty), a CHECK list's first
/// value, else a value of the type.
fn key_or_value(
    model: &Model<'_>,
    types: &Types,
    table: &Table,
    name: &str,
    column: &tenantgate::schema::Column,
    label: &str,
    row: usize,
) -> String {
    let integer_key = table.primary_key == [column.name.clone()] && is_integer(&column.data_type);
    if integer_key {
        if model.backend == Backend::Sqlite && column.data_type.eq_ignore_ascii_case("integer") {
            return String::new();
        }
        return format!(
            "(SELECT coalesce(max({c}), 0) + 1 FROM {t})",
            c = quote(&column.name),
            t = quote_table(name)
        );
    }
    allowed_value(table, &column.name)
        .unwrap_or_else(|| value_of_type(model.backend, types, &column.data_type, label, row))
}

/// `referenced` of the `offset`-th row of the parent of `fk` (of `tenant`'s rows when it
/// is tenant-owned), the first row when there are fewer: every column of one foreign key
/// comes from the same row, since all order the parent the same way.
fn pick_parent(
    model: &Model<'_>,
    fk: &ForeignKey,
    referenced: &str,
    tenant: Option<&TenantValue>,
    offset: usize,
) -> String {
    let parent = fk.referenced_table.as_str();
    let filter = match (tenant, model.table(parent)) {
        (Some(tenant), Some(parent_model)) => {
            format!(" WHERE {}", model.belongs(parent_model, "tgp", tenant))
        }
        _ => String::new(),
    };
    let order = match model.schema.table(parent) {
        Some((_, table)) if !table.primary_key.is_empty() => table
            .primary_key
            .iter()
            .map(|c| format!("tgp.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => fk
            .referenced_columns
            .iter()
            .map(|c| format!("tgp.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let select = |offset: usize| {
        format!(
            "(SELECT tgp.{r} FROM {p} tgp{filter} ORDER BY {order} LIMIT 1 OFFSET {offset})",
            r = quote(referenced),
            p = quote_table(parent)
        )
    };
    format!("coalesce({}, {})", select(offset), select(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_keep_their_type() {
        assert_eq!(
            shift_expr(Backend::Postgres, "src.\"id\"", "bigint", 2, 1000).as_deref(),
            Some("src.\"id\" + 2000")
        );
        assert_eq!(
            shift_expr(Backend::Postgres, "src.\"id\"", "uuid", 1, 0).as_deref(),
            Some("md5(CAST(src.\"id\" AS TEXT) || ':tg1')::uuid")
        );
        assert_eq!(
            shift_expr(Backend::Sqlite, "src.\"code\"", "TEXT", 1, 0).as_deref(),
            Some("src.\"code\" || '-tg1'")
        );
        assert_eq!(shift_expr(Backend::Postgres, "x", "date", 1, 0), None);
    }

    #[test]
    fn keys_that_include_the_scope_are_not_globally_unique() {
        let column = |name: &str| tenantgate::schema::Column {
            name: name.to_string(),
            data_type: "text".to_string(),
            not_null: true,
            default: None,
            identity: None,
            generated: false,
        };
        let table = Table {
            columns: vec![
                column("tenant_id"),
                column("id"),
                column("email"),
                column("code"),
            ],
            primary_key: vec!["tenant_id".to_string(), "id".to_string()],
            uniques: vec![
                tenantgate::schema::Key {
                    name: None,
                    columns: vec!["email".to_string()],
                },
                tenantgate::schema::Key {
                    name: None,
                    columns: vec!["tenant_id".to_string(), "code".to_string()],
                },
            ],
            ..Table::default()
        };
        assert_eq!(
            globally_unique(&table, &["tenant_id"]),
            BTreeSet::from(["email"])
        );
        assert_eq!(
            globally_unique(&table, &[]),
            BTreeSet::from(["tenant_id", "id", "email", "code"])
        );
    }
}
