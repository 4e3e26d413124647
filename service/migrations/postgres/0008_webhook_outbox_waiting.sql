-- The events still to deliver, indexed apart from the delivered ones (kept 30
-- days, about 30,000,000 rows at a national carrier's volume): a claim reads
-- the due ones in the order it takes them (longest due first), and the backlog
-- gauges count them and find the oldest, without reading the whole table.
-- Measured on PostgreSQL 15 with 1,000,000 waiting and 2,000,000 delivered, as
-- the service's connections plan: a claim of 20 with all of them due read every
-- due event and sorted them on disk before these indexes (1.2 s), and reads at
-- most 63 pages (under 0.4 ms) with them; the backlog's count 0.29 s before,
-- 0.07 s after (BENCHMARKS.md, "A large outbox").
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
