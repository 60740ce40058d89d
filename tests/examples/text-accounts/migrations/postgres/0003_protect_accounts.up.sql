-- Row-level security on every account-owned table, reading the account slug as text.
DO $$
BEGIN
    CREATE ROLE workshop_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO workshop_app;
GRANT SELECT ON accounts TO workshop_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON vehicles, repairs, parts TO workshop_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO workshop_app;

ALTER TABLE vehicles ENABLE ROW LEVEL SECURITY;
ALTER TABLE vehicles FORCE ROW LEVEL SECURITY;
CREATE POLICY vehicles_by_account ON vehicles
    USING (account_slug = current_setting('app.account', true))
    WITH CHECK (account_slug = current_setting('app.account', true));

ALTER TABLE repairs ENABLE ROW LEVEL SECURITY;
ALTER TABLE repairs FORCE ROW LEVEL SECURITY;
CREATE POLICY repairs_by_account ON repairs
    USING (account_slug = current_setting('app.account', true))
    WITH CHECK (account_slug = current_setting('app.account', true));

ALTER TABLE parts ENABLE ROW LEVEL SECURITY;
ALTER TABLE parts FORCE ROW LEVEL SECURITY;
CREATE POLICY parts_by_account ON parts
    USING (account_slug = current_setting('app.account', true))
    WITH CHECK (account_slug = current_setting('app.account', true));
