-- Multi-tenant from the first migration: workspaces own documents; a document's versions
-- belong to it (they carry no workspace of their own); people are global.
CREATE SCHEMA app;

-- The workspace a session acts for, NULL when none is set (so every policy fails closed).
CREATE FUNCTION app.current_workspace() RETURNS bigint
    LANGUAGE sql STABLE
    SET search_path = pg_catalog
    AS $$ SELECT NULLIF(current_setting('app.workspace_id', true), '')::bigint $$;

CREATE TABLE workspaces (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE documents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id bigint NOT NULL REFERENCES workspaces (id),
    author_id bigint NOT NULL REFERENCES users (id),
    title text NOT NULL,
    CONSTRAINT documents_workspace_id_id_key UNIQUE (workspace_id, id)
);

CREATE TABLE document_versions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES documents (id),
    body text NOT NULL
);
CREATE INDEX document_versions_document_id_idx ON document_versions (document_id);

DO $$
BEGIN
    CREATE ROLE docs_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
GRANT USAGE ON SCHEMA public, app TO docs_app;
GRANT EXECUTE ON FUNCTION app.current_workspace() TO docs_app;
GRANT SELECT ON workspaces, users TO docs_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON documents, document_versions TO docs_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO docs_app;

ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE documents FORCE ROW LEVEL SECURITY;
CREATE POLICY documents_in_workspace ON documents
    USING (workspace_id = app.current_workspace())
    WITH CHECK (workspace_id = app.current_workspace());

-- A version is visible and writable through its document, which the policy above filters.
ALTER TABLE document_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE document_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY document_versions_through_document ON document_versions
    USING (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id))
    WITH CHECK (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id));
