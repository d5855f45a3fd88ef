-- 0007: queue depths (pending, running, waiting, paused per queue) read a small
-- covering index of the runs still in flight instead of scanning every run.
CREATE INDEX kernos_runs_active ON kernos_runs (queue, status, tenant_id)
    WHERE status IN ('pending', 'running', 'waiting', 'paused');
