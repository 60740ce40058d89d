//! The tenant-isolation gate: static rules over the introspected schema (`rules`), and
//! behavioural cases run on a real, migrated database as the application would run
//! (`behaviour`). Both read the tenancy policy from the harness configuration; nothing
//! about the app's tables is hard-coded here.

pub mod behaviour;
pub use app::isolation_rules as rules;

pub use behaviour::{BehaviourReport, Model, populate, rows_as_json, run_behaviour};
pub use rules::{RoleFacts, static_rules};
