-- Names are unique regardless of case and Unicode normalization form:
-- `PROBE-DUP` and `probe-dup`, or `é` composed and decomposed, are one name.
-- Each *_fold column holds the folded form (NFKC, then lowercase), under a
-- unique index, so two concurrent inserts cannot both win; the name itself
-- stays as the admin typed it. Model names are folded too: the filter looks
-- prices up case-insensitively.
--
-- The app computes the folded form (validate::fold) and writes it with every
-- name. Rows written before this migration are filled by the app right after
-- migrating (db::fill_folds), not here: Postgres' lower() depends on the
-- database's locale, and the two foldings must never disagree. A row whose
-- folded name collides with an older row's keeps NULL (and a warning is
-- logged on every migrate) until an admin renames one of them.

ALTER TABLE users ADD COLUMN name_fold text;
CREATE UNIQUE INDEX users_name_fold_live ON users (name_fold) WHERE deleted_at IS NULL;

ALTER TABLE providers ADD COLUMN name_fold text;
CREATE UNIQUE INDEX providers_name_fold_live ON providers (name_fold) WHERE deleted_at IS NULL;

ALTER TABLE request_filters ADD COLUMN name_fold text;
CREATE UNIQUE INDEX request_filters_name_fold ON request_filters (name_fold);

-- Deleted prices stay as tombstones (and are revived by a create), so the
-- index covers them too, like UNIQUE (model).
ALTER TABLE model_prices ADD COLUMN model_fold text;
CREATE UNIQUE INDEX model_prices_model_fold ON model_prices (model_fold);
