-- An old bug numbered some invoices twice within a tenant: keep the first of each, then
-- make the numbers unique per tenant.
DELETE FROM invoices a
    USING invoices b
    WHERE a.tenant_id = b.tenant_id AND a.number = b.number AND a.id > b.id;
ALTER TABLE invoices ADD CONSTRAINT invoices_tenant_id_number_key UNIQUE (tenant_id, number);
