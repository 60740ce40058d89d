-- Plans arrive (a global table that did not exist before), and the legacy rates go.
CREATE TABLE plans (
    code text PRIMARY KEY,
    monthly_cents bigint NOT NULL
);
INSERT INTO plans (code, monthly_cents) VALUES ('free', 0), ('pro', 2900);
GRANT SELECT ON plans TO billing_app;
ALTER TABLE tenants ADD COLUMN plan_code text NOT NULL DEFAULT 'free' REFERENCES plans (code);
DROP TABLE legacy_rates;
