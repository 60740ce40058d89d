-- Parts used by a repair, and the vehicles' make, which SQLite adds by rebuilding
-- `vehicles` (its ALTER TABLE cannot add a constrained column). The app runs its
-- migrations with foreign_keys off, as SQLite's documented rebuild requires: dropping
-- the old `vehicles` would otherwise cascade to the repairs that reference it.
CREATE TABLE new_vehicles (
    account_slug TEXT NOT NULL REFERENCES accounts (slug),
    id INTEGER NOT NULL,
    plate TEXT NOT NULL,
    make TEXT NOT NULL DEFAULT 'unknown' CHECK (length(make) > 0),
    PRIMARY KEY (account_slug, id),
    UNIQUE (account_slug, plate)
);
INSERT INTO new_vehicles (account_slug, id, plate) SELECT account_slug, id, plate FROM vehicles;
DROP TABLE vehicles;
ALTER TABLE new_vehicles RENAME TO vehicles;

CREATE TABLE parts (
    id INTEGER NOT NULL,
    account_slug TEXT NOT NULL REFERENCES accounts (slug),
    repair_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    cost_cents INTEGER NOT NULL CHECK (cost_cents >= 0),
    PRIMARY KEY (id, account_slug),
    FOREIGN KEY (repair_id, account_slug) REFERENCES repairs (id, account_slug)
);
CREATE INDEX parts_account_slug_repair_id_idx ON parts (account_slug, repair_id);
