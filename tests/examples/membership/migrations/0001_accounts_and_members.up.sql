-- A Supabase-style app: people sign in (auth.users, auth.uid()), belong to accounts
-- (basejump.accounts) through memberships, and policies ask whether the signed-in
-- person is a member of the row's account.
CREATE SCHEMA auth;
CREATE SCHEMA basejump;

CREATE TABLE auth.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

-- The signed-in person, from the request's claims; NULL when nobody is signed in.
CREATE FUNCTION auth.uid() RETURNS uuid
    LANGUAGE sql STABLE
    SET search_path = pg_catalog
    AS $$ SELECT NULLIF(current_setting('request.jwt.claim.sub', true), '')::uuid $$;

CREATE TABLE basejump.accounts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL
);

CREATE TABLE basejump.account_user (
    user_id uuid NOT NULL REFERENCES auth.users (id),
    account_id uuid NOT NULL REFERENCES basejump.accounts (id),
    account_role text NOT NULL CHECK (account_role IN ('owner', 'member')),
    PRIMARY KEY (user_id, account_id)
);
CREATE INDEX account_user_account_id_idx ON basejump.account_user (account_id);

-- Whether the signed-in person is a member of `account_id`: it reads the memberships as
-- their owner, so that policies on the memberships themselves do not recurse.
CREATE FUNCTION basejump.has_role_on_account(account_id uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog
    AS $$
        SELECT EXISTS (
            SELECT 1 FROM basejump.account_user au
            WHERE au.user_id = auth.uid() AND au.account_id = has_role_on_account.account_id
        )
    $$;

DO $$
BEGIN
    CREATE ROLE authenticated NOLOGIN NOSUPERUSER NOBYPASSRLS;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
GRANT USAGE ON SCHEMA auth, basejump TO authenticated;
GRANT EXECUTE ON FUNCTION auth.uid(), basejump.has_role_on_account(uuid) TO authenticated;
GRANT SELECT ON auth.users, basejump.accounts TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON basejump.account_user TO authenticated;

ALTER TABLE basejump.account_user ENABLE ROW LEVEL SECURITY;
ALTER TABLE basejump.account_user FORCE ROW LEVEL SECURITY;
CREATE POLICY account_user_of_my_accounts ON basejump.account_user
    USING (basejump.has_role_on_account(account_id))
    WITH CHECK (basejump.has_role_on_account(account_id));
