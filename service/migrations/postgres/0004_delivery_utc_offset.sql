-- The customer's UTC offset given when the code was issued, so a resend or a
-- reassignment writes the expiry in the same local time (it was UTC before).
ALTER TABLE deliveries ADD COLUMN utc_offset_minutes BIGINT NOT NULL DEFAULT 0;
