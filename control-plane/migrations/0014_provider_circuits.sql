-- Circuit breakers (SPEC §6). Each Envoy process (instance) keeps a circuit
-- per provider and reports them all when one changes and at least every
-- 30 s; one row per (provider, instance), the instance's last report.
-- `instance_ms` is the instance's clock when it made the report: a report
-- older than the stored one (two of its workers sent one each) is ignored.
-- `reported_at` is the control plane's clock: a row not reported for 90 s is
-- shown as stale, and rows not reported for a day are deleted.
CREATE TABLE provider_circuits (
    provider_id bigint NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    instance    text NOT NULL,
    state       text NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    failures    integer NOT NULL CHECK (failures >= 0),
    successes   integer NOT NULL CHECK (successes >= 0),
    open_until  timestamptz,
    instance_ms bigint NOT NULL,
    reported_at timestamptz NOT NULL,
    PRIMARY KEY (provider_id, instance)
);
CREATE INDEX provider_circuits_instance ON provider_circuits (instance);

-- A circuit reset (POST /api/v1/providers/{id}/circuit/reset) moves this
-- marker; the snapshot carries it (unix ms) and every instance clears the
-- provider's circuit recorded before it. NULL: never reset.
ALTER TABLE providers ADD COLUMN circuit_reset_at timestamptz;
