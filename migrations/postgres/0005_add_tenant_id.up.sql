-- Going multi-tenant, step 2: every tenant-owned table gets a nullable tenant_id,
-- backfilled to the default tenant. Nullable first so that the running single-tenant
-- app keeps inserting rows; 0006 makes it NOT NULL once the backfill is done.

ALTER TABLE stores ADD COLUMN tenant_id BIGINT;
ALTER TABLE stations ADD COLUMN tenant_id BIGINT;
ALTER TABLE users ADD COLUMN tenant_id BIGINT;
ALTER TABLE customers ADD COLUMN tenant_id BIGINT;
ALTER TABLE products ADD COLUMN tenant_id BIGINT;
ALTER TABLE orders ADD COLUMN tenant_id BIGINT;
ALTER TABLE order_items ADD COLUMN tenant_id BIGINT;
ALTER TABLE promotions ADD COLUMN tenant_id BIGINT;
ALTER TABLE gift_cards ADD COLUMN tenant_id BIGINT;
ALTER TABLE work_orders ADD COLUMN tenant_id BIGINT;
ALTER TABLE layaways ADD COLUMN tenant_id BIGINT;
ALTER TABLE commissions ADD COLUMN tenant_id BIGINT;

UPDATE stores SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
UPDATE stations SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
UPDATE users SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
UPDATE customers SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
UPDATE products SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
UPDATE orders SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
UPDATE order_items SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
UPDATE promotions SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
UPDATE gift_cards SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
UPDATE work_orders SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
UPDATE layaways SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
UPDATE commissions SET tenant_id = (SELECT id FROM tenants WHERE slug = 'default');
