-- How many times the delivery's state was changed, or taken hold of to be
-- changed: a guarded request (service/src/db/guarded.rs) keeps its writes
-- only if the version it read is still the delivery's.
ALTER TABLE deliveries ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
-- Room on each page for the new row versions those updates make, so they
-- stay on the page (HOT) and leave the indexes alone.
ALTER TABLE deliveries SET (fillfactor = 80);
