//! The introspected schema: it lives in `app`, whose live runner compares a database with
//! the embedded snapshot using the same model and text.

pub use app::schema::*;
