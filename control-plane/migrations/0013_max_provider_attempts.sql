-- Failover (SPEC §6): how many providers one request may be tried on
-- before its failure is the client's; 1 turns failover off. At most 5: the
-- Envoy route's num_retries is 4 (envoy/hubgate.yaml.tmpl).
ALTER TABLE settings ADD COLUMN max_provider_attempts integer NOT NULL DEFAULT 3
    CHECK (max_provider_attempts BETWEEN 1 AND 5);
