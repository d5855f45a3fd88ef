-- Named queries for PostgreSQL: the same names and meaning as sqlite/queries.sql.
-- Parameters are bound by name (%(name)s); no SQL is ever built from user strings.
-- A parameter that may be NULL where its type cannot be inferred carries a cast,
-- since the driver sends None and str as "unknown".

-- name: insert_run
INSERT INTO kernos_runs (
    run_id, workflow, version, status, input, parent_id, parent_seq, forked_from, fork_seq,
    queue, priority, created_at, started_at, updated_at, owner, lease_epoch, lease_expires_at,
    wake_at, deadline, timeout, executions, concurrency_key, dedup_id, deps_pending,
    on_dep_failure, error, finished_at, tenant_id
) VALUES (
    %(run_id)s, %(workflow)s, %(version)s, %(status)s, %(input)s, %(parent_id)s,
    %(parent_seq)s, %(forked_from)s, %(fork_seq)s, %(queue)s, %(priority)s,
    %(now)s::double precision, %(started_at)s, %(now)s::double precision, %(owner)s,
    %(lease_epoch)s, %(lease_expires_at)s, %(wake_at)s, %(deadline)s, %(timeout)s,
    %(executions)s, %(concurrency_key)s, %(dedup_id)s, %(deps_pending)s, %(on_dep_failure)s,
    %(error)s, %(finished_at)s::double precision, %(tenant_id)s
)
ON CONFLICT DO NOTHING
RETURNING run_id;

-- name: get_run
SELECT * FROM kernos_runs WHERE run_id = %(run_id)s::text;

-- name: list_runs
-- The time bounds are always bound (the first page starts below +infinity) so
-- that they bound an index range instead of filtering a scan.
SELECT * FROM kernos_runs
WHERE (created_at, run_id) < (%(before_created)s::double precision, %(before_run_id)s::text)
  AND created_at >= %(created_after)s::double precision
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s::text)
  AND (%(parent_id)s::text IS NULL OR parent_id = %(parent_id)s::text)
  AND (%(forked_from)s::text IS NULL OR forked_from = %(forked_from)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(finished_before)s::double precision IS NULL
       OR (finished_at < %(finished_before)s::double precision
           AND status IN ('succeeded', 'failed', 'cancelled')))
  AND (%(text)s::text IS NULL OR run_id ILIKE %(text)s::text ESCAPE '\'
       OR workflow ILIKE %(text)s::text ESCAPE '\' OR error ILIKE %(text)s::text ESCAPE '\')
ORDER BY created_at DESC, run_id DESC
LIMIT %(limit)s;

-- name: list_tenant_runs
-- As list_runs, for one tenant: walks kernos_runs_tenant newest first.
SELECT * FROM kernos_runs
WHERE tenant_id = %(tenant)s::text
  AND (created_at, run_id) < (%(before_created)s::double precision, %(before_run_id)s::text)
  AND created_at >= %(created_after)s::double precision
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s::text)
  AND (%(parent_id)s::text IS NULL OR parent_id = %(parent_id)s::text)
  AND (%(forked_from)s::text IS NULL OR forked_from = %(forked_from)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(finished_before)s::double precision IS NULL
       OR (finished_at < %(finished_before)s::double precision
           AND status IN ('succeeded', 'failed', 'cancelled')))
  AND (%(text)s::text IS NULL OR run_id ILIKE %(text)s::text ESCAPE '\'
       OR workflow ILIKE %(text)s::text ESCAPE '\' OR error ILIKE %(text)s::text ESCAPE '\')
ORDER BY created_at DESC, run_id DESC
LIMIT %(limit)s;

-- name: count_matching_runs
SELECT count(*) AS n FROM kernos_runs
WHERE (created_at, run_id) < (%(before_created)s::double precision, %(before_run_id)s::text)
  AND created_at >= %(created_after)s::double precision
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s::text)
  AND (%(parent_id)s::text IS NULL OR parent_id = %(parent_id)s::text)
  AND (%(forked_from)s::text IS NULL OR forked_from = %(forked_from)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(finished_before)s::double precision IS NULL
       OR (finished_at < %(finished_before)s::double precision
           AND status IN ('succeeded', 'failed', 'cancelled')))
  AND (%(text)s::text IS NULL OR run_id ILIKE %(text)s::text ESCAPE '\'
       OR workflow ILIKE %(text)s::text ESCAPE '\' OR error ILIKE %(text)s::text ESCAPE '\');

-- name: count_tenant_matching_runs
SELECT count(*) AS n FROM kernos_runs
WHERE tenant_id = %(tenant)s::text
  AND (created_at, run_id) < (%(before_created)s::double precision, %(before_run_id)s::text)
  AND created_at >= %(created_after)s::double precision
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s::text)
  AND (%(parent_id)s::text IS NULL OR parent_id = %(parent_id)s::text)
  AND (%(forked_from)s::text IS NULL OR forked_from = %(forked_from)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(finished_before)s::double precision IS NULL
       OR (finished_at < %(finished_before)s::double precision
           AND status IN ('succeeded', 'failed', 'cancelled')))
  AND (%(text)s::text IS NULL OR run_id ILIKE %(text)s::text ESCAPE '\'
       OR workflow ILIKE %(text)s::text ESCAPE '\' OR error ILIKE %(text)s::text ESCAPE '\');

-- name: count_runs_by_status
SELECT status, count(*) AS n FROM kernos_runs
WHERE (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s::text)
GROUP BY status;

-- name: fence
-- Every journal write first proves this process still holds the run's lease.
UPDATE kernos_runs SET steps = GREATEST(steps, %(steps)s::integer), updated_at = %(now)s
WHERE run_id = %(run_id)s::text AND lease_epoch = %(epoch)s::integer AND status = 'running'
RETURNING pause_requested;

-- name: upsert_entry
-- A settled entry never changes: only a pending wait may be settled.
INSERT INTO kernos_journal (
    run_id, seq, kind, name, status, args_hash, output, error, attempts, detail,
    started_at, finished_at
) VALUES (
    %(run_id)s, %(seq)s, %(kind)s, %(name)s, %(status)s, %(args_hash)s, %(output)s, %(error)s,
    %(attempts)s, %(detail)s, %(started_at)s, %(finished_at)s
)
ON CONFLICT (run_id, seq) DO UPDATE SET
    status = excluded.status, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, detail = excluded.detail, finished_at = excluded.finished_at
WHERE kernos_journal.status = 'pending';

-- name: insert_event
INSERT INTO kernos_events (run_id, kind, at, data)
VALUES (%(run_id)s, %(kind)s, %(now)s, %(data)s);

-- name: finish_run
UPDATE kernos_runs SET
    status = %(status)s, output = %(output)s, error = %(error)s,
    finished_at = %(now)s::double precision, updated_at = %(now)s::double precision,
    owner = NULL, lease_expires_at = NULL, wake_at = NULL, wait_topics = NULL,
    pause_requested = 0
WHERE run_id = %(run_id)s::text AND lease_epoch = %(epoch)s::integer AND status = 'running'
RETURNING parent_id;

-- name: wake_run
UPDATE kernos_runs SET status = 'pending', wake_at = NULL, wait_topics = NULL,
    updated_at = %(now)s
WHERE run_id = %(run_id)s::text AND status = 'waiting'
RETURNING run_id;

-- name: wake_for_message
UPDATE kernos_runs SET status = 'pending', wake_at = NULL, wait_topics = NULL,
    updated_at = %(now)s
WHERE run_id = %(run_id)s::text AND status = 'waiting'
  AND wait_topics IS NOT NULL AND wait_topics::jsonb ? %(topic)s::text
RETURNING run_id;

-- name: suspend_run
UPDATE kernos_runs SET
    status = 'waiting', owner = NULL, lease_expires_at = NULL, wake_at = %(wake_at)s,
    wait_topics = %(topics)s, updated_at = %(now)s
WHERE run_id = %(run_id)s::text AND lease_epoch = %(epoch)s::integer AND status = 'running'
RETURNING run_id;

-- name: pause_run
UPDATE kernos_runs SET
    status = 'paused', owner = NULL, lease_expires_at = NULL, pause_requested = 0,
    updated_at = %(now)s
WHERE run_id = %(run_id)s::text AND lease_epoch = %(epoch)s::integer AND status = 'running'
RETURNING run_id;

-- name: request_pause
UPDATE kernos_runs SET pause_requested = 1, updated_at = %(now)s
WHERE run_id = %(run_id)s::text AND status = 'running'
RETURNING run_id;

-- name: pause_idle
UPDATE kernos_runs SET status = 'paused', updated_at = %(now)s
WHERE run_id = %(run_id)s::text AND status IN ('pending', 'waiting')
RETURNING run_id;

-- name: resume_run
UPDATE kernos_runs SET status = 'pending', pause_requested = 0, updated_at = %(now)s
WHERE run_id = %(run_id)s::text AND status = 'paused'
RETURNING run_id;

-- name: clear_pause_request
UPDATE kernos_runs SET pause_requested = 0, updated_at = %(now)s
WHERE run_id = %(run_id)s::text AND status = 'running' AND pause_requested = 1
RETURNING run_id;

-- name: cancel_tree
WITH RECURSIVE tree (run_id) AS (
    SELECT %(run_id)s::text
    UNION ALL
    SELECT r.run_id FROM kernos_runs r JOIN tree t ON r.parent_id = t.run_id
)
UPDATE kernos_runs SET
    status = 'cancelled', error = %(error)s, finished_at = %(now)s::double precision,
    updated_at = %(now)s::double precision, owner = NULL, lease_expires_at = NULL,
    wake_at = NULL, wait_topics = NULL, pause_requested = 0
WHERE run_id IN (SELECT run_id FROM tree)
  AND status NOT IN ('succeeded', 'failed', 'cancelled')
RETURNING run_id, parent_id;

-- name: claim_runs
-- SKIP LOCKED: concurrent claimers each take different runs instead of queueing.
UPDATE kernos_runs SET
    status = 'running', owner = %(owner)s, lease_epoch = lease_epoch + 1,
    lease_expires_at = %(expires)s, started_at = coalesce(started_at, %(now)s::double precision),
    updated_at = %(now)s::double precision, wake_at = NULL, wait_topics = NULL,
    executions = executions + 1
WHERE run_id IN (
    SELECT run_id FROM kernos_runs
    WHERE ((status = 'pending' AND (wake_at IS NULL OR wake_at <= %(now)s::double precision))
        OR (status = 'waiting' AND wake_at <= %(now)s::double precision)
        OR (status = 'running' AND lease_expires_at < %(now)s::double precision))
      AND workflow IN (SELECT jsonb_array_elements_text(%(workflows)s::jsonb))
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: next_wake_at
SELECT min(t) AS t FROM (
    SELECT min(wake_at) AS t FROM kernos_runs WHERE status = 'waiting'
    UNION ALL
    SELECT min(lease_expires_at) FROM kernos_runs WHERE status = 'running'
    UNION ALL
    SELECT min(coalesce(wake_at, 0)) FROM kernos_runs WHERE status = 'pending'
) AS due;

-- name: renew_leases
UPDATE kernos_runs SET lease_expires_at = %(expires)s
WHERE owner = %(owner)s::text AND status = 'running'
RETURNING run_id;

-- name: release_owner
-- A stopping worker hands back what it still holds; the next claim resumes it.
UPDATE kernos_runs SET status = 'pending', owner = NULL, lease_expires_at = NULL,
    updated_at = %(now)s
WHERE owner = %(owner)s::text AND status = 'running'
RETURNING run_id;

-- name: expire_owner
-- A dead worker's leases end now, so any worker may claim its runs at once.
UPDATE kernos_runs SET lease_expires_at = 0
WHERE owner = %(owner)s::text AND status = 'running'
RETURNING run_id;

-- name: upsert_worker
INSERT INTO kernos_workers (
    worker_id, host, pid, pid_start, started_at, heartbeat_at, state, queues, concurrency
)
VALUES (%(worker_id)s, %(host)s, %(pid)s, %(pid_start)s, %(now)s::double precision,
        %(now)s::double precision, %(state)s, %(queues)s, %(concurrency)s)
ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, state = excluded.state;

-- name: heartbeat_worker
-- A stale worker that heartbeats again (it was frozen or starved) is active again.
UPDATE kernos_workers SET heartbeat_at = %(now)s,
    state = CASE WHEN state = 'stale' THEN 'active' ELSE state END
WHERE worker_id = %(worker_id)s::text;

-- name: set_worker_state
UPDATE kernos_workers SET state = %(state)s, heartbeat_at = %(now)s
WHERE worker_id = %(worker_id)s::text;

-- name: list_workers
SELECT * FROM kernos_workers ORDER BY started_at;

-- name: live_workers_on_host
SELECT * FROM kernos_workers WHERE host = %(host)s::text AND state IN ('active', 'draining');

-- name: stale_workers
UPDATE kernos_workers SET state = 'stale'
WHERE state IN ('active', 'draining') AND heartbeat_at < %(cutoff)s::double precision
RETURNING worker_id;

-- name: load_journal
SELECT * FROM kernos_journal WHERE run_id = %(run_id)s::text ORDER BY seq;

-- name: get_entry
SELECT * FROM kernos_journal WHERE run_id = %(run_id)s::text AND seq = %(seq)s::integer;

-- name: copy_journal
INSERT INTO kernos_journal (
    run_id, seq, kind, name, status, args_hash, output, error, attempts, detail,
    started_at, finished_at
)
SELECT %(new_run_id)s::text, seq, kind, name, status, args_hash, output, error, attempts,
       detail, started_at, finished_at
FROM kernos_journal WHERE run_id = %(run_id)s::text AND seq < %(before_seq)s::integer
ORDER BY seq;

-- name: supersede_run
UPDATE kernos_runs SET superseded_by = %(new_run_id)s, updated_at = %(now)s
WHERE run_id = %(run_id)s::text;

-- name: list_checkpoints
SELECT * FROM kernos_journal WHERE run_id = %(run_id)s::text AND kind = 'checkpoint' ORDER BY seq;

-- name: list_events
SELECT * FROM kernos_events
WHERE (%(run_id)s::text IS NULL OR run_id = %(run_id)s::text)
  AND event_id > %(after)s::bigint
ORDER BY event_id
LIMIT %(limit)s;

-- name: insert_message
INSERT INTO kernos_messages (run_id, topic, payload, sent_at)
VALUES (%(run_id)s, %(topic)s, %(payload)s, %(now)s);

-- name: take_message
UPDATE kernos_messages SET consumed_seq = %(seq)s
WHERE message_id = (
    SELECT message_id FROM kernos_messages
    WHERE run_id = %(run_id)s::text AND topic = %(topic)s::text AND consumed_seq IS NULL
    ORDER BY message_id LIMIT 1
    FOR UPDATE
)
RETURNING payload;

-- name: count_unread
SELECT count(*) AS n FROM kernos_messages
WHERE run_id = %(run_id)s::text AND consumed_seq IS NULL
  AND topic IN (SELECT jsonb_array_elements_text(%(topics)s::jsonb));

-- name: count_finished
SELECT count(*) AS n FROM kernos_runs
WHERE run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))
  AND status IN ('succeeded', 'failed', 'cancelled');

-- name: put_blob
INSERT INTO kernos_blobs (blob_id, data, size, created_at)
VALUES (%(blob_id)s, %(data)s, %(size)s, %(now)s)
ON CONFLICT (blob_id) DO NOTHING;

-- name: get_blob
SELECT data FROM kernos_blobs WHERE blob_id = %(blob_id)s::text;

-- name: insert_patched_entry
INSERT INTO kernos_journal (
    run_id, seq, kind, name, status, args_hash, output, error, attempts, detail,
    started_at, finished_at
)
SELECT %(new_run_id)s::text, seq, kind, name, 'ok', args_hash, %(output)s::text, NULL,
       attempts, detail, started_at, %(now)s::double precision
FROM kernos_journal WHERE run_id = %(run_id)s::text AND seq = %(seq)s::integer;

-- name: create_version_table
CREATE TABLE IF NOT EXISTS kernos_schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
);

-- name: applied_versions
SELECT version FROM kernos_schema_version ORDER BY version;

-- name: record_version
INSERT INTO kernos_schema_version (version, name, applied_at)
VALUES (%(version)s, %(name)s, %(now)s);

-- name: lock_migrations
-- PostgreSQL only: concurrent migrators queue on this transaction-level lock.
SELECT pg_advisory_xact_lock(%(key)s::bigint);

-- name: find_dedup
SELECT run_id FROM kernos_runs
WHERE queue = %(queue)s AND dedup_id = %(dedup_id)s
  AND status NOT IN ('succeeded', 'failed', 'cancelled');

-- name: insert_dep
INSERT INTO kernos_run_deps (run_id, depends_on) VALUES (%(run_id)s, %(depends_on)s)
ON CONFLICT DO NOTHING;

-- name: upstream_of
SELECT depends_on FROM kernos_run_deps WHERE run_id = %(run_id)s;

-- name: statuses
SELECT run_id, status FROM kernos_runs WHERE run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb));

-- name: dependents
SELECT r.run_id, r.status, r.on_dep_failure FROM kernos_run_deps d
JOIN kernos_runs r ON r.run_id = d.run_id
WHERE d.depends_on = %(run_id)s;

-- name: release_dependency
UPDATE kernos_runs SET deps_pending = deps_pending - 1, updated_at = %(now)s::double precision
WHERE run_id = %(run_id)s AND status = 'pending' AND deps_pending > 0;

-- name: cancel_blocked
UPDATE kernos_runs SET
    status = 'cancelled', error = %(error)s, finished_at = %(now)s::double precision, updated_at = %(now)s::double precision
WHERE run_id = %(run_id)s AND status = 'pending'
RETURNING run_id;

-- name: claim_resumable
-- Runs that already began: expired leases (the holder died or stalled) and due
-- timers of queues without limits. Taking one over needs no new slot.
UPDATE kernos_runs SET
    status = 'running', owner = %(owner)s, lease_epoch = lease_epoch + 1,
    lease_expires_at = %(expires)s, started_at = coalesce(started_at, %(now)s::double precision), updated_at = %(now)s::double precision,
    wake_at = NULL, wait_topics = NULL, executions = executions + 1
WHERE run_id IN (
    SELECT run_id FROM kernos_runs
    WHERE ((status = 'running' AND lease_expires_at < %(now)s::double precision)
        OR (status = 'waiting' AND wake_at <= %(now)s::double precision
            AND queue NOT IN (SELECT jsonb_array_elements_text(%(limited)s::jsonb))))
      AND workflow IN (SELECT jsonb_array_elements_text(%(workflows)s::jsonb))
      AND (%(queues)s::text IS NULL OR queue IN (SELECT jsonb_array_elements_text(%(queues)s::jsonb)))
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: claim_unlimited
UPDATE kernos_runs SET
    status = 'running', owner = %(owner)s, lease_epoch = lease_epoch + 1,
    lease_expires_at = %(expires)s, started_at = coalesce(started_at, %(now)s::double precision), updated_at = %(now)s::double precision,
    wake_at = NULL, wait_topics = NULL, executions = executions + 1
WHERE run_id IN (
    SELECT run_id FROM kernos_runs
    WHERE status = 'pending' AND deps_pending = 0
      AND (wake_at IS NULL OR wake_at <= %(now)s::double precision)
      AND workflow IN (SELECT jsonb_array_elements_text(%(workflows)s::jsonb))
      AND (%(queues)s::text IS NULL OR queue IN (SELECT jsonb_array_elements_text(%(queues)s::jsonb)))
      AND queue NOT IN (SELECT jsonb_array_elements_text(%(limited)s::jsonb))
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: claim_candidates
SELECT run_id, concurrency_key, started_at FROM kernos_runs
WHERE queue = %(queue)s
  AND ((status = 'pending' AND deps_pending = 0 AND (wake_at IS NULL OR wake_at <= %(now)s::double precision))
    OR (status = 'waiting' AND wake_at <= %(now)s::double precision))
  AND workflow IN (SELECT jsonb_array_elements_text(%(workflows)s::jsonb))
ORDER BY priority DESC, created_at
LIMIT %(limit)s;

-- name: claim_chosen
-- The candidates were read unlocked: re-check that each is still claimable
-- (a cancel or pause may have committed since), or it would come back to life.
UPDATE kernos_runs SET
    status = 'running', owner = %(owner)s, lease_epoch = lease_epoch + 1,
    lease_expires_at = %(expires)s, started_at = coalesce(started_at, %(now)s::double precision), updated_at = %(now)s::double precision,
    wake_at = NULL, wait_topics = NULL, executions = executions + 1
WHERE run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))
  AND status IN ('pending', 'waiting')
RETURNING *;

-- name: running_in_queue
SELECT count(*) AS n FROM kernos_runs WHERE queue = %(queue)s AND status = 'running';

-- name: running_by_key
SELECT concurrency_key, count(*) AS n FROM kernos_runs
WHERE queue = %(queue)s AND status = 'running' AND concurrency_key IS NOT NULL
GROUP BY concurrency_key;

-- name: started_since
SELECT count(*) AS n FROM kernos_runs WHERE queue = %(queue)s AND started_at > %(since)s;

-- name: upsert_queue
INSERT INTO kernos_queues (
    name, concurrency, worker_concurrency, key_concurrency, rate_limit, rate_period, updated_at
) VALUES (
    %(name)s, %(concurrency)s, %(worker_concurrency)s, %(key_concurrency)s,
    %(rate_limit)s, %(rate_period)s, %(now)s::double precision
)
ON CONFLICT (name) DO UPDATE SET
    concurrency = excluded.concurrency, worker_concurrency = excluded.worker_concurrency,
    key_concurrency = excluded.key_concurrency, rate_limit = excluded.rate_limit,
    rate_period = excluded.rate_period, updated_at = excluded.updated_at;

-- name: list_queue_specs
SELECT * FROM kernos_queues ORDER BY name;

-- name: lock_queue
SELECT name FROM kernos_queues WHERE name = %(queue)s FOR UPDATE;

-- name: queue_depths
SELECT queue, status, count(*) AS n FROM kernos_runs
WHERE status IN ('pending', 'running', 'waiting', 'paused')
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s::text)
GROUP BY queue, status;

-- name: runs_in_flight
SELECT owner, count(*) AS n FROM kernos_runs WHERE status = 'running' AND owner IS NOT NULL
GROUP BY owner;

-- name: upsert_schedule
INSERT INTO kernos_schedules (name, cron, workflow, queue, last_tick, updated_at)
VALUES (%(name)s, %(cron)s, %(workflow)s, %(queue)s, %(last_tick)s, %(now)s::double precision)
ON CONFLICT (name) DO UPDATE SET
    cron = excluded.cron, workflow = excluded.workflow, queue = excluded.queue,
    updated_at = excluded.updated_at;

-- name: get_schedule
SELECT * FROM kernos_schedules WHERE name = %(name)s;

-- name: advance_schedule
-- Compare-and-set: of several schedulers, only the one that saw last_tick moves it.
UPDATE kernos_schedules SET last_tick = %(tick)s, updated_at = %(now)s::double precision
WHERE name = %(name)s AND (last_tick IS NULL OR last_tick < %(tick)s)
RETURNING name;

-- name: list_schedules
SELECT * FROM kernos_schedules ORDER BY name;

-- name: upsert_entry_fenced
-- As upsert_entry, but only while the writer holds the lease: lets a batch send
-- its fences and its entries together in one pipeline, without waiting for the
-- fences' answers.
INSERT INTO kernos_journal (
    run_id, seq, kind, name, status, args_hash, output, error, attempts, detail,
    started_at, finished_at
)
SELECT %(run_id)s::text, %(seq)s::integer, %(kind)s::text, %(name)s::text, %(status)s::text,
       %(args_hash)s::text, %(output)s::text, %(error)s::text, %(attempts)s::text,
       %(detail)s::text, %(started_at)s::double precision, %(finished_at)s::double precision
WHERE EXISTS (
    SELECT 1 FROM kernos_runs
    WHERE run_id = %(run_id)s::text AND lease_epoch = %(epoch)s::integer AND status = 'running'
)
ON CONFLICT (run_id, seq) DO UPDATE SET
    status = excluded.status, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, detail = excluded.detail, finished_at = excluded.finished_at
WHERE kernos_journal.status = 'pending';

-- name: insert_event_fenced
INSERT INTO kernos_events (run_id, kind, at, data)
SELECT %(run_id)s::text, %(kind)s::text, %(now)s::double precision, %(data)s::text
WHERE EXISTS (
    SELECT 1 FROM kernos_runs
    WHERE run_id = %(run_id)s::text AND lease_epoch = %(epoch)s::integer AND status = 'running'
);

-- name: stream_events
-- Polled many times a second with ``after`` the last id seen: a range of the
-- primary key, each event joined with its run for the tenant and workflow.
SELECT e.event_id, e.run_id, e.kind, e.at, e.data, r.tenant_id, r.workflow
FROM kernos_events e LEFT JOIN kernos_runs r ON r.run_id = e.run_id
WHERE e.event_id > %(after)s::bigint AND e.event_id <= %(until)s::bigint
  AND (%(run_id)s::text IS NULL OR e.run_id = %(run_id)s::text)
  AND (%(tenant)s::text IS NULL OR r.tenant_id = %(tenant)s::text)
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s::text)
  AND (%(kinds)s::text IS NULL
       OR e.kind IN (SELECT jsonb_array_elements_text(%(kinds)s::jsonb)))
ORDER BY e.event_id
LIMIT %(limit)s;

-- name: last_event_id
SELECT coalesce(max(event_id), 0) AS n FROM kernos_events;

-- name: usage_of_runs
-- Model calls, tokens and cost per run, from the llm.completed events each run
-- wrote itself (a fork's inherited entries are its original's, counted there).
SELECT run_id, count(*) AS calls,
       coalesce(sum((data::jsonb ->> 'input_tokens')::bigint), 0) AS input_tokens,
       coalesce(sum((data::jsonb ->> 'output_tokens')::bigint), 0) AS output_tokens,
       sum((data::jsonb ->> 'cost')::float8) AS cost
FROM kernos_events
WHERE run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))
  AND kind = 'llm.completed'
GROUP BY run_id;

-- name: runs_per_bucket
-- The tenant's runs created since ``since``, counted per time bucket and status.
SELECT floor(created_at / %(bucket)s::float8) * %(bucket)s::float8 AS bucket, status, count(*) AS n
FROM kernos_runs
WHERE tenant_id = %(tenant)s::text AND created_at >= %(since)s::float8
GROUP BY 1, status
ORDER BY 1;

-- name: run_durations
-- How long each finished run of the tenant created since ``since`` took.
SELECT floor(created_at / %(bucket)s::float8) * %(bucket)s::float8 AS bucket,
       finished_at - started_at AS duration
FROM kernos_runs
WHERE tenant_id = %(tenant)s::text AND created_at >= %(since)s::float8
  AND started_at IS NOT NULL AND finished_at IS NOT NULL
  AND status IN ('succeeded', 'failed', 'cancelled');

-- name: usage_per_bucket
-- Tokens and cost of model calls per time bucket, in runs created since ``since``.
SELECT floor(e.at / %(bucket)s::float8) * %(bucket)s::float8 AS bucket, count(*) AS calls,
       coalesce(sum((e.data::jsonb ->> 'input_tokens')::bigint), 0)
         + coalesce(sum((e.data::jsonb ->> 'output_tokens')::bigint), 0) AS tokens,
       sum((e.data::jsonb ->> 'cost')::float8) AS cost
FROM kernos_runs r JOIN kernos_events e ON e.run_id = r.run_id
WHERE r.tenant_id = %(tenant)s::text AND r.created_at >= %(since)s::float8 AND e.at >= %(since)s::float8
  AND e.kind = 'llm.completed'
GROUP BY 1
ORDER BY 1;

-- name: queue_throughput
-- The tenant's runs that finished since ``since``, per queue and time bucket.
SELECT queue, floor(finished_at / %(bucket)s::float8) * %(bucket)s::float8 AS bucket, count(*) AS n
FROM kernos_runs
WHERE tenant_id = %(tenant)s::text AND finished_at >= %(since)s::float8
  AND status IN ('succeeded', 'failed', 'cancelled')
GROUP BY queue, 2;

-- name: run_blob_candidates
-- Rows of a run that may hold blob references (the caller checks each value).
SELECT input AS a, output AS b, error AS c, NULL::text AS d FROM kernos_runs
WHERE run_id = %(run_id)s::text
UNION ALL
SELECT output, error, detail, attempts FROM kernos_journal
WHERE run_id = %(run_id)s::text
  AND (output LIKE %(prefix)s::text OR error LIKE %(prefix)s::text
       OR detail LIKE %(prefix)s::text OR attempts LIKE %(prefix)s::text);

-- name: blob_referenced
SELECT 1 AS found FROM kernos_journal
WHERE output = %(ref)s::text OR error = %(ref)s::text OR detail = %(ref)s::text
   OR attempts = %(ref)s::text
UNION ALL
SELECT 1 FROM kernos_runs
WHERE input = %(ref)s::text OR output = %(ref)s::text OR error = %(ref)s::text
LIMIT 1;

-- name: delete_blob
DELETE FROM kernos_blobs WHERE blob_id = %(blob_id)s::text;

-- name: delete_run_journal
DELETE FROM kernos_journal WHERE run_id = %(run_id)s::text;

-- name: delete_run_events
DELETE FROM kernos_events WHERE run_id = %(run_id)s::text;

-- name: delete_run_messages
DELETE FROM kernos_messages WHERE run_id = %(run_id)s::text;

-- name: delete_run_deps
DELETE FROM kernos_run_deps WHERE run_id = %(run_id)s::text OR depends_on = %(run_id)s::text;

-- name: delete_run
DELETE FROM kernos_runs WHERE run_id = %(run_id)s::text;

-- name: insert_tenant
INSERT INTO kernos_tenants (tenant_id, name, created_at, retention_days, retention_action)
VALUES (%(tenant_id)s::text, %(name)s::text, %(created_at)s::double precision,
        %(retention_days)s::integer, %(retention_action)s::text)
ON CONFLICT DO NOTHING
RETURNING tenant_id;

-- name: get_tenant
SELECT * FROM kernos_tenants WHERE tenant_id = %(tenant_id)s::text;

-- name: list_tenants
SELECT * FROM kernos_tenants ORDER BY tenant_id;

-- name: set_retention
UPDATE kernos_tenants SET retention_days = %(days)s::integer, retention_action = %(action)s::text
WHERE tenant_id = %(tenant_id)s::text
RETURNING *;

-- name: insert_user
-- Any conflict (the username, or the id) leaves the existing user alone.
INSERT INTO kernos_users (user_id, username, password_hash, created_at, disabled)
VALUES (%(user_id)s::text, %(username)s::text, %(password_hash)s::text,
        %(created_at)s::double precision, %(disabled)s::integer)
ON CONFLICT DO NOTHING
RETURNING user_id;

-- name: get_user
SELECT * FROM kernos_users WHERE user_id = %(user_id)s::text;

-- name: find_user
SELECT * FROM kernos_users WHERE username = %(username)s::text;

-- name: count_users
SELECT count(*) AS n FROM kernos_users;

-- name: update_user
UPDATE kernos_users SET
    password_hash = coalesce(%(password_hash)s::text, password_hash),
    disabled = coalesce(%(disabled)s::integer, disabled)
WHERE user_id = %(user_id)s::text
RETURNING *;

-- name: upsert_membership
INSERT INTO kernos_memberships (user_id, tenant_id, role, created_at)
VALUES (%(user_id)s::text, %(tenant_id)s::text, %(role)s::text, %(created_at)s::double precision)
ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role;

-- name: delete_membership
DELETE FROM kernos_memberships
WHERE user_id = %(user_id)s::text AND tenant_id = %(tenant_id)s::text;

-- name: memberships_of
SELECT * FROM kernos_memberships WHERE user_id = %(user_id)s::text ORDER BY tenant_id;

-- name: members_of
SELECT u.user_id, u.username, u.password_hash, u.created_at, u.disabled,
       m.tenant_id, m.role, m.created_at AS member_since
FROM kernos_memberships m JOIN kernos_users u ON u.user_id = m.user_id
WHERE m.tenant_id = %(tenant_id)s::text
ORDER BY u.username;

-- name: insert_api_key
INSERT INTO kernos_api_keys (
    key_id, tenant_id, name, role, secret_hash, created_by, created_at, expires_at,
    revoked_at, last_used_at, rotated_from
) VALUES (
    %(key_id)s::text, %(tenant_id)s::text, %(name)s::text, %(role)s::text,
    %(secret_hash)s::text, %(created_by)s::text, %(created_at)s::double precision,
    %(expires_at)s::double precision, %(revoked_at)s::double precision,
    %(last_used_at)s::double precision, %(rotated_from)s::text
);

-- name: get_api_key
SELECT * FROM kernos_api_keys WHERE key_id = %(key_id)s::text;

-- name: list_api_keys
SELECT * FROM kernos_api_keys WHERE tenant_id = %(tenant_id)s::text
ORDER BY created_at DESC, key_id DESC;

-- name: update_api_key
-- An expiry only ever moves earlier, so a rotation cannot extend a key's life.
UPDATE kernos_api_keys SET
    revoked_at = coalesce(%(revoked_at)s::double precision, revoked_at),
    last_used_at = coalesce(%(last_used_at)s::double precision, last_used_at),
    expires_at = CASE
        WHEN %(expires_at)s::double precision IS NULL THEN expires_at
        WHEN expires_at IS NULL OR %(expires_at)s::double precision < expires_at
            THEN %(expires_at)s::double precision
        ELSE expires_at
    END
WHERE key_id = %(key_id)s::text
RETURNING *;

-- name: insert_session
INSERT INTO kernos_sessions (
    token_hash, user_id, tenant_id, csrf_token, created_at, expires_at, ip
) VALUES (
    %(token_hash)s::text, %(user_id)s::text, %(tenant_id)s::text, %(csrf_token)s::text,
    %(created_at)s::double precision, %(expires_at)s::double precision, %(ip)s::text
);

-- name: get_session
SELECT * FROM kernos_sessions WHERE token_hash = %(token_hash)s::text;

-- name: delete_session
DELETE FROM kernos_sessions WHERE token_hash = %(token_hash)s::text;

-- name: delete_expired_sessions
DELETE FROM kernos_sessions WHERE expires_at < %(now)s::double precision;

-- name: insert_audit
INSERT INTO kernos_audit (
    tenant_id, at, actor, action, object_type, object_id, ip, outcome, detail
) VALUES (
    %(tenant_id)s::text, %(at)s::double precision, %(actor)s::text, %(action)s::text,
    %(object_type)s::text, %(object_id)s::text, %(ip)s::text, %(outcome)s::text,
    %(detail)s::text
);

-- name: list_audit
-- ``before_id`` is always bound (the first page starts below the largest id)
-- so that it bounds a range of kernos_audit_tenant.
SELECT * FROM kernos_audit
WHERE tenant_id = %(tenant_id)s::text AND audit_id < %(before_id)s::bigint
  AND (%(actor)s::text IS NULL OR actor = %(actor)s::text)
  AND (%(action)s::text IS NULL
       OR substr(action, 1, length(%(action)s::text)) = %(action)s::text)
  AND (%(object_id)s::text IS NULL OR object_id = %(object_id)s::text)
  AND (%(since)s::double precision IS NULL OR at >= %(since)s::double precision)
  AND (%(until)s::double precision IS NULL OR at < %(until)s::double precision)
ORDER BY audit_id DESC
LIMIT %(limit)s;

-- name: upsert_bulk_job
INSERT INTO kernos_bulk_jobs (
    job_id, tenant_id, action, filter, state, total, done, failed, created_by, created_at,
    finished_at, results
) VALUES (
    %(job_id)s::text, %(tenant_id)s::text, %(action)s::text, %(filter)s::text,
    %(state)s::text, %(total)s::integer, %(done)s::integer, %(failed)s::integer,
    %(created_by)s::text, %(created_at)s::double precision,
    %(finished_at)s::double precision, %(results)s::text
)
ON CONFLICT (job_id) DO UPDATE SET
    tenant_id = excluded.tenant_id, action = excluded.action, filter = excluded.filter,
    state = excluded.state, total = excluded.total, done = excluded.done,
    failed = excluded.failed, created_by = excluded.created_by,
    created_at = excluded.created_at, finished_at = excluded.finished_at,
    results = excluded.results;

-- name: get_bulk_job
SELECT * FROM kernos_bulk_jobs WHERE job_id = %(job_id)s::text;

-- name: list_bulk_jobs
SELECT * FROM kernos_bulk_jobs WHERE tenant_id = %(tenant_id)s::text
ORDER BY created_at DESC, job_id DESC
LIMIT %(limit)s;

-- name: interrupt_bulk_jobs
UPDATE kernos_bulk_jobs SET state = 'interrupted', finished_at = %(now)s::double precision
WHERE state = 'running';

-- name: insert_approval
INSERT INTO kernos_approvals (
    approval_id, tenant_id, run_id, workflow, seq, kind, title, details, options, assignees,
    timeouts, default_action, level, deadline, status, created_at, args_hash, history
) VALUES (
    %(approval_id)s::text, %(tenant_id)s::text, %(run_id)s::text, %(workflow)s::text,
    %(seq)s::integer, %(kind)s::text, %(title)s::text, %(details)s::text, %(options)s::text,
    %(assignees)s::text, %(timeouts)s::text, %(default_action)s::text, 0,
    %(deadline)s::double precision, %(status)s::text, %(now)s::double precision,
    %(args_hash)s::text, '[]'
)
ON CONFLICT (approval_id) DO NOTHING
RETURNING approval_id;

-- name: get_approval
SELECT * FROM kernos_approvals WHERE approval_id = %(approval_id)s::text;

-- name: list_approvals
-- Newest first; the cursor (created_at, approval_id) is always bound.
SELECT * FROM kernos_approvals
WHERE tenant_id = %(tenant_id)s::text
  AND (created_at, approval_id)
      < (%(before_created)s::double precision, %(before_id)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(run_id)s::text IS NULL OR run_id = %(run_id)s::text)
ORDER BY created_at DESC, approval_id DESC
LIMIT %(limit)s;

-- name: decide_approval
-- Compare-and-set: only a pending request still at the level the decider saw.
UPDATE kernos_approvals SET
    status = %(status)s::text, decision = %(decision)s::text,
    decided_by = %(decided_by)s::text, decided_at = %(now)s::double precision
WHERE approval_id = %(approval_id)s::text AND status = 'pending'
  AND level = %(level)s::integer
  AND (%(args_hash)s::text IS NULL OR args_hash = %(args_hash)s::text)
RETURNING *;

-- name: escalate_approval
-- Compare-and-set: one level up, only from the level the escalator saw.
UPDATE kernos_approvals SET
    level = %(level)s::integer + 1, deadline = %(deadline)s::double precision,
    history = %(history)s::text
WHERE approval_id = %(approval_id)s::text AND status = 'pending'
  AND level = %(level)s::integer
RETURNING *;

-- name: cancel_run_approvals
UPDATE kernos_approvals SET status = 'cancelled', decided_at = %(now)s::double precision
WHERE run_id = %(run_id)s::text AND status = 'pending'
RETURNING approval_id;

-- name: consume_topic
UPDATE kernos_messages SET consumed_seq = %(seq)s::integer
WHERE run_id = %(run_id)s::text AND topic = %(topic)s::text AND consumed_seq IS NULL;

-- name: delete_run_approvals
DELETE FROM kernos_approvals WHERE run_id = %(run_id)s::text;

-- Webhooks (0006) ---------------------------------------------------------------

-- name: insert_webhook
INSERT INTO kernos_webhooks (
    webhook_id, tenant_id, url, secret, kinds, format, active, created_by, created_at, cursor
) VALUES (
    %(webhook_id)s::text, %(tenant_id)s::text, %(url)s::text, %(secret)s::text,
    %(kinds)s::text, %(format)s::text, %(active)s::integer, %(created_by)s::text,
    %(created_at)s::double precision, %(cursor)s::bigint
);

-- name: get_webhook
SELECT * FROM kernos_webhooks WHERE webhook_id = %(webhook_id)s::text;

-- name: list_webhooks
SELECT * FROM kernos_webhooks
WHERE (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s::text)
  AND (%(active)s::integer IS NULL OR active = %(active)s::integer)
ORDER BY created_at, webhook_id;

-- name: update_webhook
UPDATE kernos_webhooks SET
    url = coalesce(%(url)s::text, url),
    kinds = coalesce(%(kinds)s::text, kinds),
    format = coalesce(%(format)s::text, format),
    active = coalesce(%(active)s::integer, active),
    secret = coalesce(%(secret)s::text, secret)
WHERE webhook_id = %(webhook_id)s::text
RETURNING *;

-- name: advance_webhook_cursor
-- Only forward: two dispatchers over one store may both hand the same events over.
UPDATE kernos_webhooks SET cursor = greatest(cursor, %(cursor)s::bigint)
WHERE webhook_id = %(webhook_id)s::text;

-- name: delete_webhook
DELETE FROM kernos_webhooks WHERE webhook_id = %(webhook_id)s::text;

-- name: delete_webhook_deliveries
DELETE FROM kernos_webhook_deliveries WHERE webhook_id = %(webhook_id)s::text;

-- name: insert_delivery
-- An event becomes one delivery per webhook, however often it is handed over.
INSERT INTO kernos_webhook_deliveries (
    delivery_id, webhook_id, tenant_id, event_id, kind, payload, attempts, status,
    next_attempt_at, created_at
) VALUES (
    %(delivery_id)s::text, %(webhook_id)s::text, %(tenant_id)s::text, %(event_id)s::bigint,
    %(kind)s::text, %(payload)s::text, 0, 'pending', %(next_attempt_at)s::double precision,
    %(created_at)s::double precision
)
ON CONFLICT DO NOTHING;

-- name: claim_deliveries
-- Moving next_attempt_at past the lease keeps another dispatcher off them while
-- they are sent; a dispatcher that dies mid-send has them retried after the lease.
-- SKIP LOCKED: concurrent dispatchers take different deliveries.
UPDATE kernos_webhook_deliveries SET next_attempt_at = %(lease_until)s::double precision
WHERE delivery_id IN (
    SELECT delivery_id FROM kernos_webhook_deliveries
    WHERE status IN ('pending', 'failed') AND next_attempt_at <= %(now)s::double precision
    ORDER BY next_attempt_at, delivery_id
    LIMIT %(limit)s::integer
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: record_delivery_attempt
UPDATE kernos_webhook_deliveries SET
    attempts = %(attempts)s::integer,
    status = %(status)s::text,
    response_status = %(response_status)s::integer,
    last_error = %(last_error)s::text,
    next_attempt_at = %(next_attempt_at)s::double precision,
    delivered_at = %(delivered_at)s::double precision
WHERE delivery_id = %(delivery_id)s::text
RETURNING *;

-- name: get_delivery
SELECT * FROM kernos_webhook_deliveries WHERE delivery_id = %(delivery_id)s::text;

-- name: insert_delivery_attempt
INSERT INTO kernos_webhook_attempts (delivery_id, attempt, at, response_status, error)
VALUES (%(delivery_id)s::text, %(attempt)s::integer, %(at)s::double precision,
        %(response_status)s::integer, %(error)s::text)
ON CONFLICT DO NOTHING;

-- name: postpone_delivery
UPDATE kernos_webhook_deliveries SET next_attempt_at = %(next_attempt_at)s::double precision
WHERE delivery_id = %(delivery_id)s::text;

-- name: list_delivery_attempts
SELECT * FROM kernos_webhook_attempts
WHERE delivery_id IN (SELECT jsonb_array_elements_text(%(ids)s::jsonb))
ORDER BY delivery_id, attempt;

-- name: delete_webhook_attempts
DELETE FROM kernos_webhook_attempts WHERE delivery_id IN (
    SELECT delivery_id FROM kernos_webhook_deliveries WHERE webhook_id = %(webhook_id)s::text
);

-- name: list_deliveries
SELECT * FROM kernos_webhook_deliveries
WHERE webhook_id = %(webhook_id)s::text
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (created_at < %(before_at)s::double precision
       OR (created_at = %(before_at)s::double precision AND delivery_id < %(before_id)s::text))
ORDER BY created_at DESC, delivery_id DESC
LIMIT %(limit)s::integer;

-- name: insert_policy
-- The next version of the tenant's policy, numbered in the same statement; a
-- concurrent apply that took the number first makes this insert nothing.
INSERT INTO kernos_policies (tenant_id, version, document, sha256, created_by, created_at)
SELECT %(tenant_id)s::text, COALESCE(MAX(version), 0) + 1, %(document)s::text,
       %(sha256)s::text, %(created_by)s::text, %(now)s::double precision
FROM kernos_policies WHERE tenant_id = %(tenant_id)s::text
ON CONFLICT DO NOTHING
RETURNING *;

-- name: current_policy
SELECT * FROM kernos_policies WHERE tenant_id = %(tenant_id)s::text
ORDER BY version DESC LIMIT 1;

-- name: get_policy
SELECT * FROM kernos_policies
WHERE tenant_id = %(tenant_id)s::text AND version = %(version)s::integer;

-- name: list_policies
SELECT * FROM kernos_policies WHERE tenant_id = %(tenant_id)s::text
ORDER BY version DESC LIMIT %(limit)s::integer;
