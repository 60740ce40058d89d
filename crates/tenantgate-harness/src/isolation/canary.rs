//! Canary cases (PostgreSQL, row-level security): every tenant's rows carry a value unique
//! to that tenant, and a session as the application role acting as one tenant reads every
//! relation and calls every function the role can reach, in every schema; another tenant's
//! canary anywhere in what comes back (rows, or an error's text) is a leak, named by the
//! object. They judge behaviour, not declarations: a view, a materialized view, a
//! `SECURITY DEFINER` function or anything no static rule foresaw is caught by what it
//! returns.
//!
//! - Planting: each text column of a tenant-owned table that is not a primary or foreign
//!   key column gets the tenant's canary prefixed (or, when a check refuses that, suffixed) in
//!   every row of the tenant; materialized views are refreshed afterwards, so they hold
//!   the canaries too.
//! - Reading: `SELECT ROW(<the columns the role may read>)::text` of every relation the
//!   role has a SELECT privilege on (tables, partitions, views, materialized views, foreign
//!   tables), extensions' own objects left out.
//! - Calling: every function the role may execute (not trigger functions, aggregates or
//!   procedures), with generated arguments: all NULL, then `''`, `'%'`, the other tenants'
//!   canaries and keys for each parameter that takes them, each call in a transaction
//!   that is rolled back, under a statement timeout.

use sqlx::PgConnection;
use tenantgate::checks::Failure;
use tenantgate::db::{Conn, literal, quote, quote_table};
use tenantgate::{KeyType, TenantValue};

use super::cases::{ActingAs, AppRole, RLS_REFUSED, error_code};
use super::model::{Model, TableModel};

/// The canary of each tenant, in the order of the tenants the cases play.
pub struct Planted {
    pub canaries: Vec<(TenantValue, String)>,
    /// Tenant-owned tables that got a canary in at least one column.
    pub tables: usize,
    /// Tenant-owned tables with no column that could carry one.
    pub bare: Vec<String>,
    /// Every row of every tenant-owned table as `t::text`, with the position of the tenant
    /// it belongs to: a relation or function that hands out a whole row of another tenant
    /// is caught by it even where no canary could go. Texts that two tenants share are
    /// left out.
    pub rows: std::collections::HashMap<String, usize>,
}

/// How long one read or call may take before it is cancelled (a function may sleep).
const CALL_TIMEOUT: &str = "5s";

/// Gives every tenant's rows its canary.
pub async fn plant(
    conn: &mut Conn,
    model: &Model<'_>,
    tenants: &[TenantValue],
) -> Result<Planted, Failure> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().rotate_left(16);
    let canaries: Vec<(TenantValue, String)> = tenants
        .iter()
        .enumerate()
        .map(|(position, tenant)| (tenant.clone(), format!("tgc{nonce:08x}t{position}")))
        .collect();
    // Each table's updates: a canary prefixed to a column's values (and the same
    // suffixed, for when that is refused), per tenant.
    let mut updates: Vec<Vec<(String, String)>> = Vec::new();
    for table in &model.tables {
        let mut planned = Vec::new();
        for (column, length, unique) in canary_columns(table) {
            let column_sql = quote(column);
            for (tenant, canary) in &canaries {
                if length.is_some_and(|n| n < canary.len()) {
                    continue;
                }
                let room = length.map(|n| n - canary.len());
                // NULLs of a unique column stay NULL: one canary in each would collide.
                let value = if unique {
                    format!("t.{column_sql}")
                } else {
                    format!("coalesce(t.{column_sql}, '')")
                };
                let old = match room {
                    Some(room) => format!("left({value}, {room})"),
                    None => value,
                };
                let belongs = model.belongs(table, "t", tenant);
                let name = quote_table(table.name);
                let canary = literal(canary);
                planned.push((
                    format!("UPDATE {name} t SET {column_sql} = {canary} || {old} WHERE {belongs}"),
                    format!("UPDATE {name} t SET {column_sql} = {old} || {canary} WHERE {belongs}"),
                ));
            }
        }
        updates.push(planned);
    }
    // Every prefix at once, in one message (one transaction: all or nothing); when one is
    // refused, one by one, each suffixed where the prefix is refused.
    let all: Vec<&str> = updates.iter().flatten().map(|(p, _)| p.as_str()).collect();
    let at_once = !all.is_empty() && conn.execute(&all.join(";\n")).await.is_ok();
    let mut tables = 0;
    let mut bare = Vec::new();
    for (table, planned) in model.tables.iter().zip(&updates) {
        let mut marked = at_once && !planned.is_empty();
        if !at_once {
            for (prefixed, suffixed) in planned {
                if conn.execute(prefixed).await.is_ok() || conn.execute(suffixed).await.is_ok() {
                    marked = true;
                }
            }
        }
        if marked {
            tables += 1;
        } else {
            bare.push(table.name.to_string());
        }
    }
    // Materialized views hold what was there when they were last refreshed.
    let matviews = conn
        .texts(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' AND c.relispopulated AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        )
        .await
        .map_err(|error| Failure::new(format!("list the materialized views: {error:#}")))?;
    for matview in matviews {
        conn.execute(&format!("REFRESH MATERIALIZED VIEW {matview}"))
            .await
            .map_err(|error| {
                Failure::new(format!(
                    "refresh materialized view {matview} after planting the canaries: {error}"
                ))
            })?;
    }
    // Every tenant's rows of every table, each row's text after its tenant's position;
    // one query, or one per table and tenant when it fails (to name the table).
    let reads: Vec<(&str, String)> = model
        .tables
        .iter()
        .filter(|table| table.table.columns.len() >= 2)
        .flat_map(|table| {
            tenants.iter().enumerate().map(|(position, tenant)| {
                let sql = format!(
                    "SELECT '{position}:' || t::text FROM {} t WHERE {}",
                    quote_table(table.name),
                    model.belongs(table, "t", tenant)
                );
                (table.name, sql)
            })
        })
        .collect();
    let texts = super::texts_of_all(conn, &reads, "read the rows of").await?;
    let mut rows: std::collections::HashMap<String, Option<usize>> = Default::default();
    for text in texts {
        let Some((position, text)) = text.split_once(':') else {
            continue;
        };
        let position: Option<usize> = position.parse().ok();
        let entry = rows.entry(text.to_string()).or_insert(position);
        if *entry != position {
            *entry = None;
        }
    }
    Ok(Planted {
        canaries,
        tables,
        bare,
        rows: rows
            .into_iter()
            .filter_map(|(text, position)| Some((text, position?)))
            .collect(),
    })
}

/// The text columns of `table` a canary can go into, with their length limit: not a
/// primary or foreign key column, not the tenant column, and, when unique, one without a
/// length limit (a prefix then keeps the values distinct; a truncated one may not).
fn canary_columns<'t>(table: &'t TableModel<'_>) -> Vec<(&'t str, Option<usize>, bool)> {
    let t = table.table;
    let keyed = |column: &str| {
        t.primary_key.iter().any(|c| c == column)
            || t.foreign_keys
                .iter()
                .any(|fk| fk.columns.iter().any(|c| c == column))
            || table.tenant_column() == Some(column)
    };
    let unique = |column: &str| {
        t.uniques
            .iter()
            .any(|k| k.columns.iter().any(|c| c == column))
            || t.indexes
                .iter()
                .any(|i| i.unique && i.columns.iter().any(|c| c.contains(column)))
    };
    t.columns
        .iter()
        .filter(|c| !c.generated && c.identity.is_none() && !keyed(&c.name))
        .filter_map(|c| {
            let data_type = c.data_type.to_ascii_lowercase();
            if data_type == "text" {
                Some((c.name.as_str(), None, unique(&c.name)))
            } else if let Some(rest) = data_type.strip_prefix("character varying") {
                let length = rest
                    .trim_matches(|ch: char| ch == '(' || ch == ')')
                    .parse::<usize>()
                    .ok();
                (length.is_none() || !unique(&c.name)).then_some((
                    c.name.as_str(),
                    length,
                    unique(&c.name),
                ))
            } else {
                None
            }
        })
        .collect()
}

/// A relation the application role may read.
struct Relation {
    name: String,
    kind: char,
    /// `ROW(t.a, t.b)::text` over the columns it may read.
    row: String,
}

/// A function the application role may execute.
struct Function {
    name: String,
    signature: String,
    security_definer: bool,
    /// Each parameter's type, as `format_type` prints it, and its category (`S` string,
    /// `N` numeric, `U` user-defined such as uuid).
    parameters: Vec<(String, char)>,
}

/// What the canary cases read and called, for the report.
#[derive(Default)]
pub struct Reached {
    pub relations: usize,
    pub functions: usize,
    pub calls: usize,
    /// Objects that could not be read or called at all, with why.
    pub unread: Vec<String>,
}

const RELATIONS: &str = r#"
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind::text,
       'ROW(' || string_agg('t.' || quote_ident(a.attname), ', ' ORDER BY a.attnum) || ')::text'
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
  AND (SELECT count(*) FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') = 0
  AND has_schema_privilege($1, n.oid, 'USAGE')
  AND has_column_privilege($1, c.oid, a.attnum, 'SELECT')
GROUP BY n.nspname, c.relname, c.relkind
ORDER BY 1
"#;

const FUNCTIONS: &str = r#"
SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname),
       quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       p.prosecdef,
       coalesce((SELECT string_agg(format_type(t.oid, NULL) || ':' || t.typcategory::text, ',' ORDER BY o.i)
                 FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS o(type, i)
                 JOIN pg_type t ON t.oid = o.type), '')
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.prokind = 'f'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
  AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
  AND (SELECT count(*) FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e') = 0
  AND NOT EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[]) AS a(type) JOIN pg_type t ON t.oid = a.type
                  WHERE t.typtype = 'p' AND t.typname NOT IN ('anyelement', 'anynonarray', 'anycompatible', 'anycompatiblenonarray'))
  AND has_schema_privilege($1, n.oid, 'USAGE')
  AND has_function_privilege($1, p.oid, 'EXECUTE')
ORDER BY 2
"#;

async fn reachable(
    conn: &mut PgConnection,
    role: &str,
) -> Result<(Vec<Relation>, Vec<Function>), sqlx::Error> {
    let relations: Vec<(String, String, String)> = sqlx::query_as(RELATIONS)
        .bind(role)
        .fetch_all(&mut *conn)
        .await?;
    let functions: Vec<(String, String, bool, String)> = sqlx::query_as(FUNCTIONS)
        .bind(role)
        .fetch_all(&mut *conn)
        .await?;
    let relations = relations
        .into_iter()
        .map(|(name, kind, row)| Relation {
            name,
            kind: kind.chars().next().unwrap_or('r'),
            row,
        })
        .collect();
    let functions = functions
        .into_iter()
        .map(|(name, signature, security_definer, parameters)| Function {
            name,
            signature,
            security_definer,
            parameters: parameters
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (data_type, category) = p.rsplit_once(':').unwrap_or((p, "X"));
                    (
                        data_type.to_string(),
                        category.chars().next().unwrap_or('X'),
                    )
                })
                .collect(),
        })
        .collect();
    Ok((relations, functions))
}

fn kind_name(kind: char) -> &'static str {
    match kind {
        'v' => "view",
        'm' => "materialized view",
        'f' => "foreign table",
        'p' => "partitioned table",
        _ => "table",
    }
}

fn relation_fix(relation: &Relation, role: &str) -> String {
    match relation.kind {
        'v' => format!(
            "make the view read with its caller's rights and row-level security (ALTER VIEW {} SET (security_invoker = true)), or filter it by the current tenant",
            relation.name
        ),
        'm' => format!(
            "a materialized view has no row-level security: REVOKE SELECT ON {} FROM {role} and serve it through a security_invoker view or a tenant-filtered function",
            relation.name
        ),
        _ => format!(
            "ALTER TABLE {} ENABLE ROW LEVEL SECURITY with a policy comparing its tenant column with the current tenant, or REVOKE SELECT ON it FROM {role}",
            relation.name
        ),
    }
}

/// The arguments of each generated call: all NULL first, then, call by call, the next
/// value each parameter's category offers (`''`, `'%'`, the other tenants' canaries and
/// keys), cycling through a category's values when another has more.
fn calls(
    function: &Function,
    key_type: KeyType,
    others: &[(&TenantValue, &str)],
) -> Vec<Vec<String>> {
    let candidates: Vec<Vec<String>> = function
        .parameters
        .iter()
        .map(|(data_type, category)| {
            let cast = |value: String| format!("CAST({value} AS {data_type})");
            let mut values = Vec::new();
            match category {
                'S' => {
                    values.push(cast(literal("")));
                    values.push(cast(literal("%")));
                    for (tenant, canary) in others {
                        values.push(cast(literal(canary)));
                        values.push(cast(literal(tenant.as_str())));
                    }
                }
                'N' if key_type == KeyType::Integer => {
                    for (tenant, _) in others {
                        values.push(cast(tenant.as_str().to_string()));
                    }
                }
                'U' if key_type == KeyType::Uuid && data_type == "uuid" => {
                    for (tenant, _) in others {
                        values.push(cast(literal(tenant.as_str())));
                    }
                }
                _ => {}
            }
            values
        })
        .collect();
    let rounds = candidates.iter().map(Vec::len).max().unwrap_or(0);
    let null_call: Vec<String> = function
        .parameters
        .iter()
        .map(|(data_type, _)| format!("CAST(NULL AS {data_type})"))
        .collect();
    let mut calls = vec![null_call.clone()];
    for round in 0..rounds {
        calls.push(
            candidates
                .iter()
                .zip(&null_call)
                .map(|(values, null)| {
                    if values.is_empty() {
                        null.clone()
                    } else {
                        values[round % values.len()].clone()
                    }
                })
                .collect(),
        );
    }
    calls
}

/// Runs the canary cases under every tenant; returns what they reached and how many
/// assertions ran, pushing a failure for every leak.
pub(super) async fn read_everything(
    app: &mut AppRole<'_>,
    model: &Model<'_>,
    planted: &Planted,
    failures: &mut Vec<Failure>,
) -> (Reached, usize) {
    let role = app.role.to_string();
    let mut reached = Reached::default();
    let (relations, functions) = match reachable(app.conn, &role).await {
        Ok(found) => found,
        Err(error) => {
            failures.push(Failure::new(format!(
                "canary cases: list what `{role}` can reach: {error}"
            )));
            return (reached, 0);
        }
    };
    reached.relations = relations.len();
    reached.functions = functions.len();
    let timeout = format!("SET LOCAL statement_timeout = {}", literal(CALL_TIMEOUT));
    let mut cases = 0;
    let mut own_seen = false;
    let mut unread: std::collections::BTreeMap<String, String> = Default::default();
    let mut readable: std::collections::BTreeSet<String> = Default::default();
    for (position, (tenant, own)) in planted.canaries.iter().enumerate() {
        let others: Vec<(&TenantValue, &str)> = planted
            .canaries
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != position)
            .map(|(_, (t, c))| (t, c.as_str()))
            .collect();
        let acting = ActingAs::Tenant(tenant);
        // Another tenant's canary in `text`, but one the call was handed itself (a function
        // may echo its argument: `lower(email)`, an insert that returns the row).
        let leaked_past = |text: &str, handed: &str| -> Option<&TenantValue> {
            others
                .iter()
                .find(|(_, canary)| text.contains(canary) && !handed.contains(canary))
                .map(|(t, _)| *t)
                .or_else(|| {
                    planted
                        .rows
                        .get(text)
                        .filter(|owner| **owner != position)
                        .map(|owner| &planted.canaries[*owner].0)
                })
        };
        let leaked = |text: &str| leaked_past(text, "");
        for relation in &relations {
            let sql = format!("SELECT {} FROM {} t", relation.row, relation.name);
            cases += 1;
            match app.texts_after(&timeout, acting, &sql).await {
                Ok(rows) => {
                    readable.insert(relation.name.clone());
                    own_seen |= rows.iter().any(|row| row.contains(own.as_str()));
                    let leaks: Vec<&String> = rows.iter().filter(|r| leaked(r).is_some()).collect();
                    if let Some(first) = leaks.first() {
                        let from = leaked(first).expect("filtered");
                        failures.push(
                            Failure::new(format!(
                                "postgres, canary cases as `{role}` for tenant {tenant}: {} {} returned {} row(s) of tenant {from} (its canary, or its rows whole)",
                                kind_name(relation.kind),
                                relation.name,
                                leaks.len()
                            ))
                            .fix(relation_fix(relation, &role))
                            .about(&relation.name),
                        );
                    }
                }
                Err(error) => {
                    let (code, message) = error_code(&error);
                    if let Some(from) = leaked(&message) {
                        failures.push(
                            Failure::new(format!(
                                "postgres, canary cases as `{role}` for tenant {tenant}: reading {} {} failed with an error that carries tenant {from}'s data: {message}",
                                kind_name(relation.kind),
                                relation.name
                            ))
                            .fix(relation_fix(relation, &role))
                            .about(&relation.name),
                        );
                    } else if code != RLS_REFUSED {
                        unread
                            .entry(relation.name.clone())
                            .or_insert(format!("{message} ({code})"));
                    }
                }
            }
        }
        for function in &functions {
            for arguments in calls(function, model.key_type, &others) {
                let call = format!("{}({})", function.name, arguments.join(", "));
                let sql = format!("SELECT CAST({call} AS text)");
                cases += 1;
                reached.calls += 1;
                let (texts, error) = match app.texts_after(&timeout, acting, &sql).await {
                    Ok(rows) => (rows, None),
                    Err(error) => (Vec::new(), Some(error_code(&error))),
                };
                let handed = arguments.join(" ");
                let from = texts
                    .iter()
                    .find_map(|t| leaked_past(t, &handed))
                    .or_else(|| error.as_ref().and_then(|(_, m)| leaked_past(m, &handed)));
                if let Some(from) = from {
                    failures.push(
                        Failure::new(format!(
                            "postgres, canary cases as `{role}` for tenant {tenant}: {}function {} returned tenant {from}'s data (its canary, or its rows whole), called as {call}",
                            if function.security_definer { "SECURITY DEFINER " } else { "" },
                            function.signature
                        ))
                        .fix(if function.security_definer {
                            format!(
                                "a SECURITY DEFINER function reads with its owner's rights, past row-level security: filter every query in {} by the current tenant, or make it SECURITY INVOKER",
                                function.signature
                            )
                        } else {
                            format!(
                                "filter every query in {} by the current tenant, or REVOKE EXECUTE ON FUNCTION {} FROM {role}",
                                function.signature, function.signature
                            )
                        })
                        .about(&function.signature),
                    );
                    break;
                }
                if error.is_none() {
                    readable.insert(function.signature.clone());
                }
            }
        }
    }
    for function in &functions {
        if !readable.contains(&function.signature) {
            unread.insert(
                function.signature.clone(),
                "every generated call raised an error".to_string(),
            );
        }
    }
    for name in &readable {
        unread.remove(name);
    }
    reached.unread = unread
        .into_iter()
        .map(|(name, why)| format!("{name}: {why}"))
        .collect();
    if !own_seen && planted.tables > 0 {
        failures.push(
            Failure::new(format!(
                "canary cases: as `{role}`, no tenant saw its own canary in any relation it can read, so the cases proved nothing"
            ))
            .fix(format!(
                "give `{role}` SELECT on the tenant-owned tables and make tenancy.act_as put the session in the tenant's shoes ({})",
                model.config_file()
            )),
        );
    }
    (reached, cases)
}
