//! PostgreSQL: squawk's rules, then Tenantgate's tenant rules on the same syntax tree
//! (squawk's parser reads the whole PostgreSQL grammar, `DO` blocks and policies included).

use std::collections::BTreeSet;

use squawk_linter::{Linter, Rule};
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SourceFile, SyntaxNode};

use super::{Context, Lines, Raw};
use crate::folder::FolderMigration;

/// The squawk rules Tenantgate runs: squawk's defaults, less the timeout settings, which
/// squawk's own CLI makes opt-in too (`require-timeout-settings`): timeouts belong to the
/// connection that deploys, not to every migration file.
pub fn squawk_rules() -> Vec<Rule> {
    linter().rules.into_iter().collect()
}

fn linter() -> Linter {
    Linter::with_rules(&[], &[Rule::RequireTimeoutSettings])
}

/// Findings, and the line range of every statement (for acknowledgments).
pub(super) fn lint(
    context: &Context,
    migration: &FolderMigration,
    lines: &Lines,
) -> (Vec<Raw>, Vec<(u32, u32)>) {
    let text = migration.up_sql.as_str();
    let parse = SourceFile::parse(text);
    let mut raws = Vec::new();
    for error in parse.errors() {
        raws.push(Raw {
            rule: "syntax-error".to_string(),
            offset: usize::from(error.range().start()),
            message: format!("the PostgreSQL parser cannot read this: {}", error.message()),
            help: "fix the statement; migrate-test shows PostgreSQL's own error when it applies the file".to_string(),
        });
    }
    let mut linter = linter();
    // sqlx wraps each migration in a transaction unless it starts with `-- no-transaction`.
    linter.settings.assume_in_transaction = migration.runs_in_transaction();
    // squawk's advice follows the production major, like strong_migrations' target_version.
    let target = context.config.postgres_version;
    if let Some(version) = target
        && let Ok(version) = version.to_string().parse()
    {
        linter.settings.pg_version = version;
    }
    for violation in linter.lint(&parse, text) {
        raws.push(Raw {
            rule: violation.code.to_string(),
            offset: usize::from(violation.text_range.start()),
            message: violation.message.clone(),
            help: squawk_help(violation.code, violation.help.as_deref(), target),
        });
    }
    let file = parse.tree();
    // squawk reports CONCURRENTLY in a transaction only in files of several statements
    // (psql runs a lone statement outside one); sqlx wraps even a lone statement.
    let concurrent_in_transaction = Rule::BanConcurrentIndexCreationInTransaction.to_string();
    if migration.runs_in_transaction() && !raws.iter().any(|r| r.rule == concurrent_in_transaction)
    {
        for statement in file.stmts() {
            if let ast::Stmt::CreateIndex(index) = &statement
                && let Some(token) = index.concurrently_token()
            {
                raws.push(Raw {
                    rule: concurrent_in_transaction.clone(),
                    offset: usize::from(token.text_range().start()),
                    message: "CREATE INDEX CONCURRENTLY cannot run inside a transaction, and sqlx runs this migration in one".to_string(),
                    help: squawk_help(Rule::BanConcurrentIndexCreationInTransaction, None, target),
                });
            }
        }
    }
    let known = known_tables(context, &file);
    tenant_rules(context, &file, &known, &mut raws);
    let statements = file
        .stmts()
        .map(|statement| {
            let range = statement.syntax().text_range();
            (
                lines.line_of(usize::from(range.start())),
                lines.line_of(usize::from(range.end())),
            )
        })
        .collect();
    (raws, statements)
}

/// squawk's help, completed where sqlx or the production major (`[postgres] version`)
/// changes the answer.
fn squawk_help(rule: Rule, help: Option<&str>, target: Option<u32>) -> String {
    const NO_TRANSACTION: &str = "sqlx runs each migration in a transaction: make `-- no-transaction` the first line of this migration and keep the concurrent statement alone in it";
    match rule {
        Rule::AddingNotNullableField if target.is_some_and(|v| v >= 18) => "PostgreSQL 18 (the production major in [postgres] version): `ALTER TABLE … ADD CONSTRAINT <table>_<column>_not_null NOT NULL <column> NOT VALID;` here, then `ALTER TABLE … VALIDATE CONSTRAINT <table>_<column>_not_null;` in a later migration (it scans without blocking writes), instead of SET NOT NULL".to_string(),
        Rule::AddingNotNullableField => format!(
            "{}{}",
            help.unwrap_or("add a CHECK (<column> IS NOT NULL) NOT VALID, VALIDATE it in a later migration, then SET NOT NULL"),
            match target {
                Some(version) => format!(" (PostgreSQL {version}, the production major in [postgres] version; on 18, a NOT NULL constraint NOT VALID does it in one step)"),
                None => " (set [postgres] version to the production major for advice that follows it)".to_string(),
            }
        ),
        Rule::BanConcurrentIndexCreationInTransaction => NO_TRANSACTION.to_string(),
        Rule::RequireConcurrentIndexCreation | Rule::RequireConcurrentIndexDeletion => format!(
            "{}; {NO_TRANSACTION}",
            help.unwrap_or("use CONCURRENTLY").trim_end_matches('.')
        ),
        _ => help
            .map(str::to_string)
            .unwrap_or_else(|| format!("see https://squawkhq.com/docs/{rule}")),
    }
}

/// The lowercase text of a node's tokens, quoted identifiers unquoted, trivia left out.
fn words(node: &SyntaxNode) -> Vec<String> {
    node.descendants_with_tokens()
        .filter_map(|element| element.into_token())
        .filter(|token| !token.kind().is_trivia())
        .map(|token| {
            let text = token.text();
            match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => text.to_lowercase(),
            }
        })
        .collect()
}

/// The last name in a relation reference (`public.orders` → `orders`).
fn relation(node: &SyntaxNode) -> Option<String> {
    words(node).into_iter().rfind(|w| {
        !matches!(
            w.as_str(),
            "." | "*" | "only" | "on" | "table" | "if" | "exists"
        )
    })
}

fn created_table(create: &ast::CreateTable) -> Option<String> {
    relation(create.table_name()?.syntax())
}

/// Tables created by earlier migrations or by this one: the tables a view may read.
fn known_tables(context: &Context, file: &ast::SourceFile) -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    let earlier = context
        .earlier
        .iter()
        .map(|m| SourceFile::parse(&m.up_sql).tree());
    for source in earlier.chain(std::iter::once(file.clone())) {
        for statement in source.stmts() {
            if let ast::Stmt::CreateTable(create) = statement
                && let Some(name) = created_table(&create)
            {
                known.insert(name);
            }
        }
    }
    known
}

fn raw(rule: &str, node: &SyntaxNode, message: String, help: String) -> Raw {
    Raw {
        rule: rule.to_string(),
        offset: usize::from(node.text_range().start()),
        message,
        help,
    }
}

fn tenant_rules(
    context: &Context,
    file: &ast::SourceFile,
    known: &BTreeSet<String>,
    raws: &mut Vec<Raw>,
) {
    let config_file = crate::display_path(&context.config.path);
    let statements: Vec<ast::Stmt> = file.stmts().collect();
    let forced: BTreeSet<String> = statements
        .iter()
        .filter_map(|s| match s {
            ast::Stmt::AlterTable(alter) => Some(alter),
            _ => None,
        })
        .filter(|alter| {
            alter
                .actions()
                .any(|a| matches!(a, ast::AlterTableAction::ForceRls(_)))
        })
        .filter_map(|alter| relation(alter.table_relation_name()?.syntax()))
        .collect();
    let policies_created: BTreeSet<String> = statements
        .iter()
        .filter_map(|s| match s {
            ast::Stmt::CreatePolicy(create) => relation(create.on_table()?.syntax()),
            _ => None,
        })
        .collect();
    let global_unique = |table: &str, node: &SyntaxNode| {
        let column = context.tenant_column(table);
        raw(
            "tenant-global-unique",
            node,
            format!(
                "this UNIQUE on tenant-owned `{table}` leaves out `{column}`: one tenant's value blocks every other tenant from using it, and the error tells them it exists"
            ),
            format!("include the tenant column first: UNIQUE ({column}, …)"),
        )
    };
    for statement in &statements {
        match statement {
            ast::Stmt::CreateTable(create) => {
                let Some(table) = created_table(create) else {
                    continue;
                };
                let temporary = create.persistence().is_some();
                if temporary || !context.tenant_owned(&table) {
                    continue;
                }
                let column = context.tenant_column(&table);
                let needs_column = context.needs_tenant_column(&table);
                let mut has_column = false;
                for arg in create.table_arg_list().iter().flat_map(|l| l.args()) {
                    match arg {
                        ast::TableArg::Column(definition) => {
                            let name = definition
                                .name()
                                .and_then(|n| words(n.syntax()).pop())
                                .unwrap_or_default();
                            if name == column {
                                has_column = true;
                            }
                            for clause in definition.clauses() {
                                if let ast::ColumnClause::ColumnConstraint(
                                    ast::ColumnConstraint::UniqueConstraint(unique),
                                ) = clause
                                    && name != column
                                    && needs_column
                                {
                                    raws.push(global_unique(&table, unique.syntax()));
                                }
                            }
                        }
                        ast::TableArg::TableConstraint(ast::TableConstraint::UniqueConstraint(
                            unique,
                        )) if needs_column
                            && !words(unique.syntax()).iter().any(|w| w == column) =>
                        {
                            raws.push(global_unique(&table, unique.syntax()));
                        }
                        _ => {}
                    }
                }
                // A partition or a child table carries its parent's columns.
                let from_parent = create.partition_of().is_some() || create.inherits().is_some();
                if !has_column && needs_column && !from_parent {
                    raws.push(raw(
                        "tenant-table-without-tenant-column",
                        create.syntax(),
                        format!(
                            "new table `{table}` has no `{column}` column: its rows belong to no tenant, and every tenant can read them"
                        ),
                        format!(
                            "add `{}` and lead the primary key with it; if `{table}` is shared reference data, list it under [[global_tables]] in {config_file} with a reason",
                            context.tenant_column_definition(&table)
                        ),
                    ));
                }
            }
            ast::Stmt::AlterTable(alter) => {
                let Some(table) = alter
                    .table_relation_name()
                    .and_then(|r| relation(r.syntax()))
                else {
                    continue;
                };
                for action in alter.actions() {
                    match &action {
                        ast::AlterTableAction::EnableRls(node) if !forced.contains(&table) => {
                            raws.push(raw(
                                "rls-enable-without-force",
                                node.syntax(),
                                format!(
                                    "row-level security is enabled on `{table}` but not forced: the table's owner (often the role migrations and the app run as) bypasses every policy"
                                ),
                                format!("add `ALTER TABLE {table} FORCE ROW LEVEL SECURITY;`"),
                            ));
                        }
                        ast::AlterTableAction::DisableRls(_)
                        | ast::AlterTableAction::NoForceRls(_)
                            if context.tenant_owned(&table) =>
                        {
                            raws.push(raw(
                                "rls-disabled",
                                action.syntax(),
                                format!(
                                    "this turns row-level security off (or unforces it) on tenant-owned `{table}`: every tenant's rows become visible to every tenant"
                                ),
                                "keep RLS enabled and forced; change the policies instead (CREATE POLICY before DROP POLICY, in one migration)".to_string(),
                            ));
                        }
                        ast::AlterTableAction::AddConstraint(add) => {
                            if let Some(ast::Constraint::UniqueConstraint(unique)) =
                                add.constraint()
                                && context.needs_tenant_column(&table)
                                && !words(unique.syntax())
                                    .iter()
                                    .any(|w| w == context.tenant_column(&table))
                            {
                                raws.push(global_unique(&table, unique.syntax()));
                            }
                        }
                        ast::AlterTableAction::AddColumn(add) => {
                            for constraint in add.constraints() {
                                if let ast::Constraint::UniqueConstraint(unique) = constraint
                                    && context.needs_tenant_column(&table)
                                {
                                    raws.push(global_unique(&table, unique.syntax()));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            ast::Stmt::CreateIndex(index) if index.unique_token().is_some() => {
                let Some(table) = index
                    .table_relation_name()
                    .and_then(|r| relation(r.syntax()))
                else {
                    continue;
                };
                let columns = index
                    .partition_item_list()
                    .map(|l| words(l.syntax()))
                    .unwrap_or_default();
                if context.needs_tenant_column(&table)
                    && !columns.iter().any(|w| w == context.tenant_column(&table))
                {
                    raws.push(global_unique(&table, index.syntax()));
                }
            }
            ast::Stmt::DropPolicy(drop) => {
                let Some(table) = drop.on_table().and_then(|t| relation(t.syntax())) else {
                    continue;
                };
                if !policies_created.contains(&table) {
                    raws.push(raw(
                        "policy-dropped-without-replacement",
                        drop.syntax(),
                        format!(
                            "a policy on `{table}` is dropped and none is created in this migration: with RLS forced the app sees no rows; if RLS is off, it sees every tenant's"
                        ),
                        format!("create the replacement policy on `{table}` in the same migration, before the DROP"),
                    ));
                }
            }
            ast::Stmt::Grant(grant) => {
                let to_public = grant
                    .role_ref_list()
                    .is_some_and(|roles| words(roles.syntax()).iter().any(|w| w == "public"));
                let objects = grant
                    .on_privilege_objects_clause()
                    .map(|o| words(o.syntax()))
                    .unwrap_or_default();
                let all_tables = objects.iter().any(|w| w == "all");
                let tenant_tables: Vec<&String> = objects
                    .iter()
                    .filter(|w| known.contains(*w) && context.tenant_owned(w))
                    .collect();
                if to_public && (all_tables || !tenant_tables.is_empty()) {
                    raws.push(raw(
                        "grant-to-public",
                        grant.syntax(),
                        format!(
                            "GRANT … TO PUBLIC on tenant-owned {}: every role, present and future, gets it",
                            if all_tables {
                                "tables (ALL TABLES)".to_string()
                            } else {
                                tenant_tables
                                    .iter()
                                    .map(|t| format!("`{t}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        ),
                        match context.config.row_level_security() {
                            Some(rls) => format!("grant to the application role `{}` only", rls.app_role),
                            None => "grant to the roles that need it only".to_string(),
                        },
                    ));
                }
            }
            ast::Stmt::CreateFunction(function) => {
                let options: Vec<ast::FuncOption> = function
                    .option_list()
                    .map(|l| l.options().collect())
                    .unwrap_or_default();
                let definer = options
                    .iter()
                    .any(|o| matches!(o, ast::FuncOption::SecurityDefinerFuncOption(_)));
                let fixed_path = options.iter().any(|o| {
                    matches!(o, ast::FuncOption::SetFuncOption(set)
                        if words(set.syntax()).iter().any(|w| w == "search_path"))
                });
                if definer && !fixed_path {
                    raws.push(raw(
                        "security-definer-without-search-path",
                        function.syntax(),
                        "a SECURITY DEFINER function without a fixed search_path runs with its owner's rights and resolves names through the caller's search_path: a caller can shadow a table or function and act as the owner".to_string(),
                        "add `SET search_path = pg_catalog, pg_temp` (and schema-qualify the app's tables), or use SECURITY INVOKER".to_string(),
                    ));
                } else if !fixed_path && !declared_routine(context, function.syntax()) {
                    raws.push(without_search_path(
                        function.syntax(),
                        "function",
                        &config_file,
                    ));
                }
            }
            ast::Stmt::CreateProcedure(procedure) => {
                let fixed_path = words(procedure.syntax())
                    .windows(2)
                    .any(|w| w[0] == "set" && w[1] == "search_path");
                if !fixed_path && !declared_routine(context, procedure.syntax()) {
                    raws.push(without_search_path(
                        procedure.syntax(),
                        "procedure",
                        &config_file,
                    ));
                }
            }
            ast::Stmt::CreateMaterializedView(view) => {
                let reads = tenant_tables_read(
                    view.query().map(|q| words(q.syntax())).unwrap_or_default(),
                    known,
                    context,
                );
                if !reads.is_empty() {
                    raws.push(raw(
                        "materialized-view-over-tenant-tables",
                        view.syntax(),
                        format!(
                            "this materialized view copies tenant-owned {}: a materialized view has no row-level security, so whoever can read it reads every tenant's rows",
                            reads.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                        ),
                        format!(
                            "grant it to no role the app runs as and serve it through a tenant-filtered function or a security_invoker view; if it holds no tenant's data, list it under [[global_tables]] in {config_file} with a reason"
                        ),
                    ));
                }
            }
            ast::Stmt::Do(block) => {
                let body = block
                    .body()
                    .map(|b| b.syntax().text().to_string().to_lowercase())
                    .unwrap_or_default();
                let dynamic = ["execute", "create ", "alter ", "grant ", "drop "]
                    .iter()
                    .filter(|w| body.contains(*w))
                    .map(|w| w.trim())
                    .collect::<Vec<_>>();
                if !dynamic.is_empty() {
                    raws.push(raw(
                        "not-statically-checkable",
                        block.syntax(),
                        format!(
                            "this DO block runs SQL the linter cannot read ({}): not statically checkable; the catalog rules will judge what it leaves after the migration",
                            dynamic.join(", ")
                        ),
                        "prefer plain statements where you can, so the linter reads them too".to_string(),
                    ));
                }
            }
            ast::Stmt::CreateView(view) => {
                let reads = tenant_tables_read(
                    view.query().map(|q| words(q.syntax())).unwrap_or_default(),
                    known,
                    context,
                );
                let params = view
                    .with_params()
                    .map(|p| words(p.syntax()))
                    .unwrap_or_default();
                let invoker = params.iter().enumerate().any(|(i, w)| {
                    w == "security_invoker"
                        && match params.get(i + 1).map(String::as_str) {
                            Some("=") => matches!(
                                params.get(i + 2).map(String::as_str),
                                Some("true" | "on" | "1" | "yes" | "'true'" | "'on'")
                            ),
                            _ => true,
                        }
                });
                if !reads.is_empty() && !invoker {
                    raws.push(raw(
                        "view-without-security-invoker",
                        view.syntax(),
                        format!(
                            "this view reads tenant-owned {} as its owner: row-level security is checked against the owner, so every tenant sees every tenant's rows through it",
                            reads.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                        ),
                        "create it `WITH (security_invoker = true)` (PostgreSQL 15+)".to_string(),
                    ));
                }
            }
            _ => {}
        }
    }
}

/// The tenant-owned tables among a query's words.
fn tenant_tables_read(
    words: Vec<String>,
    known: &BTreeSet<String>,
    context: &Context,
) -> Vec<String> {
    words
        .into_iter()
        .filter(|w| known.contains(w) && context.tenant_owned(w))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn without_search_path(node: &SyntaxNode, kind: &str, config_file: &str) -> Raw {
    raw(
        "function-without-search-path",
        node,
        format!(
            "this {kind} has no fixed search_path: it resolves the names it uses through its caller's, so whoever can create an object earlier on that path decides what it runs"
        ),
        format!(
            "add `SET search_path = pg_catalog, public` (or the schemas it uses, pg_temp last); a {kind} that must follow the caller's path can be declared under [[functions]] in {config_file} with a reason"
        ),
    )
}

/// Whether a `CREATE FUNCTION` / `CREATE PROCEDURE` makes a routine declared under
/// `[[functions]]` (by name: the linter does not resolve argument types).
fn declared_routine(context: &Context, node: &SyntaxNode) -> bool {
    let words = words(node);
    let Some(start) = words
        .iter()
        .position(|w| w == "function" || w == "procedure")
    else {
        return false;
    };
    let name: String = words[start + 1..]
        .iter()
        .take_while(|w| *w != "(")
        .map(String::as_str)
        .collect();
    context.config.functions.iter().any(|declared| {
        let wanted = declared.name.split('(').next().unwrap_or_default();
        let bare = |n: &str| n.strip_prefix("public.").unwrap_or(n).to_string();
        bare(wanted) == bare(&name)
    })
}
