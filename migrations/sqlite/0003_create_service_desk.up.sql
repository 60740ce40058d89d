-- The service desk: repair work orders, layaways and staff commissions.

CREATE TABLE work_orders (
    id INTEGER PRIMARY KEY,
    store_id INTEGER NOT NULL,
    customer_id INTEGER NOT NULL,
    technician_id INTEGER,
    description TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'received',
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT work_orders_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (id),
    CONSTRAINT work_orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT work_orders_technician_id_fkey FOREIGN KEY (technician_id) REFERENCES users (id),
    CONSTRAINT work_orders_status_check CHECK (status IN ('received', 'in_progress', 'ready', 'collected'))
);

CREATE TABLE layaways (
    id INTEGER PRIMARY KEY,
    store_id INTEGER NOT NULL,
    customer_id INTEGER NOT NULL,
    order_id INTEGER NOT NULL,
    deposit_cents INTEGER NOT NULL,
    due_on TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT layaways_order_id_key UNIQUE (order_id),
    CONSTRAINT layaways_store_id_fkey FOREIGN KEY (store_id) REFERENCES stores (id),
    CONSTRAINT layaways_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT layaways_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT layaways_deposit_cents_check CHECK (deposit_cents >= 0)
);

CREATE TABLE commissions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    order_id INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL,
    CONSTRAINT commissions_user_id_order_id_key UNIQUE (user_id, order_id),
    CONSTRAINT commissions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT commissions_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT commissions_amount_cents_check CHECK (amount_cents >= 0)
);
