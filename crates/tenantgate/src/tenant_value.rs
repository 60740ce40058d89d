//! A tenant, as the database knows it: a value of the tenants table's key, whatever its
//! SQL type. Tenant ids are integers in one app, uuids or text in another; everything
//! that writes a tenant into SQL goes through [`KeyType::literal`], so the type is never
//! assumed.

use std::fmt;

use crate::Backend;
use crate::db::literal;

/// A tenant's key, in its text form (`7`, `3f1c…`, `caps-automotive`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantValue(String);

impl TenantValue {
    pub fn new(text: impl Into<String>) -> TenantValue {
        TenantValue(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of SQL type a tenant key has, read from the introspected tenants table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// smallint, integer, bigint (and SQLite's INTEGER).
    Integer,
    Uuid,
    /// text, varchar, char, citext, and anything else compared as text.
    Text,
}

impl KeyType {
    /// The kind of a column's type as the catalogs print it (`bigint`, `uuid`,
    /// `character varying(64)`, SQLite's declared `INTEGER`).
    pub fn of(data_type: &str) -> KeyType {
        let lower = data_type.to_ascii_lowercase();
        if lower.contains("uuid") {
            KeyType::Uuid
        } else if lower.contains("int") || lower == "serial" || lower == "bigserial" {
            KeyType::Integer
        } else {
            KeyType::Text
        }
    }

    /// The SQL literal of `value` for a column of this type.
    pub fn literal(self, backend: Backend, value: &TenantValue) -> String {
        match (self, backend) {
            (KeyType::Integer, _) if value.0.parse::<i64>().is_ok() => value.0.clone(),
            (KeyType::Uuid, Backend::Postgres) => format!("{}::uuid", literal(&value.0)),
            _ => literal(&value.0),
        }
    }

    /// The value as JSON, the way `row_to_json` or `json_object` shows it.
    pub fn json(self, value: &TenantValue) -> serde_json::Value {
        match self {
            KeyType::Integer => value
                .0
                .parse::<i64>()
                .map_or_else(|_| value.0.clone().into(), serde_json::Value::from),
            _ => serde_json::Value::from(value.0.clone()),
        }
    }

    /// How a policy turns the text of a setting into this type, for fix texts:
    /// `::bigint`, `::uuid`, or nothing for text.
    pub fn cast(self) -> &'static str {
        match self {
            KeyType::Integer => "::bigint",
            KeyType::Uuid => "::uuid",
            KeyType::Text => "",
        }
    }

    /// The SQL type to declare a new tenant column with, for fix texts.
    pub fn column_type(self, backend: Backend) -> &'static str {
        match (self, backend) {
            (KeyType::Integer, Backend::Postgres) => "bigint",
            (KeyType::Integer, Backend::Sqlite) => "INTEGER",
            (KeyType::Uuid, Backend::Postgres) => "uuid",
            (KeyType::Uuid, Backend::Sqlite) => "TEXT",
            (KeyType::Text, Backend::Postgres) => "text",
            (KeyType::Text, Backend::Sqlite) => "TEXT",
        }
    }

    /// A tenant key of this type that differs from every one in `taken`: the next
    /// integers, deterministic uuids, or `<base>-<n>` texts.
    pub fn new_values(self, taken: &[TenantValue], count: usize) -> Vec<TenantValue> {
        let mut values = Vec::new();
        let mut n: u64 = 1;
        let largest = taken
            .iter()
            .filter_map(|v| v.0.parse::<i64>().ok())
            .max()
            .unwrap_or(0);
        while values.len() < count {
            let candidate = match self {
                KeyType::Integer => TenantValue((largest + n as i64).to_string()),
                KeyType::Uuid => TenantValue(format!("7e4a47e0-0000-4000-8000-{n:012x}")),
                KeyType::Text => TenantValue(format!("tenantgate-tenant-{n}")),
            };
            n += 1;
            if !taken.contains(&candidate) && !values.contains(&candidate) {
                values.push(candidate);
            }
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_read_from_catalog_names() {
        assert_eq!(KeyType::of("bigint"), KeyType::Integer);
        assert_eq!(KeyType::of("INTEGER"), KeyType::Integer);
        assert_eq!(KeyType::of("smallint"), KeyType::Integer);
        assert_eq!(KeyType::of("uuid"), KeyType::Uuid);
        assert_eq!(KeyType::of("character varying(64)"), KeyType::Text);
        assert_eq!(KeyType::of("text"), KeyType::Text);
    }

    #[test]
    fn literals_have_the_columns_type() {
        let one = TenantValue::new("1");
        let uuid = TenantValue::new("3f1c0d2e-9b7a-4c1e-8f00-000000000001");
        let text = TenantValue::new("caps-automotive");
        assert_eq!(KeyType::Integer.literal(Backend::Postgres, &one), "1");
        assert_eq!(
            KeyType::Uuid.literal(Backend::Postgres, &uuid),
            "'3f1c0d2e-9b7a-4c1e-8f00-000000000001'::uuid"
        );
        assert_eq!(
            KeyType::Uuid.literal(Backend::Sqlite, &uuid),
            "'3f1c0d2e-9b7a-4c1e-8f00-000000000001'"
        );
        assert_eq!(
            KeyType::Text.literal(Backend::Sqlite, &text),
            "'caps-automotive'"
        );
        // A text key that looks like a number is still text.
        assert_eq!(KeyType::Text.literal(Backend::Postgres, &one), "'1'");
        assert_eq!(KeyType::Integer.json(&one), serde_json::json!(1));
        assert_eq!(KeyType::Text.json(&one), serde_json::json!("1"));
    }

    #[test]
    fn new_values_avoid_the_taken_ones_and_are_deterministic() {
        let taken = vec![TenantValue::new("1"), TenantValue::new("5")];
        assert_eq!(
            KeyType::Integer.new_values(&taken, 2),
            vec![TenantValue::new("6"), TenantValue::new("7")]
        );
        let uuids = KeyType::Uuid.new_values(&[], 2);
        assert_eq!(uuids, KeyType::Uuid.new_values(&[], 2));
        assert_ne!(uuids[0], uuids[1]);
        assert!(uuids[0].as_str().parse::<u128>().is_err());
        let texts = KeyType::Text.new_values(&[TenantValue::new("tenantgate-tenant-1")], 1);
        assert_eq!(texts, vec![TenantValue::new("tenantgate-tenant-2")]);
    }
}
