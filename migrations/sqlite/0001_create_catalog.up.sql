-- The shop's stores, tills, staff, customers and product catalogue, as it ran for one shop.

CREATE TABLE currencies (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    minor_units INTEGER NOT NULL DEFAULT 2,
    CONSTRAINT currencies_code_check CHECK (length(code) = 3)
);

-- Reference data shared by every shop (ISO 4217).
INSERT INTO currencies (code, name, minor_units) VALUES
    ('CAD', 'Canadian dollar', 2),
    ('EUR', 'Euro', 2),
    ('GBP', 'Pound sterling', 2),
    ('JPY', 'Yen', 0),
    ('USD', 'US dollar', 2);

CREATE TABLE stores (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT stores_code_key UNIQUE (code),
    CONSTRAINT stores_currency_code_fkey FOREIGN KEY (currency_code) REFERENCES currencies (code)
);

CREATE TABLE stations (
    id INTEGER PRIMARY KEY,
    store_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    CONSTRAINT stations_store_id_name_key UNIQUE (store_id, name),
    CONSTRAINT stations_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (id)
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    store_id INTEGER,
    username TEXT NOT NULL,
    email TEXT NOT NULL,
    full_name TEXT NOT NULL,
    role TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (id),
    CONSTRAINT users_role_check CHECK (role IN ('owner', 'manager', 'cashier', 'technician'))
);

CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    full_name TEXT NOT NULL,
    email TEXT,
    phone TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT customers_email_key UNIQUE (email)
);

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    CONSTRAINT products_sku_key UNIQUE (sku),
    CONSTRAINT products_price_cents_check CHECK (price_cents >= 0)
);
