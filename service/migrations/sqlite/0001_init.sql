-- delivery-otp service, schema version 1 (SQLite).

-- API tokens of backend callers, stored as SHA-256 of the token.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    token_hash  TEXT    NOT NULL UNIQUE,
    scopes      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- One row per delivery: its current ticket, courier and status.
CREATE TABLE deliveries (
    delivery_id     TEXT    PRIMARY KEY,
    sequence        INTEGER NOT NULL,
    courier_id      TEXT    NOT NULL,
    settings        TEXT    NOT NULL,
    ticket          TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    contact         TEXT    NOT NULL,
    locale          TEXT    NOT NULL,
    request_digest  TEXT    NOT NULL,
    resends         INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_by_courier ON deliveries (courier_id, status);

-- What happened to a delivery, in order.
CREATE TABLE delivery_events (
    id           INTEGER PRIMARY KEY,
    delivery_id  TEXT    NOT NULL REFERENCES deliveries (delivery_id),
    at           INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    detail       TEXT    NOT NULL
);
CREATE INDEX delivery_events_by_delivery ON delivery_events (delivery_id, id);

-- The core's attempt store: online attempts by scope, and first values.
CREATE TABLE attempts (
    scope       TEXT    NOT NULL,
    attempt     TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, attempt)
);
CREATE TABLE remembered (
    key         TEXT    PRIMARY KEY,
    value       TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- Courier devices provisioned at login, and revoked.
CREATE TABLE devices (
    courier_id      TEXT    NOT NULL,
    device_id       TEXT    NOT NULL,
    key_id          TEXT    NOT NULL,
    provisioned_at  INTEGER NOT NULL,
    revoked_at      INTEGER,
    PRIMARY KEY (courier_id, device_id)
);

-- Every receipt received, byte for byte, with the decision it got.
CREATE TABLE receipts (
    id           INTEGER PRIMARY KEY,
    delivery_id  TEXT    NOT NULL,
    sequence     INTEGER NOT NULL,
    courier_id   TEXT    NOT NULL,
    device_id    TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    body_sha256  TEXT    NOT NULL,
    decision     TEXT    NOT NULL,
    explanation  TEXT    NOT NULL,
    repeated     INTEGER NOT NULL,
    received_at  INTEGER NOT NULL
);
CREATE INDEX receipts_by_delivery ON receipts (delivery_id, id);
