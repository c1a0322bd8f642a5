-- The audit log (message_request) becomes partitioned by day of started_at
-- (UTC), so retention (settings.audit_retention_days, default 90) drops whole
-- days instead of deleting rows, and each day's indexes stay small. The usage
-- rollup is separate and outlives the rows.
--
-- A partitioned table cannot have a unique index without the partition key,
-- so idempotent ingestion (one row per event_id) moves to audit_event_ids:
-- an event is stored only if its id is new there. Ids are kept two days past
-- their receipt (a filter resends an unacknowledged batch within seconds).
--
-- Partitions: hubgate_ensure_audit_partitions(from, to) creates the missing
-- days (the background job keeps a week ahead); anything outside lands in
-- message_request_default and is moved out when its day is created.

CREATE TABLE audit_event_ids (
    event_id    text COLLATE "C" PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_event_ids_received_at ON audit_event_ids USING brin (received_at);
INSERT INTO audit_event_ids (event_id, received_at) SELECT event_id, received_at FROM message_request;

CREATE TABLE message_request_p (LIKE message_request INCLUDING DEFAULTS) PARTITION BY RANGE (started_at);
CREATE TABLE message_request_default PARTITION OF message_request_p DEFAULT;

CREATE FUNCTION hubgate_ensure_audit_partitions(from_day date, to_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    day date := from_day;
    name text;
    created integer := 0;
BEGIN
    WHILE day <= to_day LOOP
        name := 'message_request_' || to_char(day, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE message_request INCLUDING DEFAULTS)', name);
            EXECUTE format(
                'WITH moved AS (DELETE FROM message_request_default WHERE started_at >= %L AND started_at < %L RETURNING *) '
                'INSERT INTO %I SELECT * FROM moved',
                day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC', name);
            EXECUTE format('ALTER TABLE message_request ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END;
$$;

-- The old table's rows go to the new one; its name, indexes and sequence
-- move over.
ALTER SEQUENCE message_request_id_seq OWNED BY NONE;
INSERT INTO message_request_p SELECT * FROM message_request;
DROP TABLE message_request;
ALTER TABLE message_request_p RENAME TO message_request;
ALTER SEQUENCE message_request_id_seq OWNED BY message_request.id;

DO $$
DECLARE
    days date[];
    day date;
BEGIN
    SELECT coalesce(array_agg(DISTINCT (started_at AT TIME ZONE 'UTC')::date), '{}') INTO days
    FROM message_request_default;
    FOREACH day IN ARRAY days LOOP
        PERFORM hubgate_ensure_audit_partitions(day, day);
    END LOOP;
    PERFORM hubgate_ensure_audit_partitions((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date + 7);
END;
$$;

CREATE INDEX message_request_started_at ON message_request (started_at DESC, id DESC);
CREATE INDEX message_request_user ON message_request (user_id, started_at DESC);
CREATE INDEX message_request_key ON message_request (key_id, started_at DESC);
CREATE INDEX message_request_provider ON message_request (provider_id, started_at DESC);
CREATE INDEX message_request_status ON message_request (status, started_at DESC);
CREATE INDEX message_request_blocked_by ON message_request (blocked_by, started_at DESC)
    WHERE blocked_by IS NOT NULL;
CREATE INDEX message_request_session ON message_request (session_id) WHERE session_id IS NOT NULL;

ALTER TABLE settings ADD COLUMN audit_retention_days integer NOT NULL DEFAULT 90
    CHECK (audit_retention_days BETWEEN 1 AND 3650);
