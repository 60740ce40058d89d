//! A PostgreSQL history on two databases of one server at once. A rehearsal is a chain of
//! round trips (apply, read, reverse, read again) in which the client and the server take
//! turns, so one chain keeps one core busy. The first database rehearses the history up to
//! a point, applies the rest plainly (no reversal, no reads: a few milliseconds a
//! migration) and goes on to the final checks, the snapshot and the isolation cases; the
//! second applies the history up to that point plainly and rehearses the rest. Their
//! findings are merged in the order of the migrations. The point balances the two: for a
//! short history it is the start (the second database rehearses everything while the
//! first applies it and runs the cases), for a long one it falls where the first
//! database's half and its cases take as long as the second's half.
//!
//! What each migration is judged on does not change: its reversal compares the database
//! after its down with the same database before its up, and the rules read the schema it
//! leaves. A database reaches its part of the history without the reversals of the
//! other's part, which leave the database as they found it when they pass (and are
//! failures of that part when they do not).
//!
//! Roles and tablespaces belong to the whole server: two databases running migrations
//! that create, change or drop them at the same time would see each other's. A history
//! with such a statement runs on one database, unless the statement creates a role and
//! its file tolerates the role existing already (`IF NOT EXISTS`, or an exception
//! handler), as migrations run against a shared server must; the two databases never run
//! such a migration at once ([`shares_server`]), so that it does not collide with itself.

use sqlx::migrate::Migration;

/// From this many migrations to reverse, a history that cannot be split says why.
pub const SAYS_WHY_FROM: usize = 40;

/// What one migration costs the first database and the second, in the units of
/// [`split_at`]: fully rehearsed (applied, reversed, read) or only applied.
const REHEARSED: u64 = 10;
const APPLIED: u64 = 1;
/// What the final checks, the snapshot and the isolation cases cost the first database:
/// a part for the whole schema, and a part for each table (a tenant-owned one's rows
/// filled and compared for every tenant, its canaries, its cases; a global one is only
/// read). Measured on the demo shop with a 300 migration history (72 tenant-owned
/// tables): the final work took about as long as 55 migrations' rehearsals.
const FINAL: u64 = 40;
const FINAL_PER_TABLE: u64 = 7;
const FINAL_PER_GLOBAL_TABLE: u64 = 1;

/// Where the first database stops rehearsing and the second starts: the index that
/// balances the first database's work (rehearsing `..at`, applying `at..`, then the
/// final work, `final_cost`) against the second's (applying `..at`, rehearsing `at..`).
/// `reversed[i]` says whether migration `i` is reversed (not part of the baseline). 0:
/// the second database rehearses everything.
pub fn split_at(reversed: &[bool], final_cost: u64) -> usize {
    let cost = |reversed: bool| if reversed { REHEARSED } else { APPLIED };
    let total: u64 = reversed.iter().map(|r| cost(*r)).sum();
    let mut first = 0;
    let mut best = (u64::MAX, 0);
    for (at, is_reversed) in reversed.iter().enumerate() {
        let rest = (reversed.len() - at) as u64 * APPLIED;
        let second = at as u64 * APPLIED + (total - first);
        let longer = (first + rest + final_cost).max(second);
        if longer < best.0 {
            best = (longer, at);
        }
        first += cost(*is_reversed);
    }
    best.1
}

/// What the final work costs, in the units of [`split_at`], estimated from the tables the
/// up migrations create and drop (`CREATE TABLE` less `DROP TABLE`), those `global` says
/// belong to no tenant apart.
pub fn final_cost<'m>(
    ups: impl IntoIterator<Item = &'m str>,
    global: impl Fn(&str) -> bool,
) -> u64 {
    let (mut owned, mut global_tables): (i64, i64) = (0, 0);
    for sql in ups {
        let words = words(sql);
        for (at, pair) in words.windows(2).enumerate() {
            let change = match (pair[0].as_str(), pair[1].as_str()) {
                ("create", "table") => 1,
                ("drop", "table") => -1,
                _ => continue,
            };
            // The name: after `IF [NOT] EXISTS`, perhaps qualified.
            let mut name = words[at + 2..]
                .iter()
                .skip_while(|w| matches!(w.as_str(), "if" | "not" | "exists"));
            let first = name.next().map_or("", String::as_str);
            let qualified = name.next().map(|second| format!("{first}.{second}"));
            if global(first) || qualified.is_some_and(|q| global(&q)) {
                global_tables += change;
            } else {
                owned += change;
            }
        }
    }
    FINAL
        + owned.max(0) as u64 * FINAL_PER_TABLE
        + global_tables.max(0) as u64 * FINAL_PER_GLOBAL_TABLE
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

/// Whether `sql` names what the whole server shares after a verb that writes it: a role,
/// user, group, database or tablespace after `CREATE`, `ALTER`, `DROP` or `ON` (`GRANT
/// CONNECT ON DATABASE`, `COMMENT ON ROLE`). The two databases of a split history never
/// run such a migration at once (a role created unless it exists would collide with
/// itself, two writes of one shared catalog row fail as concurrent updates). Words in
/// strings count too (`EXECUTE format('CREATE ROLE %I', …)`).
pub fn shares_server(sql: &str) -> bool {
    words(sql).windows(2).any(|pair| {
        matches!(pair[0].as_str(), "create" | "alter" | "drop" | "on")
            && matches!(
                pair[1].as_str(),
                "role" | "user" | "group" | "database" | "tablespace"
            )
    })
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
        // Every migration reversed, no final work: the second database also applies the
        // first half, the first applies the second.
        let at = split_at(&[true; 300], 0);
        assert!((145..=155).contains(&at), "{at}");
        // The final work moves the point back: the first database has less to rehearse.
        let with_cases = split_at(&[true; 300], 600);
        assert!((110..=125).contains(&with_cases), "{with_cases}");
        // A baseline of 100 (applied only) shifts the middle of the reversed ones.
        let mut reversed = vec![false; 100];
        reversed.extend([true; 200]);
        let at = split_at(&reversed, 0);
        assert!((195..=210).contains(&at), "{at}");
        // A short history with final work: the second database rehearses it all.
        let tables = final_cost(["CREATE TABLE a (id int);"; 20], |_| false);
        assert_eq!(split_at(&[true; 7], tables), 0);
    }

    #[test]
    fn the_final_work_is_counted_from_the_tables_made() {
        let ups = [
            "CREATE TABLE a (id int); create table b (id int);",
            "DROP TABLE a;",
            "CREATE TABLE IF NOT EXISTS public.currencies (code text);",
        ];
        let global = |name: &str| name == "public.currencies";
        assert_eq!(
            final_cost(ups, global),
            FINAL + FINAL_PER_TABLE + FINAL_PER_GLOBAL_TABLE
        );
        assert_eq!(final_cost(["DROP TABLE a;"], global), FINAL);
    }

    #[test]
    fn what_the_server_shares_is_found_in_statements_and_strings() {
        assert!(shares_server(
            "DO $$ BEGIN CREATE ROLE app NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
        ));
        assert!(shares_server("EXECUTE format('CREATE USER %I', name);"));
        assert!(shares_server("GRANT CONNECT ON DATABASE shop TO app;"));
        assert!(shares_server("COMMENT ON ROLE app IS 'the app';"));
        assert!(!shares_server("GRANT SELECT ON orders TO app;"));
        assert!(!shares_server("ALTER TABLE orders ADD COLUMN role text;"));
        assert!(!shares_server(
            "CREATE TABLE users (role text, user_id bigint);"
        ));
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
