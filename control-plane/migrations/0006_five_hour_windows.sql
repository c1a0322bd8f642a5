-- Fixed 5-hour quota windows (SPEC 4, limit_5h_mode = 'fixed') run for five
-- hours from the charge that opened them; the next charge after one ended
-- opens the next. Maintained at event ingestion (internal/events.rs), only
-- ever moved forward; NULL: no charge yet.
ALTER TABLE users ADD COLUMN five_hour_opened_at timestamptz;
ALTER TABLE keys ADD COLUMN five_hour_opened_at timestamptz;
