DROP TABLE notes;
REVOKE USAGE ON SCHEMA public FROM authenticated;
