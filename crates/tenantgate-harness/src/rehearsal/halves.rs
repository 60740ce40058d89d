//! A long PostgreSQL history in two halves at once. A rehearsal is a chain of round trips
//! (apply, read, reverse, read again) in which the client and the server take turns, so
//! one chain keeps one core busy. With two databases on the same server, the first half
//! of the history is rehearsed on one while the other applies that half plainly (no
//! reversal, no reads: a few milliseconds a migration) and rehearses the second half;
//! their findings are merged in the order of the migrations.
//!
//! What each migration is judged on does not change: its reversal compares the database
//! after its down with the same database before its up, and the rules read the schema it
//! leaves. The second database reaches the middle of the history without the reversals
//! of the first half, which leave it as they found it when they pass (and are failures
//! of the first half when they do not).
//!
//! Roles and tablespaces belong to the whole server: two databases running migrations
//! that create, change or drop them at the same time would see each other's. A history
//! with such a statement runs on one database, unless the statement creates a role and
//! its file tolerates the role existing already (`IF NOT EXISTS`, or an exception
//! handler), as migrations run against a shared server must.

use sqlx::migrate::Migration;

/// Below this many migrations to reverse, a second database costs more than it saves.
pub const HALVES_FROM: usize = 40;

/// What one migration costs the first database and the second, in the units of
/// [`split_at`]: fully rehearsed (applied, reversed, read) or only applied.
const REHEARSED: u64 = 10;
const APPLIED: u64 = 1;

/// Where the second half starts: the index that balances the first database's work
/// (rehearsing `..at`) against the second's (applying `..at`, rehearsing `at..`).
/// `reversed[i]` says whether migration `i` is reversed (not part of the baseline).
pub fn split_at(reversed: &[bool]) -> usize {
    let cost = |reversed: bool| if reversed { REHEARSED } else { APPLIED };
    let total: u64 = reversed.iter().map(|r| cost(*r)).sum();
    let mut first = 0;
    let mut best = (u64::MAX, reversed.len());
    for (at, is_reversed) in reversed.iter().enumerate() {
        // The first database rehearses `..at`; the second applies `..at`, rehearses `at..`.
        let second = at as u64 * APPLIED + (total - first);
        let longer = first.max(second);
        if longer < best.0 {
            best = (longer, at);
        }
        first += cost(*is_reversed);
    }
    best.1
}

/// The first statement of `migrations` (ups and downs) that changes what the whole server
/// shares, with its file, unless it only creates a role and its file tolerates the role
/// existing already.
pub fn server_wide<'m>(migrations: impl IntoIterator<Item = (&'m str, String)>) -> Option<String> {
    for (sql, file) in migrations {
        let words = words(sql);
        let tolerant = words
            .windows(3)
            .any(|w| w == ["if", "not", "exists"] || w[0] == "exception");
        for (at, pair) in words.windows(2).enumerate() {
            let found = match (pair[0].as_str(), pair[1].as_str()) {
                ("create", "role" | "user" | "group") if !tolerant => Some("creates a role"),
                ("alter" | "drop", "role" | "user" | "group") => Some("changes or drops a role"),
                ("create" | "alter" | "drop", "tablespace") => Some("changes a tablespace"),
                ("create" | "alter" | "drop", "database") => Some("changes a database"),
                ("reassign", "owned") => Some("reassigns what a role owns"),
                ("alter", "system") => Some("changes the server's settings"),
                ("grant" | "revoke", _) if grants_a_role(&words[at + 1..]) => {
                    Some("grants or revokes a role's membership")
                }
                _ => None,
            };
            if let Some(what) = found {
                return Some(format!("{file} {what}, which the whole server shares"));
            }
        }
    }
    None
}

/// `GRANT a, b TO c` (membership) rather than `GRANT SELECT ON t TO c`: only names and
/// commas before `TO`/`FROM`, no `ON`.
fn grants_a_role(after: &[String]) -> bool {
    let end = after
        .iter()
        .position(|w| w == "to" || w == "from" || w == "on");
    match end {
        Some(end) if end > 0 => after[end] != "on" && !after[..end].iter().any(|w| w == "all"),
        _ => false,
    }
}

/// The lowercase words of `sql` (letters, digits, `_` and `$`); comments and strings are
/// not told apart, which can only make a history run on one database.
fn words(sql: &str) -> Vec<String> {
    sql.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The ups and downs of `migrations` with their files, for [`server_wide`].
pub fn texts<'m>(
    migrations: &[&'m Migration],
    downs: impl Fn(i64) -> Option<&'m Migration>,
    file: impl Fn(i64, bool) -> String,
) -> Vec<(&'m str, String)> {
    migrations
        .iter()
        .flat_map(|m| {
            let down = downs(m.version).map(|d| (d.sql.as_str(), file(m.version, false)));
            std::iter::once((m.sql.as_str(), file(m.version, true))).chain(down)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_balances_the_two_databases() {
        // Every migration reversed: the second database also applies the first half.
        let at = split_at(&[true; 300]);
        assert!((150..=165).contains(&at), "{at}");
        // A baseline of 100 (applied only) shifts the middle of the reversed ones.
        let mut reversed = vec![false; 100];
        reversed.extend([true; 200]);
        let at = split_at(&reversed);
        assert!((200..=210).contains(&at), "{at}");
    }

    #[test]
    fn server_wide_statements_are_found_and_tolerant_role_creation_is_not() {
        let found = |sql: &str| server_wide([(sql, "0001_x.up.sql".to_string())]);
        assert!(
            found("CREATE ROLE app NOLOGIN;")
                .unwrap()
                .contains("creates a role")
        );
        assert!(found("create user app;").is_some());
        assert!(
            found("DROP ROLE IF EXISTS app;")
                .unwrap()
                .contains("drops a role")
        );
        assert!(found("ALTER ROLE app SET search_path = x;").is_some());
        assert!(found("GRANT app TO admin;").unwrap().contains("membership"));
        assert!(found("REVOKE app, other FROM admin;").is_some());
        assert!(found("CREATE TABLESPACE t LOCATION '/x';").is_some());
        assert!(
            found("DO $$ BEGIN CREATE ROLE app NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;")
                .is_none()
        );
        assert!(found("GRANT SELECT, INSERT ON orders TO app;").is_none());
        assert!(found("GRANT ALL ON ALL TABLES IN SCHEMA public TO app;").is_none());
        assert!(found("REVOKE ALL ON orders FROM app;").is_none());
        assert!(found("ALTER TABLE orders ADD COLUMN role text;").is_none());
        assert!(found("CREATE TABLE users (role text, user_id bigint);").is_none());
    }
}
