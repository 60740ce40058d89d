-- Going multi-tenant: organizations, keyed by a uuid in a column named tenant_id, and the
-- organization that owns everything written before.
CREATE TABLE organizations (
    tenant_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    CONSTRAINT organizations_name_key UNIQUE (name)
);
INSERT INTO organizations (tenant_id, name)
VALUES ('00000000-0000-4000-8000-000000000001', 'First customer');
