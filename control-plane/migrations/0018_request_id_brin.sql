-- message_request_id (0017) again, with 16 pages a range and without
-- autosummarize. With the default 128 pages a range the planner prices the
-- bitmap scan of GET /api/v1/requests/{id} about like walking each daily
-- partition's whole started_at index, and may pick the walk: ~13 ms a
-- lookup at 1M rows, growing with the log, against ~2 ms. autosummarize
-- would queue a vacuum work item every 16 pages at full ingestion; ranges
-- are summarized by (auto)vacuum instead, and until then a range is always
-- read. A new migration rather than an edit of 0017, which may already be
-- applied.
DROP INDEX message_request_id;
CREATE INDEX message_request_id ON message_request USING brin (id) WITH (pages_per_range = 16);
