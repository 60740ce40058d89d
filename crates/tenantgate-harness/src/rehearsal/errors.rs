//! A SQL error as a failure a person can act on: the file and the line in *that file*
//! (from PostgreSQL's error position, counted in the SQL that was sent; never the line of
//! the server's C source that sqlx appends, `at line 647`), the message once, PostgreSQL's
//! DETAIL in the problem and its HINT as the fix.

use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgDatabaseError, PgErrorPosition};
use tenantgate::checks::Failure;

/// A failed migration: `file` failed with `error` while running `sql`.
pub fn apply_failure(file: &str, sql: &str, error: MigrateError) -> Failure {
    match &error {
        MigrateError::ExecuteMigration(inner, _) | MigrateError::Execute(inner) => {
            let mut failure = sql_failure(file, sql, inner, 0);
            failure.problem = failure.problem.replacen(": ", ": migration failed: ", 1);
            failure
        }
        other => Failure::new(format!("{file}: {other}")).in_file(file.to_string()),
    }
}

/// `error`, raised by `sql` (of which the first `skipped_lines` lines were added around
/// the file's text), as a failure about `file`.
pub fn sql_failure(file: &str, sql: &str, error: &sqlx::Error, skipped_lines: u32) -> Failure {
    let Some(database) = database_error(error) else {
        return Failure::new(format!("{file}: {error}")).in_file(file.to_string());
    };
    let postgres = database.try_downcast_ref::<PgDatabaseError>();
    let line = postgres
        .and_then(|pg| match pg.position() {
            Some(PgErrorPosition::Original(position)) => Some(position),
            _ => None,
        })
        .map(|position| line_of_position(sql, position))
        .filter(|line| *line > skipped_lines)
        .map(|line| line - skipped_lines);
    let location = match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    };
    let mut problem = format!("{location}: {}", database.message().trim_end());
    if let Some(code) = database.code() {
        problem.push_str(&format!(" ({code})"));
    }
    if let Some(detail) = postgres.and_then(|pg| pg.detail()) {
        problem.push_str(&format!("\nDETAIL: {}", detail.trim_end()));
    }
    let mut failure = Failure::new(problem).in_file(file.to_string());
    if let Some(line) = line {
        failure = failure.at_line(line);
    }
    if let Some(hint) = postgres.and_then(|pg| pg.hint()) {
        failure = failure.fix(hint.trim_end().to_string());
    }
    failure
}

fn database_error(error: &sqlx::Error) -> Option<&dyn sqlx::error::DatabaseError> {
    match error {
        sqlx::Error::Database(database) => Some(database.as_ref()),
        _ => None,
    }
}

/// The 1-based line of PostgreSQL's 1-based character position in `sql`.
fn line_of_position(sql: &str, position: usize) -> u32 {
    let byte = sql
        .char_indices()
        .nth(position.saturating_sub(1))
        .map_or(sql.len(), |(i, _)| i);
    sql[..byte].matches('\n').count() as u32 + 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_position_is_counted_in_characters_of_the_file() {
        let sql = "CREATE TABLE a (id int);\n-- ünïcode\nSELEC 1;\n";
        let position = sql.chars().position(|c| c == 'S').unwrap() + 1;
        assert_eq!(super::line_of_position(sql, position), 3);
        assert_eq!(super::line_of_position(sql, 1), 1);
    }
}
