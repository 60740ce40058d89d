-- Comments on documents, in the document's workspace.
CREATE TABLE comments (
    workspace_id bigint NOT NULL REFERENCES workspaces (id),
    id bigint GENERATED ALWAYS AS IDENTITY,
    document_id bigint NOT NULL,
    author_id bigint NOT NULL REFERENCES users (id),
    body text NOT NULL,
    PRIMARY KEY (workspace_id, id),
    FOREIGN KEY (workspace_id, document_id) REFERENCES documents (workspace_id, id)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON comments TO docs_app;
ALTER TABLE comments ENABLE ROW LEVEL SECURITY;
ALTER TABLE comments FORCE ROW LEVEL SECURITY;
CREATE POLICY comments_in_workspace ON comments
    USING (workspace_id = app.current_workspace())
    WITH CHECK (workspace_id = app.current_workspace());
