//! SQLite: ALTER TABLE forms SQLite refuses, table rebuilds that lose foreign keys, and the
//! tenant rules that apply without row-level security. Statements are split with
//! sqlparser's tokenizer (trigger bodies kept whole) and parsed with its SQLite dialect; a
//! statement it cannot parse is left to the rehearsal, which runs it on a real SQLite.

use std::collections::BTreeMap;

use sqlparser::ast::{
    AlterTableOperation, ColumnOption, CreateTable, Expr, ObjectName, ObjectType,
    RenameTableNameKind, Statement, TableConstraint, UnaryOperator,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::{Context, Lines, Raw};
use crate::folder::FolderMigration;

/// A statement of a file: its parse (when sqlparser reads it) and its lines.
struct Parsed {
    statement: Option<Statement>,
    first_line: u32,
    last_line: u32,
}

/// Splits a file into statements at top-level semicolons; `BEGIN … END` of a trigger and
/// `CASE … END` stay inside their statement.
fn statements(text: &str) -> Vec<Parsed> {
    let Ok(tokens) = Tokenizer::new(&SQLiteDialect {}, text).tokenize_with_location() else {
        return Vec::new();
    };
    let mut parsed = Vec::new();
    let mut current: Vec<&sqlparser::tokenizer::TokenWithSpan> = Vec::new();
    let mut depth = 0usize;
    let mut is_trigger = false;
    let mut finish = |current: &mut Vec<&sqlparser::tokenizer::TokenWithSpan>| {
        let code: Vec<_> = current
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect();
        if let (Some(first), Some(last)) = (code.first(), code.last()) {
            let sql: String = current.iter().map(|t| t.token.to_string()).collect();
            parsed.push(Parsed {
                statement: Parser::parse_sql(&SQLiteDialect {}, &sql)
                    .ok()
                    .and_then(|mut s| (s.len() == 1).then(|| s.remove(0))),
                first_line: first.span.start.line as u32,
                last_line: last.span.end.line as u32,
            });
        }
        current.clear();
    };
    for token in &tokens {
        if let Token::Word(word) = &token.token {
            match word.keyword {
                Keyword::TRIGGER => is_trigger = true,
                Keyword::BEGIN if is_trigger => depth += 1,
                Keyword::CASE => depth += 1,
                Keyword::END => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if token.token == Token::SemiColon && depth == 0 {
            finish(&mut current);
            is_trigger = false;
            continue;
        }
        current.push(token);
    }
    finish(&mut current);
    parsed
}

fn last_name(name: &ObjectName) -> String {
    let text = name.to_string();
    let last = text.rsplit('.').next().unwrap_or(&text);
    last.trim_matches(|c| c == '"' || c == '`' || c == '[' || c == ']')
        .to_lowercase()
}

/// A foreign key as (columns, parent table, parent columns), all lowercase.
type ForeignKey = (Vec<String>, String, Vec<String>);

fn foreign_keys(create: &CreateTable) -> Vec<ForeignKey> {
    let lower = |idents: &[sqlparser::ast::Ident]| -> Vec<String> {
        idents.iter().map(|i| i.value.to_lowercase()).collect()
    };
    let mut keys = Vec::new();
    for column in &create.columns {
        for option in &column.options {
            if let ColumnOption::ForeignKey(fk) = &option.option {
                keys.push((
                    vec![column.name.value.to_lowercase()],
                    last_name(&fk.foreign_table),
                    lower(&fk.referred_columns),
                ));
            }
        }
    }
    for constraint in &create.constraints {
        if let TableConstraint::ForeignKey(fk) = constraint {
            keys.push((
                lower(&fk.columns),
                last_name(&fk.foreign_table),
                lower(&fk.referred_columns),
            ));
        }
    }
    keys
}

fn describe(key: &ForeignKey) -> String {
    format!("({}) → {} ({})", key.0.join(", "), key.1, key.2.join(", "))
}

/// The foreign keys of every table, replayed through a file's statements.
#[derive(Default)]
struct Tables {
    keys: BTreeMap<String, Vec<ForeignKey>>,
    /// Tables dropped in the current file, with the keys they had: a rebuild in progress.
    dropped: BTreeMap<String, Vec<ForeignKey>>,
}

impl Tables {
    /// Applies a statement; returns the keys a rebuild lost, with the rebuilt table's name.
    fn apply(&mut self, statement: &Statement) -> Option<(String, Vec<ForeignKey>)> {
        match statement {
            Statement::CreateTable(create) => {
                let name = last_name(&create.name);
                let keys = foreign_keys(create);
                self.keys.insert(name.clone(), keys.clone());
                self.lost_by_rebuild(&name, &keys)
            }
            Statement::Drop {
                object_type: ObjectType::Table,
                names,
                ..
            } => {
                for name in names {
                    let name = last_name(name);
                    let keys = self.keys.remove(&name).unwrap_or_default();
                    self.dropped.insert(name, keys);
                }
                None
            }
            Statement::AlterTable(alter) => {
                let from = last_name(&alter.name);
                let mut lost = None;
                for operation in &alter.operations {
                    match operation {
                        AlterTableOperation::RenameTable { table_name } => {
                            let (RenameTableNameKind::To(to) | RenameTableNameKind::As(to)) =
                                table_name;
                            let to = last_name(to);
                            let keys = self.keys.remove(&from).unwrap_or_default();
                            self.keys.insert(to.clone(), keys.clone());
                            lost = self.lost_by_rebuild(&to, &keys);
                        }
                        AlterTableOperation::AddColumn { column_def, .. } => {
                            for option in &column_def.options {
                                if let ColumnOption::ForeignKey(fk) = &option.option {
                                    self.keys.entry(from.clone()).or_default().push((
                                        vec![column_def.name.value.to_lowercase()],
                                        last_name(&fk.foreign_table),
                                        fk.referred_columns
                                            .iter()
                                            .map(|i| i.value.to_lowercase())
                                            .collect(),
                                    ));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                lost
            }
            _ => None,
        }
    }

    fn lost_by_rebuild(
        &mut self,
        name: &str,
        keys: &[ForeignKey],
    ) -> Option<(String, Vec<ForeignKey>)> {
        let before = self.dropped.remove(name)?;
        // A key is kept when the new table references the same parent through at least the
        // same columns: (store_id) → stores becoming (tenant_id, store_id) → stores is kept.
        let kept = |old: &ForeignKey| {
            keys.iter()
                .any(|new| new.1 == old.1 && old.0.iter().all(|c| new.0.contains(c)))
        };
        let lost: Vec<ForeignKey> = before.into_iter().filter(|k| !kept(k)).collect();
        (!lost.is_empty()).then(|| (name.to_string(), lost))
    }
}

/// Findings, and the line range of every statement (for acknowledgments).
pub(super) fn lint(
    context: &Context,
    migration: &FolderMigration,
    lines: &Lines,
) -> (Vec<Raw>, Vec<(u32, u32)>) {
    let mut tables = Tables::default();
    for earlier in context.earlier {
        for parsed in statements(&earlier.up_sql) {
            if let Some(statement) = &parsed.statement {
                tables.apply(statement);
            }
        }
        tables.dropped.clear();
    }
    let text = migration.up_sql.as_str();
    let config_file = crate::display_path(&context.config.path);
    let parsed = statements(text);
    let mut raws = Vec::new();
    for statement in &parsed {
        let Some(sql) = &statement.statement else {
            continue;
        };
        let offset = lines.start_of(statement.first_line);
        let mut push = |rule: &str, message: String, help: String| {
            raws.push(Raw {
                rule: rule.to_string(),
                offset,
                message,
                help,
            });
        };
        let global_unique = |table: &str| {
            let column = context.tenant_column(table);
            (
                format!(
                    "this UNIQUE on tenant-owned `{table}` leaves out `{column}`: one tenant's value blocks every other tenant from using it"
                ),
                format!("include the tenant column first: UNIQUE ({column}, …)"),
            )
        };
        match sql {
            Statement::CreateTable(create) => {
                let table = last_name(&create.name);
                // A rebuild's new table (`new_orders`) is judged by the table it replaces.
                let is_rebuild_copy = parsed.iter().any(|p| {
                    matches!(&p.statement, Some(Statement::AlterTable(alter))
                        if last_name(&alter.name) == table
                        && alter.operations.iter().any(|o| matches!(o, AlterTableOperation::RenameTable { .. })))
                });
                let column = context.tenant_column(&table);
                let tenant_owned = context.needs_tenant_column(&table) && !create.temporary;
                if tenant_owned
                    && !is_rebuild_copy
                    && !create
                        .columns
                        .iter()
                        .any(|c| c.name.value.eq_ignore_ascii_case(column))
                {
                    push(
                        "tenant-table-without-tenant-column",
                        format!(
                            "new table `{table}` has no `{column}` column: its rows belong to no tenant, and every tenant can read them"
                        ),
                        format!(
                            "add `{}` and lead the primary key with it; if `{table}` is shared reference data, list it under [[global_tables]] in {config_file} with a reason",
                            context.tenant_column_definition(&table)
                        ),
                    );
                }
                if tenant_owned {
                    let column_unique = create.columns.iter().any(|c| {
                        !c.name.value.eq_ignore_ascii_case(column)
                            && c.options
                                .iter()
                                .any(|o| matches!(o.option, ColumnOption::Unique(_)))
                    });
                    let table_unique = create.constraints.iter().any(|c| {
                        matches!(c, TableConstraint::Unique(unique)
                            if !unique.columns.iter().any(|i| i.column.expr.to_string().eq_ignore_ascii_case(column)))
                    });
                    if column_unique || table_unique {
                        let (message, help) = global_unique(&table);
                        push("tenant-global-unique", message, help);
                    }
                }
            }
            Statement::CreateIndex(index) if index.unique => {
                let table = last_name(&index.table_name);
                let column = context.tenant_column(&table);
                let has_column = index
                    .columns
                    .iter()
                    .any(|i| i.column.expr.to_string().eq_ignore_ascii_case(column));
                if context.needs_tenant_column(&table) && !has_column {
                    let (message, help) = global_unique(&table);
                    push("tenant-global-unique", message, help);
                }
            }
            Statement::AlterTable(alter) => {
                let table = last_name(&alter.name);
                for operation in &alter.operations {
                    if let Some(problem) = unsupported(operation) {
                        push(
                            "sqlite-unsupported-alter",
                            format!("SQLite cannot run this ALTER TABLE on `{table}`: {problem}"),
                            format!(
                                "rebuild `{table}`: CREATE TABLE new_{table} with the new definition, INSERT INTO new_{table} SELECT … FROM {table}, DROP TABLE {table}, ALTER TABLE new_{table} RENAME TO {table}, then recreate its indexes and triggers (https://www.sqlite.org/lang_altertable.html#otheralter)"
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
        if let Some((table, lost)) = tables.apply(sql) {
            push(
                "sqlite-rebuild-drops-foreign-keys",
                format!(
                    "this rebuild of `{table}` drops its foreign key{} {}: the rebuilt table accepts rows whose parents do not exist",
                    if lost.len() == 1 { "" } else { "s" },
                    lost.iter().map(describe).collect::<Vec<_>>().join(", ")
                ),
                format!(
                    "copy every REFERENCES clause of the old `{table}` into the new table's CREATE TABLE"
                ),
            );
        }
    }
    let lines = parsed.iter().map(|p| (p.first_line, p.last_line)).collect();
    (raws, lines)
}

/// Why SQLite refuses an ALTER TABLE operation, if it does.
fn unsupported(operation: &AlterTableOperation) -> Option<String> {
    match operation {
        AlterTableOperation::RenameColumn { .. }
        | AlterTableOperation::RenameTable { .. }
        | AlterTableOperation::DropColumn { .. } => None,
        AlterTableOperation::AddColumn { column_def, .. } => {
            let options: Vec<&ColumnOption> =
                column_def.options.iter().map(|o| &o.option).collect();
            let default = options.iter().find_map(|o| match o {
                ColumnOption::Default(expr) => Some(expr),
                _ => None,
            });
            let name = &column_def.name.value;
            if options
                .iter()
                .any(|o| matches!(o, ColumnOption::PrimaryKey(_)))
            {
                Some(format!(
                    "ADD COLUMN {name} … PRIMARY KEY (\"Cannot add a PRIMARY KEY column\")"
                ))
            } else if options.iter().any(|o| matches!(o, ColumnOption::Unique(_))) {
                Some(format!(
                    "ADD COLUMN {name} … UNIQUE (\"Cannot add a UNIQUE column\")"
                ))
            } else if options.iter().any(|o| matches!(o, ColumnOption::NotNull))
                && default.is_none_or(|d| d.to_string().eq_ignore_ascii_case("null"))
            {
                Some(format!(
                    "ADD COLUMN {name} … NOT NULL without a non-NULL default (\"Cannot add a NOT NULL column with default value NULL\")"
                ))
            } else if let Some(expr) = default
                && !is_constant(expr)
            {
                Some(format!(
                    "ADD COLUMN {name} … DEFAULT {expr} (\"Cannot add a column with non-constant default\")"
                ))
            } else {
                None
            }
        }
        other => Some(format!(
            "`{other}` is not one of the forms SQLite supports (RENAME TO, RENAME COLUMN, ADD COLUMN, DROP COLUMN)"
        )),
    }
}

fn is_constant(expr: &Expr) -> bool {
    match expr {
        Expr::Value(_) => true,
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => matches!(**expr, Expr::Value(_)),
        _ => false,
    }
}
