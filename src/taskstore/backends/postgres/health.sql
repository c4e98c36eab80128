-- What `taskstore doctor` reads from PostgreSQL's catalogs and statistics views (see _health.py). Read only,
-- and cheap: nothing here scans a table. {schema} is the store's schema; the rest are bound parameters.
-- Bloat is a catalog estimate (pgstattuple is an extension that may not be installed, and it reads every
-- page): the rows' average width from the planner's statistics (pg_stats, filled by ANALYZE) times the row
-- count, plus the per-row overhead, over the fill factor, against the size on disk.

-- Every table of the store's schema: sizes, live and dead tuples, the last (auto)vacuum and analyze, and the
-- number of dead tuples at which autovacuum vacuums it (its own reloptions win over the server's settings).
-- name: health_tables
SELECT c.relname,
       pg_table_size(c.oid) AS table_bytes,
       pg_relation_size(c.oid) AS heap_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       s.n_live_tup,
       s.n_dead_tup,
       extract(epoch FROM now() - greatest(s.last_autovacuum, s.last_vacuum))::float8 AS since_vacuum,
       extract(epoch FROM now() - greatest(s.last_autoanalyze, s.last_analyze))::float8 AS since_analyze,
       coalesce(opt.threshold, current_setting('autovacuum_vacuum_threshold')::float8)
         + coalesce(opt.scale, current_setting('autovacuum_vacuum_scale_factor')::float8)
           * greatest(c.reltuples, 0)::float8 AS vacuum_trigger,
       coalesce(opt.enabled, true) AND current_setting('autovacuum')::bool AS autovacuum_on,
       -- 24: the tuple header, aligned; 4: its line pointer
       (greatest(c.reltuples, 0) * (24 + 4 + width.bytes)
         / (coalesce(opt.fillfactor, 100) / 100.0))::float8 AS expected_heap_bytes
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
  JOIN pg_stat_user_tables AS s ON s.relid = c.oid
  CROSS JOIN LATERAL (
        SELECT max(split_part(o, '=', 2)::float8) FILTER (WHERE split_part(o, '=', 1) = 'autovacuum_vacuum_threshold')
                 AS threshold,
               max(split_part(o, '=', 2)::float8) FILTER (WHERE split_part(o, '=', 1) = 'autovacuum_vacuum_scale_factor')
                 AS scale,
               max(split_part(o, '=', 2)::float8) FILTER (WHERE split_part(o, '=', 1) = 'fillfactor') AS fillfactor,
               bool_and(split_part(o, '=', 2)::bool) FILTER (WHERE split_part(o, '=', 1) = 'autovacuum_enabled')
                 AS enabled
          FROM unnest(coalesce(c.reloptions, ARRAY[]::text[])) AS o) AS opt
  CROSS JOIN LATERAL (
        SELECT sum(st.avg_width)::float8 AS bytes
          FROM pg_stats AS st
         WHERE st.schemaname = n.nspname AND st.tablename = c.relname AND NOT st.inherited) AS width
 WHERE n.nspname = %(schema)s AND c.relkind = 'r'
 ORDER BY c.relname

-- Every B-tree index of the store's tables, with the size it would take unbloated: its entries (8 bytes of
-- header, the key columns' average width, a 4-byte line pointer) over the leaf pages' 90% fill. An index on
-- an expression has no column statistics: no estimate (NULL).
-- name: health_indexes
SELECT t.relname AS table_name,
       i.relname AS index_name,
       pg_relation_size(i.oid) AS bytes,
       CASE WHEN am.amname <> 'btree' OR 0 = ANY (x.indkey::int2[]) THEN NULL
            ELSE (greatest(i.reltuples, 0) * (8 + 4 + (
                    SELECT sum(st.avg_width)
                      FROM pg_attribute AS a
                      JOIN pg_stats AS st
                        ON st.schemaname = n.nspname AND st.tablename = t.relname AND st.attname = a.attname
                           AND NOT st.inherited
                     WHERE a.attrelid = t.oid AND a.attnum = ANY (x.indkey::int2[]))) / 0.9)::float8
       END AS expected_bytes
  FROM pg_index AS x
  JOIN pg_class AS i ON i.oid = x.indexrelid
  JOIN pg_class AS t ON t.oid = x.indrelid
  JOIN pg_namespace AS n ON n.oid = t.relnamespace
  JOIN pg_am AS am ON am.oid = i.relam
 WHERE n.nspname = %(schema)s AND t.relkind = 'r'
 ORDER BY t.relname, i.relname

-- What holds back this database's xmin horizon (no vacuum removes a dead tuple newer than it): other
-- sessions' open transactions and snapshots, prepared transactions, replication slots. Oldest first.
-- name: health_horizon
SELECT kind, who, seconds, xids, active FROM (
    SELECT 'session' AS kind,
           'pid ' || pid || ' (' || coalesce(nullif(application_name, ''), 'no application_name') || ', user '
             || usename || ', ' || coalesce(state, 'no state') || ')' AS who,
           extract(epoch FROM now() - xact_start)::float8 AS seconds,
           greatest(age(backend_xid), age(backend_xmin)) AS xids,
           true AS active
      FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid()
       AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
    UNION ALL
    SELECT 'prepared', 'prepared transaction ' || gid,
           extract(epoch FROM now() - prepared)::float8, age(transaction), true
      FROM pg_prepared_xacts
     WHERE database = current_database()
    UNION ALL
    SELECT 'slot', 'replication slot ' || slot_name, NULL, age(xmin), active
      FROM pg_replication_slots
     WHERE xmin IS NOT NULL
) AS holders
 ORDER BY seconds DESC NULLS LAST, xids DESC NULLS LAST
 LIMIT 20

-- name: health_server
SELECT current_setting('server_version'),
       current_setting('server_version_num')::int,
       pg_notification_queue_usage()::float8,
       current_setting('autovacuum')::bool

-- name: health_migration
SELECT max(version) FROM {schema}.schema_migrations

-- A probe of LISTEN: the listener waits for this payload on its own channel (see PostgresDriver._listen).
-- name: notify_probe
SELECT pg_notify(%(channel)s, %(payload)s)
