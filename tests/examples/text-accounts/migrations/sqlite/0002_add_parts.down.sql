DROP TABLE parts;
CREATE TABLE old_vehicles (
    account_slug TEXT NOT NULL REFERENCES accounts (slug),
    id INTEGER NOT NULL,
    plate TEXT NOT NULL,
    PRIMARY KEY (account_slug, id),
    UNIQUE (account_slug, plate)
);
INSERT INTO old_vehicles (account_slug, id, plate) SELECT account_slug, id, plate FROM vehicles;
DROP TABLE vehicles;
ALTER TABLE old_vehicles RENAME TO vehicles;
