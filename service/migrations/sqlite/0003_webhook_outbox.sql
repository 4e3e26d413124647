-- Decisions waiting to be POSTed to the webhook URL: written in the same
-- transaction as the decision, sent at least once, retried with backoff.
CREATE TABLE webhook_outbox (
    event_id         TEXT   PRIMARY KEY,
    payload          TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    delivered_at     BIGINT,
    last_error       TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (delivered_at, next_attempt_at);
