-- no-transaction
-- Undo 0006 (SQLite): rebuild every table back to a nullable tenant_id with global
-- unique keys and simple references, as 0005 left them.

PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE new_stores (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    tenant_id INTEGER,
    CONSTRAINT stores_code_key UNIQUE (code),
    CONSTRAINT stores_currency_code_fkey FOREIGN KEY (currency_code) REFERENCES currencies (code)
);
INSERT INTO new_stores (id, code, name, currency_code, created_at, tenant_id)
    SELECT id, code, name, currency_code, created_at, tenant_id FROM stores;
DROP TABLE stores;
ALTER TABLE new_stores RENAME TO stores;

CREATE TABLE new_stations (
    id INTEGER PRIMARY KEY,
    store_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    tenant_id INTEGER,
    CONSTRAINT stations_store_id_name_key UNIQUE (store_id, name),
    CONSTRAINT stations_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (id)
);
INSERT INTO new_stations (id, store_id, name, tenant_id)
    SELECT id, store_id, name, tenant_id FROM stations;
DROP TABLE stations;
ALTER TABLE new_stations RENAME TO stations;

CREATE TABLE new_users (
    id INTEGER PRIMARY KEY,
    store_id INTEGER,
    username TEXT NOT NULL,
    email TEXT NOT NULL,
    full_name TEXT NOT NULL,
    role TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    tenant_id INTEGER,
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (id),
    CONSTRAINT users_role_check CHECK (role IN ('owner', 'manager', 'cashier', 'technician'))
);
INSERT INTO new_users (id, store_id, username, email, full_name, role, active, created_at, tenant_id)
    SELECT id, store_id, username, email, full_name, role, active, created_at, tenant_id FROM users;
DROP TABLE users;
ALTER TABLE new_users RENAME TO users;

CREATE TABLE new_customers (
    id INTEGER PRIMARY KEY,
    full_name TEXT NOT NULL,
    email TEXT,
    phone TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    tenant_id INTEGER,
    CONSTRAINT customers_email_key UNIQUE (email)
);
INSERT INTO new_customers (id, full_name, email, phone, created_at, tenant_id)
    SELECT id, full_name, email, phone, created_at, tenant_id FROM customers;
DROP TABLE customers;
ALTER TABLE new_customers RENAME TO customers;

CREATE TABLE new_products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    tenant_id INTEGER,
    CONSTRAINT products_sku_key UNIQUE (sku),
    CONSTRAINT products_price_cents_check CHECK (price_cents >= 0)
);
INSERT INTO new_products (id, sku, name, price_cents, active, tenant_id)
    SELECT id, sku, name, price_cents, active, tenant_id FROM products;
DROP TABLE products;
ALTER TABLE new_products RENAME TO products;

CREATE TABLE new_orders (
    id INTEGER PRIMARY KEY,
    number TEXT NOT NULL,
    store_id INTEGER NOT NULL,
    station_id INTEGER,
    customer_id INTEGER,
    cashier_id INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    total_cents INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    tenant_id INTEGER,
    CONSTRAINT orders_number_key UNIQUE (number),
    CONSTRAINT orders_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (id),
    CONSTRAINT orders_station_id_fkey FOREIGN KEY (station_id) REFERENCES stations (id),
    CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT orders_cashier_id_fkey FOREIGN KEY (cashier_id) REFERENCES users (id),
    CONSTRAINT orders_status_check CHECK (status IN ('open', 'paid', 'void', 'refunded')),
    CONSTRAINT orders_total_cents_check CHECK (total_cents >= 0)
);
INSERT INTO new_orders (id, number, store_id, station_id, customer_id, cashier_id, status, total_cents, created_at, tenant_id)
    SELECT id, number, store_id, station_id, customer_id, cashier_id, status, total_cents, created_at, tenant_id FROM orders;
DROP TABLE orders;
ALTER TABLE new_orders RENAME TO orders;

CREATE TABLE new_order_items (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    tenant_id INTEGER,
    CONSTRAINT order_items_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
    CONSTRAINT order_items_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id),
    CONSTRAINT order_items_quantity_check CHECK (quantity > 0),
    CONSTRAINT order_items_unit_price_cents_check CHECK (unit_price_cents >= 0)
);
INSERT INTO new_order_items (id, order_id, product_id, quantity, unit_price_cents, tenant_id)
    SELECT id, order_id, product_id, quantity, unit_price_cents, tenant_id FROM order_items;
DROP TABLE order_items;
ALTER TABLE new_order_items RENAME TO order_items;

CREATE TABLE new_promotions (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,
    description TEXT NOT NULL,
    percent_off INTEGER NOT NULL,
    starts_on TEXT NOT NULL,
    ends_on TEXT,
    tenant_id INTEGER,
    CONSTRAINT promotions_code_key UNIQUE (code),
    CONSTRAINT promotions_percent_off_check CHECK (percent_off BETWEEN 1 AND 100)
);
INSERT INTO new_promotions (id, code, description, percent_off, starts_on, ends_on, tenant_id)
    SELECT id, code, description, percent_off, starts_on, ends_on, tenant_id FROM promotions;
DROP TABLE promotions;
ALTER TABLE new_promotions RENAME TO promotions;

CREATE TABLE new_gift_cards (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,
    customer_id INTEGER,
    balance_cents INTEGER NOT NULL DEFAULT 0,
    issued_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    tenant_id INTEGER,
    CONSTRAINT gift_cards_code_key UNIQUE (code),
    CONSTRAINT gift_cards_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT gift_cards_balance_cents_check CHECK (balance_cents >= 0)
);
INSERT INTO new_gift_cards (id, code, customer_id, balance_cents, issued_at, tenant_id)
    SELECT id, code, customer_id, balance_cents, issued_at, tenant_id FROM gift_cards;
DROP TABLE gift_cards;
ALTER TABLE new_gift_cards RENAME TO gift_cards;

CREATE TABLE new_work_orders (
    id INTEGER PRIMARY KEY,
    store_id INTEGER NOT NULL,
    customer_id INTEGER NOT NULL,
    technician_id INTEGER,
    description TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'received',
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    tenant_id INTEGER,
    CONSTRAINT work_orders_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (id),
    CONSTRAINT work_orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT work_orders_technician_id_fkey FOREIGN KEY (technician_id) REFERENCES users (id),
    CONSTRAINT work_orders_status_check CHECK (status IN ('received', 'in_progress', 'ready', 'collected'))
);
INSERT INTO new_work_orders (id, store_id, customer_id, technician_id, description, status, created_at, tenant_id)
    SELECT id, store_id, customer_id, technician_id, description, status, created_at, tenant_id FROM work_orders;
DROP TABLE work_orders;
ALTER TABLE new_work_orders RENAME TO work_orders;

CREATE TABLE new_layaways (
    id INTEGER PRIMARY KEY,
    store_id INTEGER NOT NULL,
    customer_id INTEGER NOT NULL,
    order_id INTEGER NOT NULL,
    deposit_cents INTEGER NOT NULL,
    due_on TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    tenant_id INTEGER,
    CONSTRAINT layaways_order_id_key UNIQUE (order_id),
    CONSTRAINT layaways_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (id),
    CONSTRAINT layaways_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT layaways_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT layaways_deposit_cents_check CHECK (deposit_cents >= 0)
);
INSERT INTO new_layaways (id, store_id, customer_id, order_id, deposit_cents, due_on, created_at, tenant_id)
    SELECT id, store_id, customer_id, order_id, deposit_cents, due_on, created_at, tenant_id FROM layaways;
DROP TABLE layaways;
ALTER TABLE new_layaways RENAME TO layaways;

CREATE TABLE new_commissions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    order_id INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL,
    tenant_id INTEGER,
    CONSTRAINT commissions_user_id_order_id_key UNIQUE (user_id, order_id),
    CONSTRAINT commissions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT commissions_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT commissions_amount_cents_check CHECK (amount_cents >= 0)
);
INSERT INTO new_commissions (id, user_id, order_id, amount_cents, tenant_id)
    SELECT id, user_id, order_id, amount_cents, tenant_id FROM commissions;
DROP TABLE commissions;
ALTER TABLE new_commissions RENAME TO commissions;

COMMIT;
PRAGMA foreign_keys = ON;
