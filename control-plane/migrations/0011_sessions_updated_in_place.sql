-- Event ingestion updates every session a batch mentions and every hourly
-- rollup row it adds to, once per batch. With an entry in every index for
-- each new row version, that was a large part of ingestion's cost. An
-- update can stay on its row's page and leave the indexes alone (a HOT
-- update) when no indexed column changes and the page has room for the new
-- version.
--
-- sessions: last_seen_at changes on every update, so it is in no index.
-- A key's sessions are found through the primary key (key_id, session_id),
-- a user's through sessions_user; the unfiltered listing of active
-- sessions and the retention sweep read the table, which holds a day of
-- sessions at most.
DROP INDEX sessions_key_last_seen;
DROP INDEX sessions_user_last_seen;
DROP INDEX sessions_last_seen;
CREATE INDEX sessions_user ON sessions (user_id);

-- Room on each page for the next versions of its rows. The rollup keeps
-- its rows once their hour is over, so it keeps less room.
ALTER TABLE sessions SET (fillfactor = 50);
ALTER TABLE usage_rollup SET (fillfactor = 70);
