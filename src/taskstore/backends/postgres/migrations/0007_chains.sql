-- taskstore PostgreSQL schema, migration 7: chains.
-- A chain is a group whose members are its links, inserted one at a time: the group keeps the templates
-- of every link after the first, and the transaction that ends a link done inserts the next one.

ALTER TABLE {schema}.groups
    ADD COLUMN chain_links text;   -- JSON array of links (id, template, args in base64); NULL: not a chain
