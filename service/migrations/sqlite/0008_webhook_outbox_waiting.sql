-- The events still to deliver, indexed apart from the delivered ones (kept 30
-- days): a claim reads the due ones in the order it takes them (longest due
-- first, then by id), and the backlog gauges count them and find the oldest,
-- without reading the whole table or sorting. The figures are in
-- migrations/postgres/0008. delivered_at, always NULL in these indexes, is in
-- them so that SQLite need not read each event's row to check it; the
-- statements name the index (SQLite's planner would otherwise take
-- webhook_outbox_due, and sort each second's events by id).
CREATE INDEX IF NOT EXISTS webhook_outbox_waiting
    ON webhook_outbox (next_attempt_at, event_id, delivered_at) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS webhook_outbox_waiting_since
    ON webhook_outbox (created_at, delivered_at) WHERE delivered_at IS NULL;
