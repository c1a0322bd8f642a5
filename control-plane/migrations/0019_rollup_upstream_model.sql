-- The requests list's `model` filter matches the model the client asked for
-- or the one sent upstream. A model that matches few rows (or none) would
-- make Postgres walk the whole log newest first looking for them; the
-- request rollup tells in which hours a model occurs, and the list then
-- reads only those (admin/requests.rs). For that it keys the upstream model
-- too (cut to 256 characters like the original one; '' for none).
ALTER TABLE request_rollup ADD COLUMN upstream_model text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE request_rollup DROP CONSTRAINT request_rollup_pkey;
ALTER TABLE request_rollup ADD PRIMARY KEY (bucket_start, model, upstream_model, status, blocked_by);

-- Count again the hours that still have audit rows, now with their upstream
-- model. Retention drops whole days, so that range starts on an hour; older
-- hours keep their rows ('' upstream): no audit row is left there to find.
DELETE FROM request_rollup
WHERE bucket_start >= (SELECT date_trunc('hour', min(started_at) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                       FROM message_request);
INSERT INTO request_rollup (bucket_start, model, upstream_model, status, blocked_by, request_count, cost_usd,
    input_tokens, output_tokens)
SELECT date_trunc('hour', started_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       left(coalesce(original_model, ''), 256), left(coalesce(upstream_model, ''), 256), status,
       coalesce(blocked_by, ''), count(*), sum(cost_usd), sum(input_tokens), sum(output_tokens)
FROM message_request
GROUP BY 1, 2, 3, 4, 5;
