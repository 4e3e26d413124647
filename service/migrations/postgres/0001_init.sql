-- delivery-otp service, schema version 1 (PostgreSQL). The same tables as
-- migrations/sqlite/0001_init.sql, with 64-bit integers throughout.

CREATE TABLE api_tokens (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT   NOT NULL,
    token_hash  TEXT   NOT NULL UNIQUE,
    scopes      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE deliveries (
    delivery_id     TEXT   PRIMARY KEY,
    sequence        BIGINT NOT NULL,
    courier_id      TEXT   NOT NULL,
    settings        TEXT   NOT NULL,
    ticket          TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    contact         TEXT   NOT NULL,
    locale          TEXT   NOT NULL,
    request_digest  TEXT   NOT NULL,
    resends         BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX deliveries_by_courier ON deliveries (courier_id, status);

CREATE TABLE delivery_events (
    id           BIGSERIAL PRIMARY KEY,
    delivery_id  TEXT   NOT NULL REFERENCES deliveries (delivery_id),
    at           BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    detail       TEXT   NOT NULL
);
CREATE INDEX delivery_events_by_delivery ON delivery_events (delivery_id, id);

CREATE TABLE attempts (
    scope       TEXT   NOT NULL,
    attempt     TEXT   NOT NULL,
    position    BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, attempt)
);
CREATE TABLE remembered (
    key         TEXT   PRIMARY KEY,
    value       TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE devices (
    courier_id      TEXT   NOT NULL,
    device_id       TEXT   NOT NULL,
    key_id          TEXT   NOT NULL,
    provisioned_at  BIGINT NOT NULL,
    revoked_at      BIGINT,
    PRIMARY KEY (courier_id, device_id)
);

CREATE TABLE receipts (
    id           BIGSERIAL PRIMARY KEY,
    delivery_id  TEXT   NOT NULL,
    sequence     BIGINT NOT NULL,
    courier_id   TEXT   NOT NULL,
    device_id    TEXT   NOT NULL,
    body         TEXT   NOT NULL,
    body_sha256  TEXT   NOT NULL,
    decision     TEXT   NOT NULL,
    explanation  TEXT   NOT NULL,
    repeated     BIGINT NOT NULL,
    received_at  BIGINT NOT NULL
);
CREATE INDEX receipts_by_delivery ON receipts (delivery_id, id);
