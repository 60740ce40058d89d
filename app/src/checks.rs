//! What a check reports: each named check returns every failure it finds, with the table,
//! the file and the fix. The harness and the live runner share these types.

/// One problem found by a check.
#[derive(Clone, Debug)]
pub struct Failure {
    pub message: String,
    /// The file to annotate (a migration, the fixture, a snapshot), when there is one.
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            file: None,
            line: None,
        }
    }

    /// The message, followed by the file (and line) it is about when it does not name it.
    pub fn describe(&self) -> String {
        match &self.file {
            Some(file) if !self.message.contains(file.as_str()) => {
                let line = self.line.map(|l| format!(":{l}")).unwrap_or_default();
                format!("{}\nin: {file}{line}", self.message)
            }
            _ => self.message.clone(),
        }
    }

    pub fn in_file(file: String, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            file: Some(file),
            line: None,
        }
    }

    /// A failure about one line of a file.
    pub fn at_line(file: String, line: u32, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            file: Some(file),
            line: Some(line),
        }
    }
}

/// The result of one named check.
#[derive(Clone, Debug)]
pub struct CheckOutcome {
    pub name: &'static str,
    /// How many things (tables, keys) it looked at.
    pub checked: usize,
    pub failures: Vec<Failure>,
}

impl CheckOutcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}
