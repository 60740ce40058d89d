//! What a check reports: each named check returns every failure it finds, each one as
//! data (the problem, the fix, the file and line, the table), rendered only at the edge
//! (a terminal, JUnit, a GitHub annotation, JSON). The harness and the live runner share
//! these types.

use std::fmt::Write;

/// One problem found by a check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failure {
    /// What is wrong, in a sentence or two; it names the table or object.
    pub problem: String,
    /// How to fix it, when there is something to do.
    pub fix: Option<String>,
    /// The file to annotate (a migration, the fixture, a snapshot, the configuration).
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The table (or other object) it is about.
    pub object: Option<String>,
}

impl Failure {
    pub fn new(problem: impl Into<String>) -> Failure {
        Failure {
            problem: problem.into(),
            ..Failure::default()
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Failure {
        self.fix = Some(fix.into());
        self
    }

    pub fn in_file(mut self, file: impl Into<String>) -> Failure {
        self.file = Some(file.into());
        self
    }

    /// The file, when there is one.
    pub fn in_optional_file(mut self, file: Option<String>) -> Failure {
        self.file = file;
        self
    }

    pub fn at_line(mut self, line: u32) -> Failure {
        self.line = Some(line);
        self
    }

    pub fn about(mut self, object: impl Into<String>) -> Failure {
        self.object = Some(object.into());
        self
    }

    /// `file:line`, or `file`, when the failure has a file.
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_deref()?;
        Some(match self.line {
            Some(line) => format!("{file}:{line}"),
            None => file.to_string(),
        })
    }

    /// For people: the problem, the fix on its own line, and the file when the problem
    /// does not already name it.
    pub fn render(&self) -> String {
        let mut out = self.problem.clone();
        if let Some(fix) = &self.fix {
            let _ = write!(out, "\nfix: {fix}");
        }
        if let (Some(file), Some(location)) = (&self.file, self.location())
            && !self.problem.contains(file.as_str())
        {
            let _ = write!(out, "\nin: {location}");
        }
        out
    }
}

/// The result of one named check.
#[derive(Clone, Debug)]
pub struct CheckOutcome {
    pub name: &'static str,
    /// How many things (tables, keys, cases) it looked at.
    pub checked: usize,
    pub failures: Vec<Failure>,
}

impl CheckOutcome {
    pub fn new(name: &'static str) -> CheckOutcome {
        CheckOutcome {
            name,
            checked: 0,
            failures: Vec::new(),
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Failure;

    #[test]
    fn the_fix_and_the_file_are_rendered_on_their_own_lines() {
        let failure = Failure::new("table `orders` has no `tenant_id` column")
            .fix("add it")
            .in_file("migrations/postgres/0002_create_sales.up.sql")
            .at_line(3);
        assert_eq!(
            failure.render(),
            "table `orders` has no `tenant_id` column\nfix: add it\nin: migrations/postgres/0002_create_sales.up.sql:3"
        );
        let named = Failure::new("0002_x.up.sql:3: syntax error").in_file("0002_x.up.sql");
        assert_eq!(named.render(), "0002_x.up.sql:3: syntax error");
    }
}
