-- What `taskstore doctor` reads from an SQLite store (see _health.py). Read only.

-- name: health_pages
SELECT (SELECT page_size FROM pragma_page_size()),
       (SELECT page_count FROM pragma_page_count()),
       (SELECT freelist_count FROM pragma_freelist_count()),
       (SELECT journal_mode FROM pragma_journal_mode()),
       (SELECT user_version FROM pragma_user_version()),
       (SELECT auto_vacuum FROM pragma_auto_vacuum())

-- Bytes of every table and of its indexes, when SQLite was built with the dbstat table (most builds are).
-- It visits every page of the file: the metrics of `taskstore serve` read it at most once a minute.
-- name: health_table_bytes
SELECT coalesce(m.tbl_name, s.name) AS table_name, m.type = 'index' AS is_index, sum(s.pgsize) AS bytes
  FROM dbstat AS s LEFT JOIN sqlite_schema AS m ON m.name = s.name
 WHERE coalesce(m.tbl_name, s.name) NOT LIKE 'sqlite_%'
 GROUP BY 1, 2
 ORDER BY 1, 2
