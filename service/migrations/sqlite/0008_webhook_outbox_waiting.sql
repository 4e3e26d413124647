-- When the events still to deliver were made, indexed apart from the delivered
-- ones (kept 30 days), so that the backlog gauges count them and find the
-- oldest without reading the whole table. A claim needs no index of its own
-- here: SQLite reads the due ones from webhook_outbox_due, in the order a
-- claim takes them (PostgreSQL would not: see migrations/postgres/0008).
-- delivered_at, always NULL here, is in the index so that SQLite need not read
-- each event's row to check it.
CREATE INDEX IF NOT EXISTS webhook_outbox_waiting_since
    ON webhook_outbox (created_at, delivered_at) WHERE delivered_at IS NULL;
