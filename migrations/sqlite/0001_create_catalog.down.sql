DROP TABLE products;
DROP TABLE customers;
DROP TABLE users;
DROP TABLE stations;
DROP TABLE stores;
DROP TABLE currencies;
