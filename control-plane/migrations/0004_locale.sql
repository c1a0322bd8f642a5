-- Language of the messages the filter sends to clients (SPEC 3): English by
-- default, or Simplified Chinese. Codes, types and field names never change.
ALTER TABLE settings ADD COLUMN locale text NOT NULL DEFAULT 'en'
    CHECK (locale IN ('en', 'zh-CN'));
