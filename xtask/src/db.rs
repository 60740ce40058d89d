//! One open connection to either backend: it lives in `app`, which the live runner shares.

pub use app::db::*;
