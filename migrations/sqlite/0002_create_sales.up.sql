-- Sales: orders with their line items, promotions and gift cards.

CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    number TEXT NOT NULL,
    store_id INTEGER NOT NULL,
    station_id INTEGER,
    customer_id INTEGER,
    cashier_id INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    total_cents INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT orders_number_key UNIQUE (number),
    CONSTRAINT orders_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (id),
    CONSTRAINT orders_station_id_fkey FOREIGN KEY (station_id) REFERENCES stations (id),
    CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT orders_cashier_id_fkey FOREIGN KEY (cashier_id) REFERENCES users (id),
    CONSTRAINT orders_status_check CHECK (status IN ('open', 'paid', 'void', 'refunded')),
    CONSTRAINT orders_total_cents_check CHECK (total_cents >= 0)
);

CREATE TABLE order_items (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    CONSTRAINT order_items_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
    CONSTRAINT order_items_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id),
    CONSTRAINT order_items_quantity_check CHECK (quantity > 0),
    CONSTRAINT order_items_unit_price_cents_check CHECK (unit_price_cents >= 0)
);

CREATE TABLE promotions (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,
    description TEXT NOT NULL,
    percent_off INTEGER NOT NULL,
    starts_on TEXT NOT NULL,
    ends_on TEXT,
    CONSTRAINT promotions_code_key UNIQUE (code),
    CONSTRAINT promotions_percent_off_check CHECK (percent_off BETWEEN 1 AND 100)
);

CREATE TABLE gift_cards (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,
    customer_id INTEGER,
    balance_cents INTEGER NOT NULL DEFAULT 0,
    issued_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT gift_cards_code_key UNIQUE (code),
    CONSTRAINT gift_cards_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT gift_cards_balance_cents_check CHECK (balance_cents >= 0)
);
