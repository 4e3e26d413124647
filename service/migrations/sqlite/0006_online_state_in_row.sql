-- The online state of a delivery's current code, kept in its row (see the
-- PostgreSQL migration of the same number): the record that ended the code,
-- the attempts counted for it (a JSON list of [attempt, position]) and the
-- latest expiry given with them.
ALTER TABLE deliveries ADD COLUMN online_end TEXT;
ALTER TABLE deliveries ADD COLUMN online_attempts TEXT;
ALTER TABLE deliveries ADD COLUMN online_expires_at INTEGER NOT NULL DEFAULT 0;

-- What was kept for the current sequences moves into the rows.
UPDATE deliveries SET
    online_end = (SELECT value FROM remembered
                  WHERE key = 'online:' || deliveries.sequence || ':' || deliveries.delivery_id),
    online_attempts = (SELECT json_group_array(json_array(attempt, position)) FROM
                           (SELECT attempt, position FROM attempts
                            WHERE scope = 'attempts:' || deliveries.sequence || ':' || deliveries.delivery_id
                            ORDER BY position)
                       HAVING COUNT(*) > 0),
    online_expires_at = MAX(
        COALESCE((SELECT expires_at FROM remembered
                  WHERE key = 'online:' || deliveries.sequence || ':' || deliveries.delivery_id), 0),
        COALESCE((SELECT MAX(expires_at) FROM attempts
                  WHERE scope = 'attempts:' || deliveries.sequence || ':' || deliveries.delivery_id), 0));
DELETE FROM remembered WHERE key IN
    (SELECT 'online:' || sequence || ':' || delivery_id FROM deliveries);
DELETE FROM attempts WHERE scope IN
    (SELECT 'attempts:' || sequence || ':' || delivery_id FROM deliveries);
