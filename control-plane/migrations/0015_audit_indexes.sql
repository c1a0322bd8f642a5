-- Only the indexes the audit log's readers need: every index costs an entry
-- per stored event.
--
-- status: almost every request answers 200, and a filter on 200 finds its
-- page by walking message_request_started_at. The index holds the other
-- statuses only, which are the ones worth finding fast.
DROP INDEX message_request_status;
CREATE INDEX message_request_status ON message_request (status, started_at DESC) WHERE status <> 200;

-- provider: a deployment has a handful of providers, each serving a large
-- share of the requests, so a filter on one also finds its page by walking
-- message_request_started_at.
DROP INDEX message_request_provider;
