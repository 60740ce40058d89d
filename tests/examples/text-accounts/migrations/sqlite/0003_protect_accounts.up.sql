-- SQLite has no row-level security: the schema guards the account column instead, so
-- that no row ever moves to another account.
CREATE TRIGGER vehicles_account_slug_immutable
BEFORE UPDATE OF account_slug ON vehicles
WHEN NEW.account_slug <> OLD.account_slug
BEGIN
    SELECT RAISE(ABORT, 'account_slug is immutable');
END;

CREATE TRIGGER repairs_account_slug_immutable
BEFORE UPDATE OF account_slug ON repairs
WHEN NEW.account_slug <> OLD.account_slug
BEGIN
    SELECT RAISE(ABORT, 'account_slug is immutable');
END;

CREATE TRIGGER parts_account_slug_immutable
BEFORE UPDATE OF account_slug ON parts
WHEN NEW.account_slug <> OLD.account_slug
BEGIN
    SELECT RAISE(ABORT, 'account_slug is immutable');
END;
