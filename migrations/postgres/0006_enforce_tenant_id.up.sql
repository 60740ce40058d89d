-- Going multi-tenant, step 3: tenant_id becomes NOT NULL and references tenants;
-- (tenant_id, id) is unique in every table, which is both the index that tenant-filtered
-- queries use and the target of composite foreign keys; unique keys become unique per
-- tenant; references between tenant-owned tables become composite, so that a row can
-- never point at another tenant's row.

-- NOT NULL and the reference to tenants.
ALTER TABLE stores ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE stores ADD CONSTRAINT stores_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE stations ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE stations ADD CONSTRAINT stations_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE users ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE customers ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE customers ADD CONSTRAINT customers_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE products ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE products ADD CONSTRAINT products_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE orders ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE order_items ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE order_items ADD CONSTRAINT order_items_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE promotions ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE promotions ADD CONSTRAINT promotions_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE gift_cards ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE gift_cards ADD CONSTRAINT gift_cards_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE work_orders ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE work_orders ADD CONSTRAINT work_orders_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE layaways ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE layaways ADD CONSTRAINT layaways_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE commissions ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE commissions ADD CONSTRAINT commissions_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);

-- (tenant_id, id): the tenant index, and the key composite foreign keys point at.
ALTER TABLE stores ADD CONSTRAINT stores_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE stations ADD CONSTRAINT stations_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE users ADD CONSTRAINT users_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE customers ADD CONSTRAINT customers_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE products ADD CONSTRAINT products_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE order_items ADD CONSTRAINT order_items_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE promotions ADD CONSTRAINT promotions_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE gift_cards ADD CONSTRAINT gift_cards_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE work_orders ADD CONSTRAINT work_orders_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE layaways ADD CONSTRAINT layaways_tenant_id_id_key UNIQUE (tenant_id, id);
ALTER TABLE commissions ADD CONSTRAINT commissions_tenant_id_id_key UNIQUE (tenant_id, id);

-- Unique keys are unique within a tenant: two shops may both have a user called 'sam'.
ALTER TABLE stores DROP CONSTRAINT stores_code_key;
ALTER TABLE stores ADD CONSTRAINT stores_tenant_id_code_key UNIQUE (tenant_id, code);
ALTER TABLE stations DROP CONSTRAINT stations_store_id_name_key;
ALTER TABLE stations ADD CONSTRAINT stations_tenant_id_store_id_name_key UNIQUE (tenant_id, store_id, name);
ALTER TABLE users DROP CONSTRAINT users_username_key;
ALTER TABLE users ADD CONSTRAINT users_tenant_id_username_key UNIQUE (tenant_id, username);
ALTER TABLE users DROP CONSTRAINT users_email_key;
ALTER TABLE users ADD CONSTRAINT users_tenant_id_email_key UNIQUE (tenant_id, email);
ALTER TABLE customers DROP CONSTRAINT customers_email_key;
ALTER TABLE customers ADD CONSTRAINT customers_tenant_id_email_key UNIQUE (tenant_id, email);
ALTER TABLE products DROP CONSTRAINT products_sku_key;
ALTER TABLE products ADD CONSTRAINT products_tenant_id_sku_key UNIQUE (tenant_id, sku);
ALTER TABLE orders DROP CONSTRAINT orders_number_key;
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_number_key UNIQUE (tenant_id, number);
ALTER TABLE promotions DROP CONSTRAINT promotions_code_key;
ALTER TABLE promotions ADD CONSTRAINT promotions_tenant_id_code_key UNIQUE (tenant_id, code);
ALTER TABLE gift_cards DROP CONSTRAINT gift_cards_code_key;
ALTER TABLE gift_cards ADD CONSTRAINT gift_cards_tenant_id_code_key UNIQUE (tenant_id, code);
ALTER TABLE layaways DROP CONSTRAINT layaways_order_id_key;
ALTER TABLE layaways ADD CONSTRAINT layaways_tenant_id_order_id_key UNIQUE (tenant_id, order_id);
ALTER TABLE commissions DROP CONSTRAINT commissions_user_id_order_id_key;
ALTER TABLE commissions ADD CONSTRAINT commissions_tenant_id_user_id_order_id_key UNIQUE (tenant_id, user_id, order_id);

-- References between tenant-owned tables carry the tenant.
ALTER TABLE stations DROP CONSTRAINT stations_store_id_fkey;
ALTER TABLE stations ADD CONSTRAINT stations_tenant_id_store_id_fkey FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id);
ALTER TABLE users DROP CONSTRAINT users_store_id_fkey;
ALTER TABLE users ADD CONSTRAINT users_tenant_id_store_id_fkey FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id);
ALTER TABLE orders DROP CONSTRAINT orders_store_id_fkey;
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_store_id_fkey FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id);
ALTER TABLE orders DROP CONSTRAINT orders_station_id_fkey;
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_station_id_fkey FOREIGN KEY (tenant_id, station_id) REFERENCES stations (tenant_id, id);
ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey;
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_customer_id_fkey FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id);
ALTER TABLE orders DROP CONSTRAINT orders_cashier_id_fkey;
ALTER TABLE orders ADD CONSTRAINT orders_tenant_id_cashier_id_fkey FOREIGN KEY (tenant_id, cashier_id) REFERENCES users (tenant_id, id);
ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey;
ALTER TABLE order_items ADD CONSTRAINT order_items_tenant_id_order_id_fkey FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE order_items DROP CONSTRAINT order_items_product_id_fkey;
ALTER TABLE order_items ADD CONSTRAINT order_items_tenant_id_product_id_fkey FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id);
ALTER TABLE gift_cards DROP CONSTRAINT gift_cards_customer_id_fkey;
ALTER TABLE gift_cards ADD CONSTRAINT gift_cards_tenant_id_customer_id_fkey FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id);
ALTER TABLE work_orders DROP CONSTRAINT work_orders_store_id_fkey;
ALTER TABLE work_orders ADD CONSTRAINT work_orders_tenant_id_store_id_fkey FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id);
ALTER TABLE work_orders DROP CONSTRAINT work_orders_customer_id_fkey;
ALTER TABLE work_orders ADD CONSTRAINT work_orders_tenant_id_customer_id_fkey FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id);
ALTER TABLE work_orders DROP CONSTRAINT work_orders_technician_id_fkey;
ALTER TABLE work_orders ADD CONSTRAINT work_orders_tenant_id_technician_id_fkey FOREIGN KEY (tenant_id, technician_id) REFERENCES users (tenant_id, id);
ALTER TABLE layaways DROP CONSTRAINT layaways_store_id_fkey;
ALTER TABLE layaways ADD CONSTRAINT layaways_tenant_id_store_id_fkey FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id);
ALTER TABLE layaways DROP CONSTRAINT layaways_customer_id_fkey;
ALTER TABLE layaways ADD CONSTRAINT layaways_tenant_id_customer_id_fkey FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id);
ALTER TABLE layaways DROP CONSTRAINT layaways_order_id_fkey;
ALTER TABLE layaways ADD CONSTRAINT layaways_tenant_id_order_id_fkey FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id);
ALTER TABLE commissions DROP CONSTRAINT commissions_user_id_fkey;
ALTER TABLE commissions ADD CONSTRAINT commissions_tenant_id_user_id_fkey FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id);
ALTER TABLE commissions DROP CONSTRAINT commissions_order_id_fkey;
ALTER TABLE commissions ADD CONSTRAINT commissions_tenant_id_order_id_fkey FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id);
