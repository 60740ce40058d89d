CREATE TABLE legacy_rates (
    currency text PRIMARY KEY,
    rate numeric NOT NULL
);
GRANT SELECT ON legacy_rates TO billing_app;
ALTER TABLE tenants DROP COLUMN plan_code;
DROP TABLE plans;
