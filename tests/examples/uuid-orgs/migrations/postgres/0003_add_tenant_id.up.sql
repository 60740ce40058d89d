-- Every row belongs to an organization; what existed belongs to the first one.
ALTER TABLE projects ADD COLUMN tenant_id uuid NOT NULL
    DEFAULT '00000000-0000-4000-8000-000000000001' REFERENCES organizations (tenant_id);
ALTER TABLE projects ALTER COLUMN tenant_id DROP DEFAULT;
ALTER TABLE projects ADD CONSTRAINT projects_tenant_id_id_key UNIQUE (tenant_id, id);

ALTER TABLE tasks ADD COLUMN tenant_id uuid NOT NULL
    DEFAULT '00000000-0000-4000-8000-000000000001' REFERENCES organizations (tenant_id);
ALTER TABLE tasks ALTER COLUMN tenant_id DROP DEFAULT;
-- A task references a project of its own organization.
ALTER TABLE tasks DROP CONSTRAINT tasks_project_id_fkey;
ALTER TABLE tasks ADD CONSTRAINT tasks_project_fkey
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id);
DROP INDEX tasks_project_id_idx;
CREATE INDEX tasks_tenant_id_project_id_idx ON tasks (tenant_id, project_id);
