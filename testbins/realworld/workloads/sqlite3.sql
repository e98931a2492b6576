-- SQLite workload for allocsite: schema, bulk inserts through recursive CTEs, indexes,
-- updates/deletes, joins, aggregates, window functions, JSON, FTS5 and a VACUUM.
-- Deterministic: no random(), no time functions, every result ordered.
PRAGMA cache_size = 2000;
PRAGMA synchronous = OFF;
CREATE TABLE customer(id INTEGER PRIMARY KEY, name TEXT, city TEXT, score REAL);
CREATE TABLE orders(id INTEGER PRIMARY KEY, cust INTEGER REFERENCES customer(id),
                    item TEXT, qty INTEGER, price REAL, note TEXT);
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000)
INSERT INTO customer
SELECT i, 'customer-' || printf('%06d', i), 'city' || (i * 7919 % 97), (i * 37 % 1000) / 10.0 FROM c;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 120000)
INSERT INTO orders
SELECT i, 1 + (i * 104729 % 20000), 'item-' || (i * 31 % 500), 1 + i % 9, (i * 13 % 10000) / 100.0,
       substr('lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod', 1 + i % 40, 10 + i % 30)
FROM c;
COMMIT;
CREATE INDEX orders_cust ON orders(cust);
CREATE INDEX orders_item ON orders(item, qty);
CREATE INDEX customer_city ON customer(city, score);
SELECT count(*), sum(qty), round(sum(qty * price), 2) FROM orders;
SELECT city, count(*) AS n, round(avg(score), 3) FROM customer GROUP BY city ORDER BY n DESC, city LIMIT 5;
SELECT c.name, count(o.id) AS n, round(sum(o.qty * o.price), 2) AS total
  FROM customer c JOIN orders o ON o.cust = c.id
  GROUP BY c.id ORDER BY total DESC, c.name LIMIT 5;
UPDATE orders SET note = upper(note) || '!' WHERE qty > 6;
DELETE FROM orders WHERE id % 5 = 0;
SELECT item, sum(qty), group_concat(DISTINCT qty) FROM orders WHERE item LIKE 'item-1%'
  GROUP BY item ORDER BY item LIMIT 5;
SELECT id, cust, sum(qty) OVER (PARTITION BY cust ORDER BY id ROWS 2 PRECEDING) AS w
  FROM orders WHERE cust < 4 ORDER BY cust, id LIMIT 10;
SELECT json_group_array(json_object('id', id, 'name', name)) FROM
  (SELECT id, name FROM customer WHERE id % 2000 = 0 ORDER BY id);
SELECT length(group_concat(note, ' ')) FROM (SELECT note FROM orders ORDER BY note, id);
CREATE VIRTUAL TABLE docs USING fts5(body);
INSERT INTO docs SELECT note || ' ' || item FROM orders WHERE id % 3 = 0;
SELECT count(*) FROM docs WHERE docs MATCH 'LOREM OR dolor';
SELECT rowid, highlight(docs, 0, '[', ']') FROM docs WHERE docs MATCH 'amet' ORDER BY rowid LIMIT 3;
CREATE TABLE summary AS SELECT cust, count(*) n, max(price) mx FROM orders GROUP BY cust;
SELECT count(*), sum(n), round(max(mx), 2) FROM summary;
DROP TABLE summary;
VACUUM;
PRAGMA integrity_check;
