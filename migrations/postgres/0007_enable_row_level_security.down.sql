DROP POLICY commissions_tenant_isolation ON commissions;
ALTER TABLE commissions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE commissions DISABLE ROW LEVEL SECURITY;

DROP POLICY layaways_tenant_isolation ON layaways;
ALTER TABLE layaways NO FORCE ROW LEVEL SECURITY;
ALTER TABLE layaways DISABLE ROW LEVEL SECURITY;

DROP POLICY work_orders_tenant_isolation ON work_orders;
ALTER TABLE work_orders NO FORCE ROW LEVEL SECURITY;
ALTER TABLE work_orders DISABLE ROW LEVEL SECURITY;

DROP POLICY gift_cards_tenant_isolation ON gift_cards;
ALTER TABLE gift_cards NO FORCE ROW LEVEL SECURITY;
ALTER TABLE gift_cards DISABLE ROW LEVEL SECURITY;

DROP POLICY promotions_tenant_isolation ON promotions;
ALTER TABLE promotions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE promotions DISABLE ROW LEVEL SECURITY;

DROP POLICY order_items_tenant_isolation ON order_items;
ALTER TABLE order_items NO FORCE ROW LEVEL SECURITY;
ALTER TABLE order_items DISABLE ROW LEVEL SECURITY;

DROP POLICY orders_tenant_isolation ON orders;
ALTER TABLE orders NO FORCE ROW LEVEL SECURITY;
ALTER TABLE orders DISABLE ROW LEVEL SECURITY;

DROP POLICY products_tenant_isolation ON products;
ALTER TABLE products NO FORCE ROW LEVEL SECURITY;
ALTER TABLE products DISABLE ROW LEVEL SECURITY;

DROP POLICY customers_tenant_isolation ON customers;
ALTER TABLE customers NO FORCE ROW LEVEL SECURITY;
ALTER TABLE customers DISABLE ROW LEVEL SECURITY;

DROP POLICY users_tenant_isolation ON users;
ALTER TABLE users NO FORCE ROW LEVEL SECURITY;
ALTER TABLE users DISABLE ROW LEVEL SECURITY;

DROP POLICY stations_tenant_isolation ON stations;
ALTER TABLE stations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE stations DISABLE ROW LEVEL SECURITY;

DROP POLICY stores_tenant_isolation ON stores;
ALTER TABLE stores NO FORCE ROW LEVEL SECURITY;
ALTER TABLE stores DISABLE ROW LEVEL SECURITY;

REVOKE USAGE ON ALL SEQUENCES IN SCHEMA public FROM tenantgate_app;
REVOKE SELECT, INSERT, UPDATE, DELETE ON
    stores, stations, users, customers, products, orders, order_items, promotions, gift_cards, work_orders, layaways, commissions
    FROM tenantgate_app;
REVOKE SELECT ON currencies, tenants FROM tenantgate_app;
REVOKE USAGE ON SCHEMA public FROM tenantgate_app;
-- The role itself stays: other databases on this server may use it.
