-- Notes, each of one account.
CREATE TABLE notes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES basejump.accounts (id),
    author_id uuid NOT NULL REFERENCES auth.users (id),
    body text NOT NULL
);
CREATE INDEX notes_account_id_idx ON notes (account_id);
GRANT USAGE ON SCHEMA public TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO authenticated;

ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY notes_of_my_accounts ON notes
    USING (basejump.has_role_on_account(account_id))
    WITH CHECK (basejump.has_role_on_account(account_id));
