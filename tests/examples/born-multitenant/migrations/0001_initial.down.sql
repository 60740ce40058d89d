DROP TABLE document_versions;
DROP TABLE documents;
DROP TABLE users;
DROP TABLE workspaces;
DROP FUNCTION app.current_workspace();
DROP SCHEMA app;
REVOKE USAGE ON ALL SEQUENCES IN SCHEMA public FROM docs_app;
REVOKE USAGE ON SCHEMA public FROM docs_app;
