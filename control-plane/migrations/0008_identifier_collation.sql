-- Ids compared byte for byte: an index on text in a database collation
-- such as en_US.UTF-8 or C.UTF-8 compares through strcoll, which is most of
-- the cost of inserting an audit row (event_id's unique index is searched for
-- every event). Identifiers have no linguistic order to respect.
ALTER TABLE message_request
    ALTER COLUMN event_id TYPE text COLLATE "C",
    ALTER COLUMN session_id TYPE text COLLATE "C",
    ALTER COLUMN blocked_by TYPE text COLLATE "C";
ALTER TABLE sessions ALTER COLUMN session_id TYPE text COLLATE "C";
