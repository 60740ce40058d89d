DROP INDEX tasks_tenant_id_project_id_idx;
CREATE INDEX tasks_project_id_idx ON tasks (project_id);
ALTER TABLE tasks DROP CONSTRAINT tasks_project_fkey;
ALTER TABLE tasks ADD CONSTRAINT tasks_project_id_fkey FOREIGN KEY (project_id) REFERENCES projects (id);
ALTER TABLE tasks DROP COLUMN tenant_id;
ALTER TABLE projects DROP CONSTRAINT projects_tenant_id_id_key;
ALTER TABLE projects DROP COLUMN tenant_id;
