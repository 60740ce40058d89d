-- Going multi-tenant, step 4 (SQLite): SQLite has no row-level security; the app's
-- tenant-scoped API filters every statement by tenant_id. What the database can still
-- guarantee is that a row never changes tenant once written.

CREATE TRIGGER stores_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON stores
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of stores cannot change');
END;

CREATE TRIGGER stations_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON stations
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of stations cannot change');
END;

CREATE TRIGGER users_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON users
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of users cannot change');
END;

CREATE TRIGGER customers_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON customers
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of customers cannot change');
END;

CREATE TRIGGER products_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON products
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of products cannot change');
END;

CREATE TRIGGER orders_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON orders
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of orders cannot change');
END;

CREATE TRIGGER order_items_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON order_items
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of order_items cannot change');
END;

CREATE TRIGGER promotions_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON promotions
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of promotions cannot change');
END;

CREATE TRIGGER gift_cards_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON gift_cards
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of gift_cards cannot change');
END;

CREATE TRIGGER work_orders_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON work_orders
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of work_orders cannot change');
END;

CREATE TRIGGER layaways_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON layaways
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of layaways cannot change');
END;

CREATE TRIGGER commissions_tenant_id_immutable
BEFORE UPDATE OF tenant_id ON commissions
WHEN NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'tenant_id of commissions cannot change');
END;

