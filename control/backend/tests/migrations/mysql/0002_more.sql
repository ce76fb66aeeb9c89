CREATE TABLE more_items (id VARCHAR(32) NOT NULL PRIMARY KEY);
INSERT INTO items (id, name) VALUES ('seed', 'from a migration');
