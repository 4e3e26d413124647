-- Device request signatures seen within the replay window: each is accepted once.
CREATE TABLE request_signatures (
    signature   TEXT   PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX request_signatures_by_expiry ON request_signatures (expires_at);
