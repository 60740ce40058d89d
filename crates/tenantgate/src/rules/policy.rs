//! What a row-level security policy means, read from its expression (parsed with
//! sqlparser, as `pg_policies` prints it): does every row it lets through belong to the
//! current tenant?
//!
//! An expression *implies the tenant filter* when it is a comparison of the table's tenant
//! column with the current tenant, a configured tenant predicate, a conjunction with one
//! such side, or a disjunction whose every branch does. The current tenant is
//! `current_setting('<setting>'[, missing_ok])` or a configured tenant function, through
//! casts, `NULLIF(…, '')` and scalar sub-selects; anything else (a `COALESCE` with a
//! literal tenant, another setting) is not, because it does not fail closed.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Mutex, OnceLock};

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr,
    Value, VisitMut, VisitorMut,
};

/// How the policies of one table name the current tenant.
pub struct TenantFilter<'a> {
    /// The table's tenant column.
    pub column: &'a str,
    /// The setting `current_setting(…)` reads.
    pub setting: Option<&'a str>,
    /// Expressions that are the current tenant (`app.current_tenant()`), parsed.
    pub functions: Vec<Expr>,
    /// Predicates that filter by tenant, with the column filled in, in canonical text.
    pub predicates: Vec<String>,
    /// What the filter was made from, which is all its verdicts depend on: the key of
    /// [`TenantFilter::implied_by_text`]'s memo.
    made_from: String,
}

impl<'a> TenantFilter<'a> {
    /// The filter for a table whose tenant column is `column`. Configured functions and
    /// predicates that do not parse are left out (the configuration check names them).
    pub fn new(
        column: &'a str,
        setting: Option<&'a str>,
        functions: &[String],
        predicates: &[String],
    ) -> TenantFilter<'a> {
        TenantFilter {
            column,
            setting,
            functions: functions
                .iter()
                .filter_map(|text| parse_expression(text))
                .collect(),
            predicates: predicates
                .iter()
                .filter_map(|text| parse_expression(&text.replace("{column}", column)))
                .map(|expr| canonical(&expr))
                .collect(),
            made_from: format!("{column}\u{1f}{setting:?}\u{1f}{functions:?}\u{1f}{predicates:?}"),
        }
    }

    /// Whether every row `expression` admits has the current tenant in the tenant column.
    /// Memoized: a rehearsal asks it of every table's policies after every step, and the
    /// policies of a long history are mostly the same texts step after step.
    pub fn implied_by_text(&self, expression: &str) -> bool {
        static VERDICTS: OnceLock<Mutex<HashMap<(String, String), bool>>> = OnceLock::new();
        let key = (self.made_from.clone(), expression.to_string());
        let verdicts = VERDICTS.get_or_init(Mutex::default);
        if let Some(verdict) = verdicts.lock().ok().and_then(|v| v.get(&key).copied()) {
            return verdict;
        }
        let verdict = parse_expression(expression).is_some_and(|expr| self.implied_by(&expr));
        if let Ok(mut verdicts) = verdicts.lock() {
            if verdicts.len() >= MEMO_ENTRIES {
                verdicts.clear();
            }
            verdicts.insert(key, verdict);
        }
        verdict
    }

    pub fn implied_by(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Nested(inner) => self.implied_by(inner),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => self.implied_by(left) || self.implied_by(right),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Or,
                right,
            } => self.implied_by(left) && self.implied_by(right),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } if (is_column(left, self.column) && self.is_tenant(right))
                || (is_column(right, self.column) && self.is_tenant(left)) =>
            {
                true
            }
            other => {
                let text = canonical(other);
                self.predicates.contains(&text)
            }
        }
    }

    /// The part of `expression` that lets other tenants' rows through: the first
    /// disjunct that does not imply the filter, or the whole expression.
    pub fn leak_in(&self, expression: &str) -> String {
        fn walk(filter: &TenantFilter<'_>, expr: &Expr) -> Option<String> {
            if filter.implied_by(expr) {
                return None;
            }
            match expr {
                Expr::Nested(inner) => walk(filter, inner),
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Or,
                    right,
                } => walk(filter, left).or_else(|| walk(filter, right)),
                other => Some(other.to_string()),
            }
        }
        match parse_expression(expression) {
            Some(expr) => walk(self, &expr).unwrap_or_else(|| expression.to_string()),
            None => expression.to_string(),
        }
    }

    /// Whether `expr` is the current tenant.
    fn is_tenant(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Nested(inner) => self.is_tenant(inner),
            Expr::Cast { expr, .. } => self.is_tenant(expr),
            Expr::Subquery(query) => match query.body.as_ref() {
                SetExpr::Select(select) if select.from.is_empty() => {
                    match select.projection.as_slice() {
                        [SelectItem::UnnamedExpr(inner)]
                        | [SelectItem::ExprWithAlias { expr: inner, .. }] => self.is_tenant(inner),
                        _ => false,
                    }
                }
                _ => false,
            },
            Expr::Function(function) => {
                let name = function.name.to_string().to_ascii_lowercase();
                let args = match &function.args {
                    FunctionArguments::List(list) => list
                        .args
                        .iter()
                        .filter_map(|arg| match arg {
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
                            _ => None,
                        })
                        .collect::<Vec<_>>(),
                    _ => Vec::new(),
                };
                if name == "current_setting" || name == "pg_catalog.current_setting" {
                    return args.first().is_some_and(|first| {
                        string_literal(first).is_some_and(|value| Some(value) == self.setting)
                    });
                }
                if name == "nullif" || name == "pg_catalog.nullif" {
                    return args.len() == 2
                        && string_literal(args[1]) == Some("")
                        && self.is_tenant(args[0]);
                }
                let text = canonical(expr);
                self.functions.iter().any(|f| canonical(f) == text)
            }
            _ => false,
        }
    }
}

/// How many parsed expressions (and verdicts) are remembered before the memo starts over.
const MEMO_ENTRIES: usize = 10_000;

/// A SQL expression as the catalog prints it (a policy's USING, a CHECK), parsed.
/// Memoized: the same policy texts come back after every step of a rehearsal, and
/// parsing is most of what judging them costs.
pub fn parse_expression(text: &str) -> Option<Expr> {
    static PARSED: OnceLock<Mutex<HashMap<String, Option<Expr>>>> = OnceLock::new();
    let parsed = PARSED.get_or_init(Mutex::default);
    if let Some(expr) = parsed.lock().ok().and_then(|p| p.get(text).cloned()) {
        return expr;
    }
    let expr = sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_expr())
        .ok();
    if let Ok(mut parsed) = parsed.lock() {
        if parsed.len() >= MEMO_ENTRIES {
            parsed.clear();
        }
        parsed.insert(text.to_string(), expr.clone());
    }
    expr
}

/// Whether `expr` is the column `column` (qualified, parenthesized or cast).
pub fn is_column(expr: &Expr, column: &str) -> bool {
    match expr {
        Expr::Identifier(ident) => ident.value == column,
        Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|p| p.value == column),
        Expr::Nested(expr) | Expr::Cast { expr, .. } => is_column(expr, column),
        _ => false,
    }
}

/// The text of a string literal (through casts and parentheses).
pub fn string_literal(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) => Some(text),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => string_literal(expr),
        _ => None,
    }
}

/// The text two expressions share when they mean the same: without parentheses, without
/// the casts PostgreSQL adds to literals (`'x'::text`), without schema qualifications of
/// function names, lowercase.
pub fn canonical(expr: &Expr) -> String {
    struct Strip;
    impl VisitorMut for Strip {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            loop {
                let replacement = match expr {
                    Expr::Nested(inner) => Some((**inner).clone()),
                    Expr::Cast { expr: inner, .. } if matches!(**inner, Expr::Value(_)) => {
                        Some((**inner).clone())
                    }
                    _ => None,
                };
                match replacement {
                    Some(inner) => *expr = inner,
                    None => break,
                }
            }
            if let Expr::Function(function) = expr
                && function.name.0.len() > 1
            {
                let last = function.name.0.last().cloned().expect("a name part");
                function.name.0 = vec![last];
            }
            ControlFlow::Continue(())
        }
    }
    let mut copy = expr.clone();
    let _ = copy.visit(&mut Strip);
    copy.to_string().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::TenantFilter;

    fn implied(expression: &str) -> bool {
        TenantFilter::new(
            "tenant_id",
            Some("app.tenant_id"),
            &["app.current_tenant()".to_string()],
            &["basejump.has_role_on_account({column})".to_string()],
        )
        .implied_by_text(expression)
    }

    #[test]
    fn the_policy_pg_policies_shows_for_the_demo_filters_by_tenant() {
        assert!(implied(
            "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::bigint)"
        ));
    }

    #[test]
    fn casts_missing_ok_and_sub_selects_are_the_setting_too() {
        assert!(implied(
            "tenant_id = current_setting('app.tenant_id')::bigint"
        ));
        assert!(implied(
            "(tenant_id = (current_setting('app.tenant_id'::text, true))::uuid)"
        ));
        assert!(implied(
            "((tenant_id)::text = current_setting('app.tenant_id'::text))"
        ));
        assert!(implied(
            "(tenant_id = ( SELECT (current_setting('app.tenant_id'::text))::bigint AS current_setting))"
        ));
    }

    #[test]
    fn configured_functions_and_predicates_count() {
        assert!(implied("(tenant_id = app.current_tenant())"));
        assert!(implied("basejump.has_role_on_account(tenant_id)"));
        assert!(implied("has_role_on_account(tenant_id)"));
        assert!(!implied("basejump.has_role_on_account(owner_id)"));
    }

    #[test]
    fn a_conjunction_with_the_filter_implies_it() {
        assert!(implied(
            "((tenant_id = current_setting('app.tenant_id')::bigint) AND (deleted_at IS NULL))"
        ));
    }

    #[test]
    fn an_or_branch_without_the_filter_does_not() {
        assert!(!implied(
            "((tenant_id = (current_setting('app.tenant_id'::text))::bigint) OR (current_setting('app.support_mode'::text, true) = 'on'::text))"
        ));
        assert!(!implied(
            "((tenant_id = current_setting('app.tenant_id')::bigint) OR true)"
        ));
        assert!(implied(
            "((tenant_id = current_setting('app.tenant_id')::bigint) OR (tenant_id = app.current_tenant()))"
        ));
    }

    #[test]
    fn everything_else_does_not() {
        assert!(!implied("true"));
        assert!(!implied(
            "(tenant_id = (current_setting('app.user_id'::text))::bigint)"
        ));
        // A fallback to a literal tenant fails open when the setting is unset.
        assert!(!implied(
            "(tenant_id = (COALESCE(current_setting('app.tenant_id'::text, true), '1'::text))::bigint)"
        ));
        assert!(!implied("(tenant_id IS NOT NULL)"));
    }

    #[test]
    fn the_leak_names_the_branch() {
        let filter = TenantFilter::new("tenant_id", Some("app.tenant_id"), &[], &[]);
        assert_eq!(
            filter.leak_in(
                "((tenant_id = current_setting('app.tenant_id')::bigint) OR (email IS NOT NULL))"
            ),
            "email IS NOT NULL"
        );
    }
}
