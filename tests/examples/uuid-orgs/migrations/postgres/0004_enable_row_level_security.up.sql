-- Row-level security: a session sees the organization named by app.current_org.
DO $$
BEGIN
    CREATE ROLE orgs_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO orgs_app;
GRANT SELECT ON organizations TO orgs_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON projects, tasks TO orgs_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO orgs_app;

ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE projects FORCE ROW LEVEL SECURITY;
CREATE POLICY projects_by_org ON projects
    USING (tenant_id = current_setting('app.current_org', true)::uuid)
    WITH CHECK (tenant_id = current_setting('app.current_org', true)::uuid);

ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY tasks_by_org ON tasks
    USING (tenant_id = current_setting('app.current_org', true)::uuid)
    WITH CHECK (tenant_id = current_setting('app.current_org', true)::uuid);
