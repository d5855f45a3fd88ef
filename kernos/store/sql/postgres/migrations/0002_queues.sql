-- 0002: queues with limits, concurrency keys, deduplication, run dependencies,
-- cron schedules, and queues in the worker registry.
ALTER TABLE kernos_runs ADD COLUMN concurrency_key TEXT;
ALTER TABLE kernos_runs ADD COLUMN dedup_id TEXT;
ALTER TABLE kernos_runs ADD COLUMN deps_pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kernos_runs ADD COLUMN on_dep_failure TEXT NOT NULL DEFAULT 'cancel';
DROP INDEX kernos_runs_pending;
CREATE INDEX kernos_runs_pending ON kernos_runs (queue, priority DESC, created_at)
    WHERE status = 'pending' AND deps_pending = 0;
CREATE INDEX kernos_runs_running_queue ON kernos_runs (queue, concurrency_key)
    WHERE status = 'running';
CREATE INDEX kernos_runs_started ON kernos_runs (queue, started_at);
CREATE UNIQUE INDEX kernos_runs_dedup ON kernos_runs (queue, dedup_id)
    WHERE dedup_id IS NOT NULL AND status NOT IN ('succeeded', 'failed', 'cancelled');

CREATE TABLE kernos_run_deps (
    run_id     TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (run_id, depends_on)
);
CREATE INDEX kernos_run_deps_upstream ON kernos_run_deps (depends_on);

CREATE TABLE kernos_queues (
    name               TEXT PRIMARY KEY,
    concurrency        INTEGER,
    worker_concurrency INTEGER,
    key_concurrency    INTEGER,
    rate_limit         INTEGER,
    rate_period        DOUBLE PRECISION,
    updated_at         DOUBLE PRECISION NOT NULL
);

CREATE TABLE kernos_schedules (
    name       TEXT PRIMARY KEY,
    cron       TEXT NOT NULL,
    workflow   TEXT NOT NULL,
    queue      TEXT NOT NULL,
    last_tick  DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
);

ALTER TABLE kernos_workers ADD COLUMN queues TEXT;
ALTER TABLE kernos_workers ADD COLUMN concurrency INTEGER;

-- Wake idle workers the moment a run becomes claimable: LISTEN kernos_runs
-- receives the queue name. A trigger, so that no code path can forget.
CREATE FUNCTION kernos_notify_runnable() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('kernos_runs', NEW.queue);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER kernos_runs_runnable
    AFTER INSERT OR UPDATE OF status, deps_pending ON kernos_runs
    FOR EACH ROW WHEN (NEW.status = 'pending' AND NEW.deps_pending = 0)
    EXECUTE FUNCTION kernos_notify_runnable();
