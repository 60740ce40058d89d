-- Nothing has read legacy_code since the 2023 import.
ALTER TABLE invoices DROP COLUMN legacy_code;
