-- The admin console's overview (GET /api/v1/overview) and request detail.
--
-- request_rollup: every stored request counted per hour (UTC) of its
-- started_at, original model, status and blocked_by, with its cost and
-- tokens. Guard refusals are counted too (usage_rollup leaves them out), so
-- the overview's request series, totals, models and status codes add up to
-- the audit log. Maintained at event ingestion (internal/events.rs), new
-- events only, in the batch's transaction: one grouped upsert per batch, so
-- a batch sent again is not counted twice. Like usage_rollup it outlives the
-- audit rows (retention drops only message_request partitions).
--
-- NULLs cannot be part of a primary key: no model is stored as '' and no
-- blocked_by as ''. A model is cut to 256 characters, as blocked_by is at
-- ingestion, so one odd event cannot make its batch unstorable. Text keys
-- compare byte for byte (see 0008).
CREATE TABLE request_rollup (
    bucket_start  timestamptz NOT NULL,
    model         text COLLATE "C" NOT NULL,
    status        integer NOT NULL,
    blocked_by    text COLLATE "C" NOT NULL,
    request_count bigint NOT NULL DEFAULT 0 CHECK (request_count >= 0),
    cost_usd      numeric NOT NULL DEFAULT 0,
    input_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket_start, model, status, blocked_by)
);
-- Rows of the current hour are updated by every batch: leave room for HOT
-- updates, as for usage_rollup (0011).
ALTER TABLE request_rollup SET (fillfactor = 70);

-- The existing audit rows, counted the way ingestion counts new ones.
INSERT INTO request_rollup (bucket_start, model, status, blocked_by, request_count, cost_usd, input_tokens,
    output_tokens)
SELECT date_trunc('hour', started_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       left(coalesce(original_model, ''), 256), status, coalesce(blocked_by, ''),
       count(*), sum(cost_usd), sum(input_tokens), sum(output_tokens)
FROM message_request
GROUP BY 1, 2, 3, 4;

-- The overview's top users read usage_rollup's user rows of a time range;
-- its primary key (entity_type, entity_id, bucket_start) would make that a
-- walk over every hour ever rolled up. bucket_start never changes once a row
-- is written, so updates stay HOT.
CREATE INDEX usage_rollup_user_hours ON usage_rollup (bucket_start) WHERE entity_type = 'user';

-- GET /api/v1/requests/{id}: message_request has no index on id since it
-- is partitioned (0009), and a btree would cost every stored event an index
-- entry. Ids grow with insertion order, so within a day's partition a BRIN
-- index narrows an id down to a few pages, for next to nothing at ingestion.
CREATE INDEX message_request_id ON message_request USING brin (id) WITH (autosummarize = on);

-- What the filter computed the cost from (hubgate_wire::CostBreakdown): USD
-- per token kind, the provider's multiplier applied, adding up to cost_usd.
-- NULL for requests billed without a price, not billed, and rows stored
-- before this column.
ALTER TABLE message_request ADD COLUMN cost_breakdown jsonb;
