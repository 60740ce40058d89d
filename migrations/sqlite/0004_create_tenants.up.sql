-- Going multi-tenant, step 1: the tenants table, and the default tenant that owns
-- every row written while the database served a single shop.

CREATE TABLE tenants (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT tenants_slug_key UNIQUE (slug)
);

-- Data migration: the default tenant. Its id is fixed so that the backfill in 0005
-- and the harness configuration (default_tenant_id) can name it.
INSERT INTO tenants (id, slug, name) VALUES (1, 'default', 'Default tenant');
