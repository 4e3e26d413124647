-- A fingerprint of each backend key an instance started with (HMAC-SHA256 of a
-- fixed label under the key; never the key): an instance whose key of the same
-- id differs refuses to start, instead of issuing tickets the others reject.
CREATE TABLE key_fingerprints (
    key_id      TEXT   PRIMARY KEY,
    fingerprint TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
