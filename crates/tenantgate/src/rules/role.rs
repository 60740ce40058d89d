//! What PostgreSQL says about the application role: row-level security does not apply to
//! superusers, BYPASSRLS roles, or (without FORCE) a table's owner, and a role reaches
//! all of those through the roles it is a member of (`SET ROLE`).

use std::collections::BTreeSet;

use crate::db::{Scope, TABLE_NAME_SQL, relation_in, schema_filter};

#[derive(Clone, Debug, Default)]
pub struct RoleFacts {
    pub exists: bool,
    pub superuser: bool,
    pub bypass_rls: bool,
    /// Tables owned by the role or by a role it is a member of.
    pub owned_tables: Vec<String>,
    /// Every role it is a member of, directly or through others (it can `SET ROLE` to them).
    pub member_of: Vec<String>,
    /// Those of them that are superusers or have BYPASSRLS.
    pub privileged_memberships: Vec<String>,
    /// Relations it can SELECT from, through any grant (its own, a role's it is a member
    /// of, PUBLIC's): tables, views, materialized views, foreign tables.
    pub readable: Vec<String>,
    /// Functions it can EXECUTE, by signature as the schema model names them.
    pub executable: Vec<String>,
}

impl RoleFacts {
    /// Reads the facts about `role`; a role that does not exist is reported as such.
    pub async fn read(
        conn: &mut sqlx::PgConnection,
        role: &str,
        scope: &Scope,
    ) -> anyhow::Result<RoleFacts> {
        // The relations and functions in scope are found first (MATERIALIZED: the planner
        // may not fold the privilege functions into the catalog scans), so that each
        // privilege is asked of those only, not of every relation of every schema: with a
        // thousand tenant schemas that made this query half a second per schema.
        let sql = format!(
            "WITH relations AS MATERIALIZED (
                 SELECT c.oid, c.relkind, c.relowner, {TABLE_NAME_SQL} AS name
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE {relations} AND c.relkind IN ('r', 'p', 'v', 'm', 'f')),
             functions AS MATERIALIZED (
                 SELECT p.oid, CASE WHEN n.nspname = current_schema() THEN '' ELSE n.nspname || '.' END
                               || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE {filter})
             SELECT r.rolsuper, r.rolbypassrls,
                    ARRAY(SELECT name FROM relations
                          WHERE relkind IN ('r', 'p') AND pg_has_role(r.oid, relowner, 'MEMBER') ORDER BY 1),
                    ARRAY(SELECT m.rolname::text FROM pg_roles m
                          WHERE m.oid <> r.oid AND pg_has_role(r.oid, m.oid, 'MEMBER') ORDER BY 1),
                    ARRAY(SELECT m.rolname::text FROM pg_roles m
                          WHERE m.oid <> r.oid AND pg_has_role(r.oid, m.oid, 'MEMBER')
                            AND (m.rolsuper OR m.rolbypassrls) ORDER BY 1),
                    ARRAY(SELECT name FROM relations
                          WHERE has_table_privilege(r.oid, oid, 'SELECT') ORDER BY 1),
                    ARRAY(SELECT f.name FROM functions f
                          WHERE has_function_privilege(r.oid, f.oid, 'EXECUTE')
                            AND (SELECT count(*) FROM pg_depend d
                                 WHERE d.classid = 'pg_proc'::regclass AND d.objid = f.oid AND d.deptype = 'e') = 0
                          ORDER BY 1)
             FROM pg_roles r WHERE r.rolname = $1",
            filter = schema_filter(scope),
            relations = relation_in(&schema_filter(scope)),
        );
        type Row = (
            bool,
            bool,
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<String>,
        );
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(role)
            .fetch_optional(conn)
            .await?;
        Ok(match row {
            Some((
                superuser,
                bypass_rls,
                owned_tables,
                member_of,
                privileged_memberships,
                readable,
                executable,
            )) => RoleFacts {
                exists: true,
                superuser,
                bypass_rls,
                owned_tables,
                member_of,
                privileged_memberships,
                readable,
                executable,
            },
            None => RoleFacts::default(),
        })
    }

    /// Why a connection as this role would bypass row-level security, if it would.
    pub fn bypasses(&self, tenant_owned: &BTreeSet<&str>) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.superuser {
            reasons.push("is a superuser".to_string());
        }
        if self.bypass_rls {
            reasons.push("has BYPASSRLS".to_string());
        }
        if !self.privileged_memberships.is_empty() {
            reasons.push(format!(
                "is a member of {} (superuser or BYPASSRLS), which it can SET ROLE to",
                self.privileged_memberships
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let owned: Vec<&str> = self
            .owned_tables
            .iter()
            .map(String::as_str)
            .filter(|table| {
                tenant_owned
                    .iter()
                    .any(|owned| crate::config::same_table(owned, table))
            })
            .collect();
        if !owned.is_empty() {
            reasons.push(format!(
                "owns tenant-owned tables, or is a member of their owner ({})",
                owned.join(", ")
            ));
        }
        reasons
    }

    /// Whether a policy for `roles` (as `pg_policies` lists them) applies to this role.
    pub fn is_subject_to(&self, role: &str, roles: &[String]) -> bool {
        roles
            .iter()
            .any(|r| r == "public" || r == role || self.member_of.contains(r))
    }
}
