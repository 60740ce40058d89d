DROP TABLE basejump.account_user;
DROP FUNCTION basejump.has_role_on_account(uuid);
DROP TABLE basejump.accounts;
DROP FUNCTION auth.uid();
DROP TABLE auth.users;
DROP SCHEMA basejump;
DROP SCHEMA auth;
