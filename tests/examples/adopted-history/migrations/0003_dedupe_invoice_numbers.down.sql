ALTER TABLE invoices DROP CONSTRAINT invoices_tenant_id_number_key;
