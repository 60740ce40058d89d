//! The tenant-isolation gate's behavioural cases: run on a real, migrated database the
//! way the application runs, generated from the configuration and the introspected schema
//! (any tenant column, id type and key shape). The static rules are the runtime's
//! (`tenantgate::rules`), shared with `app verify`.

mod canary;
mod cases;
mod model;
mod populate;
mod truth;
pub mod values;

pub use cases::{BehaviourInput, BehaviourReport, run_behaviour};
pub use model::{Model, TableModel, key_text};
pub use populate::{Populated, populate};
pub use truth::{Truth, rows_as_json};

use tenantgate::checks::Failure;
use tenantgate::db::Conn;

/// The texts `queries` answer (each `(table, SQL)` with one text column), asked as one
/// `UNION ALL` in one round trip; when that fails, one query at a time, so that the
/// failure names its table (`what` was asked of it: "count the rows of").
async fn texts_of_all(
    conn: &mut Conn,
    queries: &[(&str, String)],
    what: &str,
) -> Result<Vec<String>, Failure> {
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let union: Vec<&str> = queries.iter().map(|(_, sql)| sql.as_str()).collect();
    if let Ok(texts) = conn.texts(&union.join("\nUNION ALL\n")).await {
        return Ok(texts);
    }
    let mut texts = Vec::new();
    for (table, sql) in queries {
        texts.extend(
            conn.texts(sql)
                .await
                .map_err(|error| Failure::new(format!("{what} `{table}`: {error:#}")))?,
        );
    }
    Ok(texts)
}
