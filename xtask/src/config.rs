//! The harness configuration: it lives in `app`, whose live runner reads the same tenancy
//! policy.

pub use app::config::*;
