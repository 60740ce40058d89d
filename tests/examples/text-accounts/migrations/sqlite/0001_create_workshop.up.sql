-- A workshop app, multi-tenant from the start: every account is named by a text slug
-- ('caps-automotive'), and tenant-owned tables key their rows by (account_slug, id).
CREATE TABLE accounts (
    slug TEXT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE vehicles (
    account_slug TEXT NOT NULL REFERENCES accounts (slug),
    id INTEGER NOT NULL,
    plate TEXT NOT NULL,
    PRIMARY KEY (account_slug, id),
    UNIQUE (account_slug, plate)
);

CREATE TABLE repairs (
    id INTEGER NOT NULL,
    account_slug TEXT NOT NULL REFERENCES accounts (slug),
    vehicle_id INTEGER NOT NULL,
    description TEXT NOT NULL,
    -- The key in the other order: the tenant column second.
    PRIMARY KEY (id, account_slug),
    FOREIGN KEY (account_slug, vehicle_id) REFERENCES vehicles (account_slug, id)
);
CREATE INDEX repairs_account_slug_vehicle_id_idx ON repairs (account_slug, vehicle_id);
