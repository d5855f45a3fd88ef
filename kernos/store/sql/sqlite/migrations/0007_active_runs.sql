-- 0007: queue depths (pending, running, waiting, paused per queue) read a small
-- covering index of the runs still in flight instead of scanning every run. A
-- run's forks are found by their forked_from column (the dashboard lists them).
CREATE INDEX kernos_runs_active ON kernos_runs (queue, status, tenant_id)
    WHERE status IN ('pending', 'running', 'waiting', 'paused');
CREATE INDEX kernos_runs_forked_from ON kernos_runs (forked_from) WHERE forked_from IS NOT NULL;
