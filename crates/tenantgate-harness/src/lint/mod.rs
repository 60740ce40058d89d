//! The unsafe-migration linter behind `cargo xtask lint` and the `lint` check of
//! `migrate-test`: static rules over the SQL of each migration, read with real parsers.
//!
//! - PostgreSQL: the squawk rules (`squawk-linter`, on squawk's PostgreSQL parser), plus
//!   Tenantgate's tenant rules on the same syntax tree (`postgres.rs`);
//! - SQLite: ALTER TABLE forms SQLite refuses, table rebuilds that lose foreign keys, and
//!   the tenant rules that apply there (`sqlite.rs`, on sqlparser's SQLite dialect).
//!
//! A finding can be acknowledged where it is, with a reason:
//! `-- tenantgate:allow(rule-id): reason` on the line before the statement (or inside it).
//! Acknowledged findings are reported, never hidden; an acknowledgment that matches
//! nothing is itself a finding, so they do not outlive the SQL they excused.

mod postgres;
mod sqlite;

use std::collections::BTreeSet;
use std::fmt::Write;

use tenantgate::Backend;
use tenantgate::checks::Failure;
use tenantgate::config::{Acknowledgement, Config};

use crate::folder::{Folder, FolderMigration};

/// One rule Tenantgate adds to squawk's.
pub struct RuleInfo {
    pub id: &'static str,
    /// The backends it reads; squawk's rules are PostgreSQL only.
    pub backends: &'static [Backend],
    pub summary: &'static str,
}

const BOTH: &[Backend] = &[Backend::Postgres, Backend::Sqlite];
const POSTGRES: &[Backend] = &[Backend::Postgres];
const SQLITE: &[Backend] = &[Backend::Sqlite];

/// Tenantgate's own rules. squawk's (`squawk_linter::Rule`) come on top on PostgreSQL.
pub const RULES: &[RuleInfo] = &[
    RuleInfo {
        id: "tenant-table-without-tenant-column",
        backends: BOTH,
        summary: "a new tenant-owned table (not a configured global table) has no tenant column",
    },
    RuleInfo {
        id: "tenant-global-unique",
        backends: BOTH,
        summary: "a UNIQUE constraint or index on a tenant-owned table leaves out the tenant column",
    },
    RuleInfo {
        id: "rls-enable-without-force",
        backends: POSTGRES,
        summary: "ENABLE ROW LEVEL SECURITY without FORCE: the table owner still bypasses the policies",
    },
    RuleInfo {
        id: "rls-disabled",
        backends: POSTGRES,
        summary: "DISABLE or NO FORCE ROW LEVEL SECURITY on a tenant-owned table",
    },
    RuleInfo {
        id: "policy-dropped-without-replacement",
        backends: POSTGRES,
        summary: "DROP POLICY with no CREATE POLICY on the same table in the same migration",
    },
    RuleInfo {
        id: "grant-to-public",
        backends: POSTGRES,
        summary: "GRANT … TO PUBLIC on a tenant-owned table",
    },
    RuleInfo {
        id: "security-definer-without-search-path",
        backends: POSTGRES,
        summary: "a SECURITY DEFINER function without a fixed search_path",
    },
    RuleInfo {
        id: "view-without-security-invoker",
        backends: POSTGRES,
        summary: "a view over tenant-owned tables without security_invoker (it reads as its owner, past RLS)",
    },
    RuleInfo {
        id: "function-without-search-path",
        backends: POSTGRES,
        summary: "a function or procedure without a fixed search_path (a caller's objects can shadow what it calls)",
    },
    RuleInfo {
        id: "materialized-view-over-tenant-tables",
        backends: POSTGRES,
        summary: "a materialized view over tenant-owned tables: a copy no row-level security filters",
    },
    RuleInfo {
        id: "not-statically-checkable",
        backends: POSTGRES,
        summary: "a DO block that runs dynamic SQL or creates objects: reported for information, the catalog rules judge what it leaves",
    },
    RuleInfo {
        id: "missing-down-migration",
        backends: BOTH,
        summary: "the down migration is missing or empty (mark a deliberate one `tenantgate:irreversible`)",
    },
    RuleInfo {
        id: "sqlite-unsupported-alter",
        backends: SQLITE,
        summary: "an ALTER TABLE form SQLite does not support",
    },
    RuleInfo {
        id: "sqlite-rebuild-drops-foreign-keys",
        backends: SQLITE,
        summary: "a table rebuild (create new, copy, drop, rename) whose new table lost foreign keys",
    },
    RuleInfo {
        id: "syntax-error",
        backends: POSTGRES,
        summary: "the PostgreSQL parser could not read a statement",
    },
];

/// Rules that inform and never fail.
const NOTICE_RULES: [&str; 1] = ["not-statically-checkable"];

/// Findings about the acknowledgments themselves.
const ALLOW_RULES: [&str; 4] = [
    "unused-allow",
    "allow-without-reason",
    "unknown-allow",
    "unused-acknowledgement",
];

/// The marker of a migration that cannot be reversed without loss, with its reason.
pub const IRREVERSIBLE_MARKER: &str = "tenantgate:irreversible";
const ALLOW_MARKER: &str = "tenantgate:allow(";

/// Whether a finding fails the lint.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Error,
    /// Acknowledged in the file or the configuration, with this reason.
    Acknowledged(String),
    /// In a locked migration: history, reported for information.
    Locked,
    /// Something the linter cannot judge from the text (dynamic SQL): said, never failed;
    /// the catalog rules judge what it leaves.
    Notice,
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub backend: Backend,
    pub rule: String,
    /// The migration file, relative to the project root.
    pub file: String,
    pub line: u32,
    pub message: String,
    /// The safe alternative.
    pub help: String,
    pub status: Status,
}

impl Finding {
    /// `file:line: rule: message`, then the safe alternative.
    pub fn render(&self) -> String {
        let status = match &self.status {
            Status::Error => String::new(),
            Status::Acknowledged(reason) => format!(" (acknowledged: {reason})"),
            Status::Locked => " (locked migration, for information)".to_string(),
            Status::Notice => " (for information)".to_string(),
        };
        format!(
            "{}:{}: {}: {}{status}\nfix: {}",
            self.file, self.line, self.rule, self.message, self.help
        )
    }

    pub fn to_failure(&self) -> Failure {
        Failure::new(format!(
            "{}:{}: {}: {}",
            self.file, self.line, self.rule, self.message
        ))
        .fix(self.help.clone())
        .in_file(self.file.clone())
        .at_line(self.line)
    }
}

/// A finding before its status is known: what the backend rules produce.
pub(crate) struct Raw {
    pub rule: String,
    pub offset: usize,
    pub message: String,
    pub help: String,
}

/// What the rules see of the folder around the migration they read.
pub(crate) struct Context<'a> {
    pub config: &'a Config,
    /// The migrations before this one, in order.
    pub earlier: &'a [FolderMigration],
}

impl Context<'_> {
    pub fn tenant_owned(&self, table: &str) -> bool {
        !self.config.is_global(table)
    }

    /// Whether a new table must carry a tenant column of its own (it is tenant-owned and
    /// not declared owned through a parent).
    pub fn needs_tenant_column(&self, table: &str) -> bool {
        self.tenant_owned(table) && self.config.owner_of(table).is_none()
    }

    /// The tenant column of `table`.
    pub fn tenant_column<'t>(&'t self, table: &str) -> &'t str {
        self.config.tenant_column(table)
    }

    /// What a fix text says a new tenant column is (the linter reads no schema, so the
    /// type is named by reference).
    pub fn tenant_column_definition(&self, table: &str) -> String {
        let tenants = &self.config.tenancy.tenants_table;
        let key = match &self.config.tenancy.tenants_key {
            Some(key) => format!(" ({key})"),
            None => String::new(),
        };
        format!(
            "{} <the type of {tenants}'s key> NOT NULL REFERENCES {tenants}{key}",
            self.tenant_column(table)
        )
    }
}

/// Lints one migration (its up file, and whether it has a down) of `backend`.
pub fn lint_migration(
    config: &Config,
    backend: Backend,
    folder: &Folder,
    migration: &FolderMigration,
) -> Vec<Finding> {
    let earlier: Vec<FolderMigration> = folder
        .migrations
        .iter()
        .filter(|m| m.version < migration.version)
        .cloned()
        .collect();
    let context = Context {
        config,
        earlier: &earlier,
    };
    let text = &migration.up_sql;
    let lines = Lines::new(text);
    let (mut raws, statements) = match backend {
        Backend::Postgres => postgres::lint(&context, migration, &lines),
        Backend::Sqlite => sqlite::lint(&context, migration, &lines),
    };
    let file = crate::display_path(&migration.up);
    let mut findings: Vec<Finding> = Vec::new();
    if let Some(raw) = missing_down(migration) {
        raws.push(raw);
    }
    let allows = allows(text);
    let mut used = vec![false; allows.len()];
    let stem = migration.stem();
    for raw in raws {
        let line = lines.line_of(raw.offset);
        let statement = statements
            .iter()
            .find(|(start, end)| (*start..=*end).contains(&line))
            .copied()
            .unwrap_or((line, line));
        let mut status = if NOTICE_RULES.contains(&raw.rule.as_str()) {
            Status::Notice
        } else {
            Status::Error
        };
        if raw.rule == "missing-down-migration" {
            let acknowledged = config
                .acknowledged(
                    Acknowledgement::IRREVERSIBLE,
                    backend,
                    migration.version,
                    &stem,
                )
                .next()
                .map(|a| a.reason.clone());
            if let Some(reason) = acknowledged.or_else(|| irreversible_reason(migration)) {
                status = Status::Acknowledged(reason);
            }
        }
        if let Some(ack) = config
            .acknowledged(&raw.rule, backend, migration.version, &stem)
            .next()
        {
            status = Status::Acknowledged(format!(
                "{} (in {})",
                ack.reason,
                crate::display_path(&config.path)
            ));
        }
        for (index, allow) in allows.iter().enumerate() {
            if allow.rule != raw.rule || allow.reason.is_empty() {
                continue;
            }
            // An acknowledgment covers the statement it sits in or the next one after it.
            let target = statements
                .iter()
                .find(|(_, end)| *end >= allow.line)
                .copied();
            if target == Some(statement) || allow.line == line {
                status = Status::Acknowledged(allow.reason.clone());
                used[index] = true;
            }
        }
        findings.push(Finding {
            backend,
            rule: raw.rule,
            file: file.clone(),
            line,
            message: raw.message,
            help: raw.help,
            status,
        });
    }
    for (allow, used) in allows.iter().zip(used) {
        let known = RULES.iter().any(|r| r.id == allow.rule)
            || (backend == Backend::Postgres && allow.rule.parse::<squawk_linter::Rule>().is_ok());
        let (rule, message, help) = if !known {
            (
                "unknown-allow",
                format!("`tenantgate:allow({})` names no {backend} rule", allow.rule),
                "use a rule id from `cargo xtask lint --rules`".to_string(),
            )
        } else if allow.reason.is_empty() {
            (
                "allow-without-reason",
                format!("`tenantgate:allow({})` gives no reason", allow.rule),
                format!(
                    "write why it is safe here: `-- tenantgate:allow({}): <reason>`",
                    allow.rule
                ),
            )
        } else if !used {
            (
                "unused-allow",
                format!(
                    "`tenantgate:allow({})` acknowledges nothing: the statement after it no longer triggers the rule",
                    allow.rule
                ),
                "remove the comment".to_string(),
            )
        } else {
            continue;
        };
        findings.push(Finding {
            backend,
            rule: rule.to_string(),
            file: file.clone(),
            line: allow.line,
            message,
            help,
            status: Status::Error,
        });
    }
    findings.sort_by_key(|f| f.line);
    findings
}

/// Which migrations of a folder to lint.
pub enum Selection<'a> {
    /// Only these (the new work: migrations the lock file does not hold yet).
    Only(&'a [FolderMigration]),
    /// Every migration; findings in locked ones are reported as `Locked`.
    All { locked: &'a BTreeSet<i64> },
}

/// Lints the selected migrations of one backend's folder. Migrations of the baseline
/// (adopted history) are not linted. A lint acknowledgement in the configuration that
/// names no migration, or that a linted migration no longer needs, is itself a finding.
pub fn lint_folder(
    config: &Config,
    backend: Backend,
    folder: &Folder,
    selection: &Selection,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut linted = Vec::new();
    for migration in &folder.migrations {
        if config.in_baseline(migration.version) {
            continue;
        }
        let locked = match selection {
            Selection::Only(chosen) => {
                if !chosen.iter().any(|m| m.version == migration.version) {
                    continue;
                }
                false
            }
            Selection::All { locked } => locked.contains(&migration.version),
        };
        linted.push(migration);
        for mut finding in lint_migration(config, backend, folder, migration) {
            if locked && finding.status == Status::Error {
                finding.status = Status::Locked;
            }
            findings.push(finding);
        }
    }
    let config_file = crate::display_path(&config.path);
    for ack in config.acknowledgements.iter().filter(|a| {
        a.applies_to(backend)
            && a.rule != Acknowledgement::IRREVERSIBLE
            && a.rule != Acknowledgement::MOVES_DATA
    }) {
        let target = folder
            .migrations
            .iter()
            .find(|m| ack.names(m.version, &m.stem()));
        let problem = match target {
            None => Some(format!(
                "the acknowledgement of `{}` names `{}`, which is no {backend} migration",
                ack.rule, ack.migration
            )),
            Some(migration) if linted.iter().any(|m| m.version == migration.version) => {
                let stem = migration.stem();
                let used = findings.iter().any(|f| {
                    f.rule == ack.rule && f.file == crate::display_path(&migration.up)
                        && matches!(&f.status, Status::Acknowledged(reason) if reason.contains(&config_file))
                });
                (!used).then(|| {
                    format!(
                        "the acknowledgement of `{}` for {stem} matches nothing: the migration no longer triggers that rule",
                        ack.rule
                    )
                })
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            findings.push(Finding {
                backend,
                rule: "unused-acknowledgement".to_string(),
                file: config_file.clone(),
                line: 1,
                message: problem,
                help: format!(
                    "remove the entry from {config_file}, or correct its `migration` and `rule`"
                ),
                status: Status::Error,
            });
        }
    }
    findings
}

struct Allow {
    line: u32,
    rule: String,
    reason: String,
}

/// Every `tenantgate:allow(rule): reason` comment of a file.
fn allows(text: &str) -> Vec<Allow> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let Some((_, comment)) = line.split_once("--") else {
            continue;
        };
        let Some(rest) = comment.trim_start().strip_prefix(ALLOW_MARKER) else {
            continue;
        };
        let Some((rule, after)) = rest.split_once(')') else {
            continue;
        };
        let reason = after.trim_start().strip_prefix(':').unwrap_or("").trim();
        found.push(Allow {
            line: number as u32 + 1,
            rule: rule.trim().to_string(),
            reason: reason.to_string(),
        });
    }
    found
}

/// The reason given by a `-- tenantgate:irreversible: reason` line in the up or down file.
pub fn irreversible_reason(migration: &FolderMigration) -> Option<String> {
    irreversible_reason_in(&migration.up_sql, migration.down_sql.as_deref())
}

/// [`irreversible_reason`] on the texts of an up and a down migration.
pub fn irreversible_reason_in(up: &str, down: Option<&str>) -> Option<String> {
    [Some(up), down]
        .into_iter()
        .flatten()
        .flat_map(str::lines)
        .filter_map(|line| line.split_once("--"))
        .find_map(|(_, comment)| {
            let rest = comment.trim_start().strip_prefix(IRREVERSIBLE_MARKER)?;
            let reason = rest.trim_start().strip_prefix(':').unwrap_or(rest).trim();
            Some(if reason.is_empty() {
                "no reason given".to_string()
            } else {
                reason.to_string()
            })
        })
}

/// Whether a down migration holds no statement at all (missing, blank, or comments only).
pub fn down_is_empty(migration: &FolderMigration) -> bool {
    migration.down_sql.as_deref().is_none_or(holds_no_statement)
}

/// Whether SQL text is only whitespace and comments.
pub fn holds_no_statement(sql: &str) -> bool {
    squawk_syntax::SourceFile::parse(sql)
        .tree()
        .stmts()
        .next()
        .is_none()
}

fn missing_down(migration: &FolderMigration) -> Option<Raw> {
    if !down_is_empty(migration) {
        return None;
    }
    let stem = migration.stem();
    Some(Raw {
        rule: "missing-down-migration".to_string(),
        offset: 0,
        message: match &migration.down {
            None => format!("{stem} has no down migration"),
            Some(_) => format!("{stem}.down.sql holds no statement"),
        },
        help: format!(
            "write {stem}.down.sql so that it restores the schema and data exactly as before (migrate-test checks it); if that is impossible without loss, say so with `-- {IRREVERSIBLE_MARKER}: <reason>`"
        ),
    })
}

/// Where the lines of a text start, so that the line of an offset is a binary search
/// and linting stays linear in the size of the file.
pub(crate) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { starts }
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> u32 {
        self.starts.partition_point(|start| *start <= offset) as u32
    }

    /// The byte offset where 1-based `line` starts.
    pub fn start_of(&self, line: u32) -> usize {
        self.starts
            .get((line.max(1) - 1) as usize)
            .copied()
            .unwrap_or_else(|| *self.starts.last().expect("line 1"))
    }
}

/// Human output: one block per finding, then a count.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        let label = match finding.status {
            Status::Error => "error",
            Status::Acknowledged(_) => "acknowledged",
            Status::Locked => "locked",
            Status::Notice => "notice",
        };
        let _ = writeln!(
            out,
            "{label:12} {:8} {}",
            finding.backend,
            finding.render().replace('\n', "\n                      ")
        );
    }
    out
}

/// GitHub workflow commands: an error per finding that fails, a notice per acknowledged one.
pub fn github_annotations(findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        let level = match finding.status {
            Status::Error => "error",
            Status::Acknowledged(_) | Status::Notice => "notice",
            Status::Locked => continue,
        };
        let _ = writeln!(
            out,
            "::{level} file={},line={},title={} {}::{}",
            finding.file,
            finding.line,
            finding.backend,
            finding.rule,
            crate::report::annotation_data(&format!("{}\nfix: {}", finding.message, finding.help))
        );
    }
    out
}

/// Every rule the linter knows, for `cargo xtask lint --rules`.
pub fn rule_list() -> String {
    let mut out = String::from("Tenantgate rules:\n");
    for rule in RULES {
        let backends: Vec<&str> = rule.backends.iter().map(|b| b.name()).collect();
        let _ = writeln!(
            out,
            "  {:38} {:16} {}",
            rule.id,
            backends.join("+"),
            rule.summary
        );
    }
    out.push_str("squawk rules (PostgreSQL, https://squawkhq.com/docs/rules):\n");
    let mut squawk: Vec<String> = postgres::squawk_rules()
        .iter()
        .map(ToString::to_string)
        .collect();
    squawk.sort();
    for rule in squawk {
        let _ = writeln!(out, "  {rule}");
    }
    let _ = writeln!(out, "about acknowledgments: {}", ALLOW_RULES.join(", "));
    out
}
