-- The events still to deliver, indexed apart from the delivered ones (kept 30
-- days, about 30,000,000 rows at a national carrier's volume): a claim reads
-- the due ones in the order it takes them (longest due first), and the backlog
-- gauges count them and find the oldest, without reading the whole table.
-- Measured on PostgreSQL 15 with 1,000,000 waiting and 2,000,000 delivered: a
-- claim of 20 read the whole table (about 166,000 pages, 0.3-0.4 s) before
-- these indexes, 63 pages (0.2 ms) with them; the backlog's count 0.32 s
-- before, 0.07 s after.
--
-- On a large outbox, build them beforehand without blocking writes (this
-- migration then finds them and does nothing). A concurrent build that fails
-- or is interrupted leaves an invalid index, which this migration would take
-- for built and PostgreSQL never uses: if one fails, DROP INDEX it and build
-- it again.
--   CREATE INDEX CONCURRENTLY webhook_outbox_waiting ON webhook_outbox (next_attempt_at, event_id) WHERE delivered_at IS NULL;
--   CREATE INDEX CONCURRENTLY webhook_outbox_waiting_since ON webhook_outbox (created_at) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS webhook_outbox_waiting
    ON webhook_outbox (next_attempt_at, event_id) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS webhook_outbox_waiting_since
    ON webhook_outbox (created_at) WHERE delivered_at IS NULL;
