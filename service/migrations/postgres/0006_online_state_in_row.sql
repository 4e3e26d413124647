-- The online state of a delivery's current code, kept in its row: the record
-- that ended the code (the attempt store's `online:<sequence>:<delivery>`),
-- the attempts counted for it (`attempts:<sequence>:<delivery>`, a JSON list
-- of [attempt, position]) and the latest expiry given with them. An online
-- check then sets two columns in the update of the delivery it makes anyway,
-- instead of inserting two rows. The records of earlier sequences stay in
-- `remembered` and `attempts`; a resend moves the current ones there before
-- it changes the sequence (service/src/db/online.rs). Instances of an
-- earlier build keep these records in the tables only: stop them all before
-- an instance of this build starts, or a check on an old instance and one on
-- a new instance would each count attempts the other does not see.
ALTER TABLE deliveries
    ADD COLUMN online_end TEXT,
    ADD COLUMN online_attempts TEXT,
    ADD COLUMN online_expires_at BIGINT NOT NULL DEFAULT 0;

-- What was kept for the current sequences moves into the rows.
UPDATE deliveries d SET online_end = r.value, online_expires_at = GREATEST(d.online_expires_at, r.expires_at)
    FROM remembered r WHERE r.key = 'online:' || d.sequence || ':' || d.delivery_id;
UPDATE deliveries d SET online_attempts = a.list, online_expires_at = GREATEST(d.online_expires_at, a.expires_at)
    FROM (SELECT scope, json_agg(json_build_array(attempt, position) ORDER BY position)::text AS list,
                 MAX(expires_at) AS expires_at
          FROM attempts GROUP BY scope) a
    WHERE a.scope = 'attempts:' || d.sequence || ':' || d.delivery_id;
DELETE FROM remembered r USING deliveries d WHERE r.key = 'online:' || d.sequence || ':' || d.delivery_id;
DELETE FROM attempts a USING deliveries d WHERE a.scope = 'attempts:' || d.sequence || ':' || d.delivery_id;
