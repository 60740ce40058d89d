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
