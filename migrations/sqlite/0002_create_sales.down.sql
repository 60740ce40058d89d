DROP TABLE gift_cards;
DROP TABLE promotions;
DROP TABLE order_items;
DROP TABLE orders;
