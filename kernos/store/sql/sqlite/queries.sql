-- Named queries for SQLite. Every name here exists in postgres/queries.sql too.
-- Parameters are bound by name (:name); no SQL is ever built from user strings.

-- name: insert_run
INSERT INTO kernos_runs (
    run_id, workflow, version, status, input, parent_id, parent_seq, forked_from, fork_seq,
    queue, priority, created_at, started_at, updated_at, owner, lease_epoch, lease_expires_at,
    wake_at, deadline, timeout, executions, concurrency_key, dedup_id, deps_pending,
    on_dep_failure, error, finished_at, tenant_id
) VALUES (
    :run_id, :workflow, :version, :status, :input, :parent_id, :parent_seq, :forked_from,
    :fork_seq, :queue, :priority, :now, :started_at, :now, :owner, :lease_epoch,
    :lease_expires_at, :wake_at, :deadline, :timeout, :executions, :concurrency_key, :dedup_id,
    :deps_pending, :on_dep_failure, :error, :finished_at, :tenant_id
)
ON CONFLICT DO NOTHING
RETURNING run_id;

-- name: get_run
SELECT * FROM kernos_runs WHERE run_id = :run_id;

-- name: list_runs
-- The time bounds are always bound (the first page starts below +infinity) so
-- that they bound an index range instead of filtering a scan.
SELECT * FROM kernos_runs
WHERE (created_at, run_id) < (:before_created, :before_run_id)
  AND created_at >= :created_after
  AND (:status IS NULL OR status = :status)
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:parent_id IS NULL OR parent_id = :parent_id)
  AND (:forked_from IS NULL OR forked_from = :forked_from)
  AND (:queue IS NULL OR queue = :queue)
  AND (:finished_before IS NULL OR (finished_at < :finished_before
       AND status IN ('succeeded', 'failed', 'cancelled')))
  AND (:text IS NULL OR run_id LIKE :text ESCAPE '\' OR workflow LIKE :text ESCAPE '\'
       OR error LIKE :text ESCAPE '\')
ORDER BY created_at DESC, run_id DESC
LIMIT :limit;

-- name: list_tenant_runs
-- As list_runs, for one tenant: walks kernos_runs_tenant newest first.
SELECT * FROM kernos_runs
WHERE tenant_id = :tenant
  AND (created_at, run_id) < (:before_created, :before_run_id)
  AND created_at >= :created_after
  AND (:status IS NULL OR status = :status)
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:parent_id IS NULL OR parent_id = :parent_id)
  AND (:forked_from IS NULL OR forked_from = :forked_from)
  AND (:queue IS NULL OR queue = :queue)
  AND (:finished_before IS NULL OR (finished_at < :finished_before
       AND status IN ('succeeded', 'failed', 'cancelled')))
  AND (:text IS NULL OR run_id LIKE :text ESCAPE '\' OR workflow LIKE :text ESCAPE '\'
       OR error LIKE :text ESCAPE '\')
ORDER BY created_at DESC, run_id DESC
LIMIT :limit;

-- name: count_matching_runs
SELECT count(*) AS n FROM kernos_runs
WHERE (created_at, run_id) < (:before_created, :before_run_id)
  AND created_at >= :created_after
  AND (:status IS NULL OR status = :status)
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:parent_id IS NULL OR parent_id = :parent_id)
  AND (:forked_from IS NULL OR forked_from = :forked_from)
  AND (:queue IS NULL OR queue = :queue)
  AND (:finished_before IS NULL OR (finished_at < :finished_before
       AND status IN ('succeeded', 'failed', 'cancelled')))
  AND (:text IS NULL OR run_id LIKE :text ESCAPE '\' OR workflow LIKE :text ESCAPE '\'
       OR error LIKE :text ESCAPE '\');

-- name: count_tenant_matching_runs
SELECT count(*) AS n FROM kernos_runs
WHERE tenant_id = :tenant
  AND (created_at, run_id) < (:before_created, :before_run_id)
  AND created_at >= :created_after
  AND (:status IS NULL OR status = :status)
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:parent_id IS NULL OR parent_id = :parent_id)
  AND (:forked_from IS NULL OR forked_from = :forked_from)
  AND (:queue IS NULL OR queue = :queue)
  AND (:finished_before IS NULL OR (finished_at < :finished_before
       AND status IN ('succeeded', 'failed', 'cancelled')))
  AND (:text IS NULL OR run_id LIKE :text ESCAPE '\' OR workflow LIKE :text ESCAPE '\'
       OR error LIKE :text ESCAPE '\');

-- name: count_runs_by_status
SELECT status, count(*) AS n FROM kernos_runs
WHERE (:tenant IS NULL OR tenant_id = :tenant)
GROUP BY status;

-- name: fence
-- Every journal write first proves this process still holds the run's lease.
UPDATE kernos_runs SET steps = max(steps, :steps), updated_at = :now
WHERE run_id = :run_id AND lease_epoch = :epoch AND status = 'running'
RETURNING pause_requested;

-- name: upsert_entry
-- A settled entry never changes: only a pending wait may be settled.
INSERT INTO kernos_journal (
    run_id, seq, kind, name, status, args_hash, output, error, attempts, detail,
    started_at, finished_at
) VALUES (
    :run_id, :seq, :kind, :name, :status, :args_hash, :output, :error, :attempts, :detail,
    :started_at, :finished_at
)
ON CONFLICT (run_id, seq) DO UPDATE SET
    status = excluded.status, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, detail = excluded.detail, finished_at = excluded.finished_at
WHERE kernos_journal.status = 'pending';

-- name: insert_event
INSERT INTO kernos_events (run_id, kind, at, data) VALUES (:run_id, :kind, :now, :data);

-- name: finish_run
UPDATE kernos_runs SET
    status = :status, output = :output, error = :error, finished_at = :now, updated_at = :now,
    owner = NULL, lease_expires_at = NULL, wake_at = NULL, wait_topics = NULL,
    pause_requested = 0
WHERE run_id = :run_id AND lease_epoch = :epoch AND status = 'running'
RETURNING parent_id;

-- name: wake_run
UPDATE kernos_runs SET status = 'pending', wake_at = NULL, wait_topics = NULL, updated_at = :now
WHERE run_id = :run_id AND status = 'waiting'
RETURNING run_id;

-- name: wake_for_message
UPDATE kernos_runs SET status = 'pending', wake_at = NULL, wait_topics = NULL, updated_at = :now
WHERE run_id = :run_id AND status = 'waiting'
  AND EXISTS (SELECT 1 FROM json_each(wait_topics) WHERE value = :topic)
RETURNING run_id;

-- name: suspend_run
UPDATE kernos_runs SET
    status = 'waiting', owner = NULL, lease_expires_at = NULL, wake_at = :wake_at,
    wait_topics = :topics, updated_at = :now
WHERE run_id = :run_id AND lease_epoch = :epoch AND status = 'running'
RETURNING run_id;

-- name: pause_run
UPDATE kernos_runs SET
    status = 'paused', owner = NULL, lease_expires_at = NULL, pause_requested = 0,
    updated_at = :now
WHERE run_id = :run_id AND lease_epoch = :epoch AND status = 'running'
RETURNING run_id;

-- name: request_pause
UPDATE kernos_runs SET pause_requested = 1, updated_at = :now
WHERE run_id = :run_id AND status = 'running'
RETURNING run_id;

-- name: pause_idle
UPDATE kernos_runs SET status = 'paused', updated_at = :now
WHERE run_id = :run_id AND status IN ('pending', 'waiting')
RETURNING run_id;

-- name: resume_run
UPDATE kernos_runs SET status = 'pending', pause_requested = 0, updated_at = :now
WHERE run_id = :run_id AND status = 'paused'
RETURNING run_id;

-- name: clear_pause_request
UPDATE kernos_runs SET pause_requested = 0, updated_at = :now
WHERE run_id = :run_id AND status = 'running' AND pause_requested = 1
RETURNING run_id;

-- name: cancel_tree
WITH RECURSIVE tree (run_id) AS (
    SELECT :run_id
    UNION ALL
    SELECT r.run_id FROM kernos_runs r JOIN tree t ON r.parent_id = t.run_id
)
UPDATE kernos_runs SET
    status = 'cancelled', error = :error, finished_at = :now, updated_at = :now, owner = NULL,
    lease_expires_at = NULL, wake_at = NULL, wait_topics = NULL, pause_requested = 0
WHERE run_id IN (SELECT run_id FROM tree)
  AND status NOT IN ('succeeded', 'failed', 'cancelled')
RETURNING run_id, parent_id;

-- name: claim_runs
UPDATE kernos_runs SET
    status = 'running', owner = :owner, lease_epoch = lease_epoch + 1,
    lease_expires_at = :expires, started_at = coalesce(started_at, :now), updated_at = :now,
    wake_at = NULL, wait_topics = NULL, executions = executions + 1
WHERE run_id IN (
    SELECT run_id FROM kernos_runs
    WHERE ((status = 'pending' AND (wake_at IS NULL OR wake_at <= :now))
        OR (status = 'waiting' AND wake_at <= :now)
        OR (status = 'running' AND lease_expires_at < :now))
      AND workflow IN (SELECT value FROM json_each(:workflows))
    ORDER BY priority DESC, created_at
    LIMIT :limit
)
RETURNING *;

-- name: next_wake_at
SELECT min(t) AS t FROM (
    SELECT min(wake_at) AS t FROM kernos_runs WHERE status = 'waiting'
    UNION ALL
    SELECT min(lease_expires_at) FROM kernos_runs WHERE status = 'running'
    UNION ALL
    SELECT min(coalesce(wake_at, 0)) FROM kernos_runs WHERE status = 'pending'
);

-- name: renew_leases
UPDATE kernos_runs SET lease_expires_at = :expires
WHERE owner = :owner AND status = 'running'
RETURNING run_id;

-- name: release_owner
-- A stopping worker hands back what it still holds; the next claim resumes it.
UPDATE kernos_runs SET status = 'pending', owner = NULL, lease_expires_at = NULL, updated_at = :now
WHERE owner = :owner AND status = 'running'
RETURNING run_id;

-- name: expire_owner
-- A dead worker's leases end now, so any worker may claim its runs at once.
UPDATE kernos_runs SET lease_expires_at = 0
WHERE owner = :owner AND status = 'running'
RETURNING run_id;

-- name: upsert_worker
INSERT INTO kernos_workers (
    worker_id, host, pid, pid_start, started_at, heartbeat_at, state, queues, concurrency
)
VALUES (:worker_id, :host, :pid, :pid_start, :now, :now, :state, :queues, :concurrency)
ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, state = excluded.state;

-- name: heartbeat_worker
-- A stale worker that heartbeats again (it was frozen or starved) is active again.
UPDATE kernos_workers SET heartbeat_at = :now,
    state = CASE WHEN state = 'stale' THEN 'active' ELSE state END
WHERE worker_id = :worker_id;

-- name: set_worker_state
UPDATE kernos_workers SET state = :state, heartbeat_at = :now WHERE worker_id = :worker_id;

-- name: list_workers
SELECT * FROM kernos_workers ORDER BY started_at;

-- name: live_workers_on_host
SELECT * FROM kernos_workers WHERE host = :host AND state IN ('active', 'draining');

-- name: stale_workers
UPDATE kernos_workers SET state = 'stale'
WHERE state IN ('active', 'draining') AND heartbeat_at < :cutoff
RETURNING worker_id;

-- name: load_journal
SELECT * FROM kernos_journal WHERE run_id = :run_id ORDER BY seq;

-- name: get_entry
SELECT * FROM kernos_journal WHERE run_id = :run_id AND seq = :seq;

-- name: copy_journal
INSERT INTO kernos_journal (
    run_id, seq, kind, name, status, args_hash, output, error, attempts, detail,
    started_at, finished_at
)
SELECT :new_run_id, seq, kind, name, status, args_hash, output, error, attempts, detail,
       started_at, finished_at
FROM kernos_journal WHERE run_id = :run_id AND seq < :before_seq
ORDER BY seq;

-- name: supersede_run
UPDATE kernos_runs SET superseded_by = :new_run_id, updated_at = :now WHERE run_id = :run_id;

-- name: list_checkpoints
SELECT * FROM kernos_journal WHERE run_id = :run_id AND kind = 'checkpoint' ORDER BY seq;

-- name: list_events
SELECT * FROM kernos_events
WHERE (:run_id IS NULL OR run_id = :run_id) AND event_id > :after
ORDER BY event_id
LIMIT :limit;

-- name: insert_message
INSERT INTO kernos_messages (run_id, topic, payload, sent_at)
VALUES (:run_id, :topic, :payload, :now);

-- name: take_message
UPDATE kernos_messages SET consumed_seq = :seq
WHERE message_id = (
    SELECT message_id FROM kernos_messages
    WHERE run_id = :run_id AND topic = :topic AND consumed_seq IS NULL
    ORDER BY message_id LIMIT 1
)
RETURNING payload;

-- name: count_unread
SELECT count(*) AS n FROM kernos_messages
WHERE run_id = :run_id AND consumed_seq IS NULL
  AND topic IN (SELECT value FROM json_each(:topics));

-- name: count_finished
SELECT count(*) AS n FROM kernos_runs
WHERE run_id IN (SELECT value FROM json_each(:run_ids))
  AND status IN ('succeeded', 'failed', 'cancelled');

-- name: put_blob
INSERT INTO kernos_blobs (blob_id, data, size, created_at) VALUES (:blob_id, :data, :size, :now)
ON CONFLICT (blob_id) DO NOTHING;

-- name: get_blob
SELECT data FROM kernos_blobs WHERE blob_id = :blob_id;

-- name: insert_patched_entry
INSERT INTO kernos_journal (
    run_id, seq, kind, name, status, args_hash, output, error, attempts, detail,
    started_at, finished_at
)
SELECT :new_run_id, seq, kind, name, 'ok', args_hash, :output, NULL, attempts, detail,
       started_at, :now
FROM kernos_journal WHERE run_id = :run_id AND seq = :seq;

-- name: create_version_table
CREATE TABLE IF NOT EXISTS kernos_schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
);

-- name: applied_versions
SELECT version FROM kernos_schema_version ORDER BY version;

-- name: record_version
INSERT INTO kernos_schema_version (version, name, applied_at) VALUES (:version, :name, :now);

-- name: find_dedup
SELECT run_id FROM kernos_runs
WHERE queue = :queue AND dedup_id = :dedup_id
  AND status NOT IN ('succeeded', 'failed', 'cancelled');

-- name: insert_dep
INSERT INTO kernos_run_deps (run_id, depends_on) VALUES (:run_id, :depends_on)
ON CONFLICT DO NOTHING;

-- name: upstream_of
SELECT depends_on FROM kernos_run_deps WHERE run_id = :run_id;

-- name: statuses
SELECT run_id, status FROM kernos_runs WHERE run_id IN (SELECT value FROM json_each(:run_ids));

-- name: dependents
SELECT r.run_id, r.status, r.on_dep_failure FROM kernos_run_deps d
JOIN kernos_runs r ON r.run_id = d.run_id
WHERE d.depends_on = :run_id;

-- name: release_dependency
UPDATE kernos_runs SET deps_pending = deps_pending - 1, updated_at = :now
WHERE run_id = :run_id AND status = 'pending' AND deps_pending > 0;

-- name: cancel_blocked
UPDATE kernos_runs SET
    status = 'cancelled', error = :error, finished_at = :now, updated_at = :now
WHERE run_id = :run_id AND status = 'pending'
RETURNING run_id;

-- name: claim_resumable
-- Runs that already began: expired leases (the holder died or stalled) and due
-- timers of queues without limits. Taking one over needs no new slot.
UPDATE kernos_runs SET
    status = 'running', owner = :owner, lease_epoch = lease_epoch + 1,
    lease_expires_at = :expires, started_at = coalesce(started_at, :now), updated_at = :now,
    wake_at = NULL, wait_topics = NULL, executions = executions + 1
WHERE run_id IN (
    SELECT run_id FROM kernos_runs
    WHERE ((status = 'running' AND lease_expires_at < :now)
        OR (status = 'waiting' AND wake_at <= :now
            AND queue NOT IN (SELECT value FROM json_each(:limited))))
      AND workflow IN (SELECT value FROM json_each(:workflows))
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
    ORDER BY priority DESC, created_at
    LIMIT :limit
)
RETURNING *;

-- name: claim_unlimited
UPDATE kernos_runs SET
    status = 'running', owner = :owner, lease_epoch = lease_epoch + 1,
    lease_expires_at = :expires, started_at = coalesce(started_at, :now), updated_at = :now,
    wake_at = NULL, wait_topics = NULL, executions = executions + 1
WHERE run_id IN (
    SELECT run_id FROM kernos_runs
    WHERE status = 'pending' AND deps_pending = 0
      AND (wake_at IS NULL OR wake_at <= :now)
      AND workflow IN (SELECT value FROM json_each(:workflows))
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
      AND queue NOT IN (SELECT value FROM json_each(:limited))
    ORDER BY priority DESC, created_at
    LIMIT :limit
)
RETURNING *;

-- name: claim_candidates
SELECT run_id, concurrency_key, started_at FROM kernos_runs
WHERE queue = :queue
  AND ((status = 'pending' AND deps_pending = 0 AND (wake_at IS NULL OR wake_at <= :now))
    OR (status = 'waiting' AND wake_at <= :now))
  AND workflow IN (SELECT value FROM json_each(:workflows))
ORDER BY priority DESC, created_at
LIMIT :limit;

-- name: claim_chosen
-- The candidates were read unlocked: re-check that each is still claimable
-- (a cancel or pause may have committed since), or it would come back to life.
UPDATE kernos_runs SET
    status = 'running', owner = :owner, lease_epoch = lease_epoch + 1,
    lease_expires_at = :expires, started_at = coalesce(started_at, :now), updated_at = :now,
    wake_at = NULL, wait_topics = NULL, executions = executions + 1
WHERE run_id IN (SELECT value FROM json_each(:run_ids))
  AND status IN ('pending', 'waiting')
RETURNING *;

-- name: running_in_queue
SELECT count(*) AS n FROM kernos_runs WHERE queue = :queue AND status = 'running';

-- name: running_by_key
SELECT concurrency_key, count(*) AS n FROM kernos_runs
WHERE queue = :queue AND status = 'running' AND concurrency_key IS NOT NULL
GROUP BY concurrency_key;

-- name: started_since
SELECT count(*) AS n FROM kernos_runs WHERE queue = :queue AND started_at > :since;

-- name: upsert_queue
INSERT INTO kernos_queues (
    name, concurrency, worker_concurrency, key_concurrency, rate_limit, rate_period, updated_at
) VALUES (
    :name, :concurrency, :worker_concurrency, :key_concurrency,
    :rate_limit, :rate_period, :now
)
ON CONFLICT (name) DO UPDATE SET
    concurrency = excluded.concurrency, worker_concurrency = excluded.worker_concurrency,
    key_concurrency = excluded.key_concurrency, rate_limit = excluded.rate_limit,
    rate_period = excluded.rate_period, updated_at = excluded.updated_at;

-- name: list_queue_specs
SELECT * FROM kernos_queues ORDER BY name;

-- name: lock_queue
SELECT name FROM kernos_queues WHERE name = :queue;

-- name: queue_depths
SELECT queue, status, count(*) AS n FROM kernos_runs
WHERE status IN ('pending', 'running', 'waiting', 'paused')
  AND (:tenant IS NULL OR tenant_id = :tenant)
GROUP BY queue, status;

-- name: runs_in_flight
SELECT owner, count(*) AS n FROM kernos_runs WHERE status = 'running' AND owner IS NOT NULL
GROUP BY owner;

-- name: upsert_schedule
INSERT INTO kernos_schedules (name, cron, workflow, queue, last_tick, updated_at)
VALUES (:name, :cron, :workflow, :queue, :last_tick, :now)
ON CONFLICT (name) DO UPDATE SET
    cron = excluded.cron, workflow = excluded.workflow, queue = excluded.queue,
    updated_at = excluded.updated_at;

-- name: get_schedule
SELECT * FROM kernos_schedules WHERE name = :name;

-- name: advance_schedule
-- Compare-and-set: of several schedulers, only the one that saw last_tick moves it.
UPDATE kernos_schedules SET last_tick = :tick, updated_at = :now
WHERE name = :name AND (last_tick IS NULL OR last_tick < :tick)
RETURNING name;

-- name: list_schedules
SELECT * FROM kernos_schedules ORDER BY name;

-- name: upsert_entry_fenced
-- As upsert_entry, but only while the writer holds the lease: lets a batch send
-- its fences and its entries together, without waiting for the fences' answers.
INSERT INTO kernos_journal (
    run_id, seq, kind, name, status, args_hash, output, error, attempts, detail,
    started_at, finished_at
)
SELECT :run_id, :seq, :kind, :name, :status, :args_hash, :output, :error, :attempts, :detail,
       :started_at, :finished_at
WHERE EXISTS (
    SELECT 1 FROM kernos_runs
    WHERE run_id = :run_id AND lease_epoch = :epoch AND status = 'running'
)
ON CONFLICT (run_id, seq) DO UPDATE SET
    status = excluded.status, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, detail = excluded.detail, finished_at = excluded.finished_at
WHERE kernos_journal.status = 'pending';

-- name: insert_event_fenced
INSERT INTO kernos_events (run_id, kind, at, data)
SELECT :run_id, :kind, :now, :data
WHERE EXISTS (
    SELECT 1 FROM kernos_runs
    WHERE run_id = :run_id AND lease_epoch = :epoch AND status = 'running'
);

-- name: stream_events
-- Polled many times a second with ``after`` the last id seen: a range of the
-- primary key, each event joined with its run for the tenant and workflow.
SELECT e.event_id, e.run_id, e.kind, e.at, e.data, r.tenant_id, r.workflow
FROM kernos_events e LEFT JOIN kernos_runs r ON r.run_id = e.run_id
WHERE e.event_id > :after AND e.event_id <= :until
  AND (:run_id IS NULL OR e.run_id = :run_id)
  AND (:tenant IS NULL OR r.tenant_id = :tenant)
  AND (:workflow IS NULL OR r.workflow = :workflow)
  AND (:kinds IS NULL OR e.kind IN (SELECT value FROM json_each(:kinds)))
ORDER BY e.event_id
LIMIT :limit;

-- name: last_event_id
SELECT coalesce(max(event_id), 0) AS n FROM kernos_events;

-- name: usage_of_runs
-- Model calls, tokens and cost per run, from the llm.completed events each run
-- wrote itself (a fork's inherited entries are its original's, counted there).
SELECT run_id, count(*) AS calls,
       coalesce(sum(json_extract(data, '$.input_tokens')), 0) AS input_tokens,
       coalesce(sum(json_extract(data, '$.output_tokens')), 0) AS output_tokens,
       sum(json_extract(data, '$.cost')) AS cost
FROM kernos_events
WHERE run_id IN (SELECT value FROM json_each(:run_ids))
  AND kind = 'llm.completed' AND json_valid(data)
GROUP BY run_id;

-- name: runs_per_bucket
-- The tenant's runs created since ``since``, counted per time bucket and status.
SELECT CAST(created_at / :bucket AS INTEGER) * :bucket AS bucket, status, count(*) AS n
FROM kernos_runs
WHERE tenant_id = :tenant AND created_at >= :since
GROUP BY 1, status
ORDER BY 1;

-- name: run_durations
-- How long each finished run of the tenant created since ``since`` took.
SELECT CAST(created_at / :bucket AS INTEGER) * :bucket AS bucket,
       finished_at - started_at AS duration
FROM kernos_runs
WHERE tenant_id = :tenant AND created_at >= :since
  AND started_at IS NOT NULL AND finished_at IS NOT NULL
  AND status IN ('succeeded', 'failed', 'cancelled');

-- name: usage_per_bucket
-- Tokens and cost of model calls per time bucket, in runs created since ``since``.
SELECT CAST(e.at / :bucket AS INTEGER) * :bucket AS bucket, count(*) AS calls,
       coalesce(sum(json_extract(e.data, '$.input_tokens')), 0)
         + coalesce(sum(json_extract(e.data, '$.output_tokens')), 0) AS tokens,
       sum(json_extract(e.data, '$.cost')) AS cost
FROM kernos_runs r JOIN kernos_events e ON e.run_id = r.run_id
WHERE r.tenant_id = :tenant AND r.created_at >= :since AND e.at >= :since
  AND e.kind = 'llm.completed' AND json_valid(e.data)
GROUP BY 1
ORDER BY 1;

-- name: queue_throughput
-- The tenant's runs that finished since ``since``, per queue and time bucket.
SELECT queue, CAST(finished_at / :bucket AS INTEGER) * :bucket AS bucket, count(*) AS n
FROM kernos_runs
WHERE tenant_id = :tenant AND finished_at >= :since
  AND status IN ('succeeded', 'failed', 'cancelled')
GROUP BY queue, 2;

-- name: run_blob_candidates
-- Rows of a run that may hold blob references (the caller checks each value).
SELECT input AS a, output AS b, error AS c, NULL AS d FROM kernos_runs
WHERE run_id = :run_id
UNION ALL
SELECT output, error, detail, attempts FROM kernos_journal
WHERE run_id = :run_id
  AND (output LIKE :prefix OR error LIKE :prefix OR detail LIKE :prefix
       OR attempts LIKE :prefix);

-- name: blob_referenced
SELECT 1 AS found FROM kernos_journal
WHERE output = :ref OR error = :ref OR detail = :ref OR attempts = :ref
UNION ALL
SELECT 1 FROM kernos_runs WHERE input = :ref OR output = :ref OR error = :ref
LIMIT 1;

-- name: delete_blob
DELETE FROM kernos_blobs WHERE blob_id = :blob_id;

-- name: delete_run_journal
DELETE FROM kernos_journal WHERE run_id = :run_id;

-- name: delete_run_events
DELETE FROM kernos_events WHERE run_id = :run_id;

-- name: delete_run_messages
DELETE FROM kernos_messages WHERE run_id = :run_id;

-- name: delete_run_deps
DELETE FROM kernos_run_deps WHERE run_id = :run_id OR depends_on = :run_id;

-- name: delete_run
DELETE FROM kernos_runs WHERE run_id = :run_id;

-- name: insert_tenant
INSERT INTO kernos_tenants (tenant_id, name, created_at, retention_days, retention_action)
VALUES (:tenant_id, :name, :created_at, :retention_days, :retention_action)
ON CONFLICT DO NOTHING
RETURNING tenant_id;

-- name: get_tenant
SELECT * FROM kernos_tenants WHERE tenant_id = :tenant_id;

-- name: list_tenants
SELECT * FROM kernos_tenants ORDER BY tenant_id;

-- name: set_retention
UPDATE kernos_tenants SET retention_days = :days, retention_action = :action
WHERE tenant_id = :tenant_id
RETURNING *;

-- name: insert_user
-- Any conflict (the username, or the id) leaves the existing user alone.
INSERT INTO kernos_users (user_id, username, password_hash, created_at, disabled)
VALUES (:user_id, :username, :password_hash, :created_at, :disabled)
ON CONFLICT DO NOTHING
RETURNING user_id;

-- name: get_user
SELECT * FROM kernos_users WHERE user_id = :user_id;

-- name: find_user
SELECT * FROM kernos_users WHERE username = :username;

-- name: count_users
SELECT count(*) AS n FROM kernos_users;

-- name: update_user
UPDATE kernos_users SET
    password_hash = coalesce(:password_hash, password_hash),
    disabled = coalesce(:disabled, disabled)
WHERE user_id = :user_id
RETURNING *;

-- name: upsert_membership
INSERT INTO kernos_memberships (user_id, tenant_id, role, created_at)
VALUES (:user_id, :tenant_id, :role, :created_at)
ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role;

-- name: delete_membership
DELETE FROM kernos_memberships WHERE user_id = :user_id AND tenant_id = :tenant_id;

-- name: memberships_of
SELECT * FROM kernos_memberships WHERE user_id = :user_id ORDER BY tenant_id;

-- name: members_of
SELECT u.user_id, u.username, u.password_hash, u.created_at, u.disabled,
       m.tenant_id, m.role, m.created_at AS member_since
FROM kernos_memberships m JOIN kernos_users u ON u.user_id = m.user_id
WHERE m.tenant_id = :tenant_id
ORDER BY u.username;

-- name: insert_api_key
INSERT INTO kernos_api_keys (
    key_id, tenant_id, name, role, secret_hash, created_by, created_at, expires_at,
    revoked_at, last_used_at, rotated_from
) VALUES (
    :key_id, :tenant_id, :name, :role, :secret_hash, :created_by, :created_at, :expires_at,
    :revoked_at, :last_used_at, :rotated_from
);

-- name: get_api_key
SELECT * FROM kernos_api_keys WHERE key_id = :key_id;

-- name: list_api_keys
SELECT * FROM kernos_api_keys WHERE tenant_id = :tenant_id
ORDER BY created_at DESC, key_id DESC;

-- name: update_api_key
-- An expiry only ever moves earlier, so a rotation cannot extend a key's life.
UPDATE kernos_api_keys SET
    revoked_at = coalesce(:revoked_at, revoked_at),
    last_used_at = coalesce(:last_used_at, last_used_at),
    expires_at = CASE
        WHEN :expires_at IS NULL THEN expires_at
        WHEN expires_at IS NULL OR :expires_at < expires_at THEN :expires_at
        ELSE expires_at
    END
WHERE key_id = :key_id
RETURNING *;

-- name: insert_session
INSERT INTO kernos_sessions (
    token_hash, user_id, tenant_id, csrf_token, created_at, expires_at, ip
) VALUES (:token_hash, :user_id, :tenant_id, :csrf_token, :created_at, :expires_at, :ip);

-- name: get_session
SELECT * FROM kernos_sessions WHERE token_hash = :token_hash;

-- name: delete_session
DELETE FROM kernos_sessions WHERE token_hash = :token_hash;

-- name: delete_expired_sessions
DELETE FROM kernos_sessions WHERE expires_at < :now;

-- name: insert_audit
INSERT INTO kernos_audit (
    tenant_id, at, actor, action, object_type, object_id, ip, outcome, detail
) VALUES (
    :tenant_id, :at, :actor, :action, :object_type, :object_id, :ip, :outcome, :detail
);

-- name: list_audit
-- ``before_id`` is always bound (the first page starts below the largest id)
-- so that it bounds a range of kernos_audit_tenant.
SELECT * FROM kernos_audit
WHERE tenant_id = :tenant_id AND audit_id < :before_id
  AND (:actor IS NULL OR actor = :actor)
  AND (:action IS NULL OR substr(action, 1, length(:action)) = :action)
  AND (:object_id IS NULL OR object_id = :object_id)
  AND (:since IS NULL OR at >= :since)
  AND (:until IS NULL OR at < :until)
ORDER BY audit_id DESC
LIMIT :limit;

-- name: upsert_bulk_job
INSERT INTO kernos_bulk_jobs (
    job_id, tenant_id, action, filter, state, total, done, failed, created_by, created_at,
    finished_at, results
) VALUES (
    :job_id, :tenant_id, :action, :filter, :state, :total, :done, :failed, :created_by,
    :created_at, :finished_at, :results
)
ON CONFLICT (job_id) DO UPDATE SET
    tenant_id = excluded.tenant_id, action = excluded.action, filter = excluded.filter,
    state = excluded.state, total = excluded.total, done = excluded.done,
    failed = excluded.failed, created_by = excluded.created_by,
    created_at = excluded.created_at, finished_at = excluded.finished_at,
    results = excluded.results;

-- name: get_bulk_job
SELECT * FROM kernos_bulk_jobs WHERE job_id = :job_id;

-- name: list_bulk_jobs
SELECT * FROM kernos_bulk_jobs WHERE tenant_id = :tenant_id
ORDER BY created_at DESC, job_id DESC
LIMIT :limit;

-- name: interrupt_bulk_jobs
UPDATE kernos_bulk_jobs SET state = 'interrupted', finished_at = :now
WHERE state = 'running';

-- name: insert_approval
INSERT INTO kernos_approvals (
    approval_id, tenant_id, run_id, workflow, seq, kind, title, details, options, assignees,
    timeouts, default_action, level, deadline, status, created_at, args_hash, history
) VALUES (
    :approval_id, :tenant_id, :run_id, :workflow, :seq, :kind, :title, :details, :options,
    :assignees, :timeouts, :default_action, 0, :deadline, :status, :now, :args_hash, '[]'
)
ON CONFLICT (approval_id) DO NOTHING
RETURNING approval_id;

-- name: get_approval
SELECT * FROM kernos_approvals WHERE approval_id = :approval_id;

-- name: list_approvals
-- Newest first; the cursor (created_at, approval_id) is always bound.
SELECT * FROM kernos_approvals
WHERE tenant_id = :tenant_id
  AND (created_at < :before_created
       OR (created_at = :before_created AND approval_id < :before_id))
  AND (:status IS NULL OR status = :status)
  AND (:run_id IS NULL OR run_id = :run_id)
ORDER BY created_at DESC, approval_id DESC
LIMIT :limit;

-- name: decide_approval
-- Compare-and-set: only a pending request still at the level the decider saw.
UPDATE kernos_approvals SET
    status = :status, decision = :decision, decided_by = :decided_by, decided_at = :now
WHERE approval_id = :approval_id AND status = 'pending' AND level = :level
  AND (:args_hash IS NULL OR args_hash = :args_hash)
RETURNING *;

-- name: escalate_approval
-- Compare-and-set: one level up, only from the level the escalator saw.
UPDATE kernos_approvals SET level = :level + 1, deadline = :deadline, history = :history
WHERE approval_id = :approval_id AND status = 'pending' AND level = :level
RETURNING *;

-- name: cancel_run_approvals
UPDATE kernos_approvals SET status = 'cancelled', decided_at = :now
WHERE run_id = :run_id AND status = 'pending'
RETURNING approval_id;

-- name: consume_topic
UPDATE kernos_messages SET consumed_seq = :seq
WHERE run_id = :run_id AND topic = :topic AND consumed_seq IS NULL;

-- name: delete_run_approvals
DELETE FROM kernos_approvals WHERE run_id = :run_id;

-- Webhooks (0006) ---------------------------------------------------------------

-- name: insert_webhook
INSERT INTO kernos_webhooks (
    webhook_id, tenant_id, url, secret, kinds, format, active, created_by, created_at, cursor
) VALUES (
    :webhook_id, :tenant_id, :url, :secret, :kinds, :format, :active, :created_by,
    :created_at, :cursor
);

-- name: get_webhook
SELECT * FROM kernos_webhooks WHERE webhook_id = :webhook_id;

-- name: list_webhooks
SELECT * FROM kernos_webhooks
WHERE (:tenant_id IS NULL OR tenant_id = :tenant_id) AND (:active IS NULL OR active = :active)
ORDER BY created_at, webhook_id;

-- name: update_webhook
UPDATE kernos_webhooks SET
    url = coalesce(:url, url),
    kinds = coalesce(:kinds, kinds),
    format = coalesce(:format, format),
    active = coalesce(:active, active),
    secret = coalesce(:secret, secret)
WHERE webhook_id = :webhook_id
RETURNING *;

-- name: advance_webhook_cursor
-- Only forward: two dispatchers over one store may both hand the same events over.
UPDATE kernos_webhooks SET cursor = max(cursor, :cursor) WHERE webhook_id = :webhook_id;

-- name: delete_webhook
DELETE FROM kernos_webhooks WHERE webhook_id = :webhook_id;

-- name: delete_webhook_deliveries
DELETE FROM kernos_webhook_deliveries WHERE webhook_id = :webhook_id;

-- name: insert_delivery
-- An event becomes one delivery per webhook, however often it is handed over.
INSERT INTO kernos_webhook_deliveries (
    delivery_id, webhook_id, tenant_id, event_id, kind, payload, attempts, status,
    next_attempt_at, created_at
) VALUES (
    :delivery_id, :webhook_id, :tenant_id, :event_id, :kind, :payload, 0, 'pending',
    :next_attempt_at, :created_at
)
ON CONFLICT DO NOTHING;

-- name: claim_deliveries
-- Moving next_attempt_at past the lease keeps another dispatcher off them while
-- they are sent; a dispatcher that dies mid-send has them retried after the lease.
UPDATE kernos_webhook_deliveries SET next_attempt_at = :lease_until
WHERE delivery_id IN (
    SELECT delivery_id FROM kernos_webhook_deliveries
    WHERE status IN ('pending', 'failed') AND next_attempt_at <= :now
    ORDER BY next_attempt_at, delivery_id
    LIMIT :limit
)
RETURNING *;

-- name: record_delivery_attempt
UPDATE kernos_webhook_deliveries SET
    attempts = :attempts,
    status = :status,
    response_status = :response_status,
    last_error = :last_error,
    next_attempt_at = :next_attempt_at,
    delivered_at = :delivered_at
WHERE delivery_id = :delivery_id
RETURNING *;

-- name: get_delivery
SELECT * FROM kernos_webhook_deliveries WHERE delivery_id = :delivery_id;

-- name: insert_delivery_attempt
INSERT INTO kernos_webhook_attempts (delivery_id, attempt, at, response_status, error)
VALUES (:delivery_id, :attempt, :at, :response_status, :error)
ON CONFLICT DO NOTHING;

-- name: postpone_delivery
UPDATE kernos_webhook_deliveries SET next_attempt_at = :next_attempt_at
WHERE delivery_id = :delivery_id;

-- name: list_delivery_attempts
SELECT * FROM kernos_webhook_attempts
WHERE delivery_id IN (SELECT value FROM json_each(:ids))
ORDER BY delivery_id, attempt;

-- name: delete_webhook_attempts
DELETE FROM kernos_webhook_attempts WHERE delivery_id IN (
    SELECT delivery_id FROM kernos_webhook_deliveries WHERE webhook_id = :webhook_id
);

-- name: list_deliveries
SELECT * FROM kernos_webhook_deliveries
WHERE webhook_id = :webhook_id
  AND (:status IS NULL OR status = :status)
  AND (created_at < :before_at OR (created_at = :before_at AND delivery_id < :before_id))
ORDER BY created_at DESC, delivery_id DESC
LIMIT :limit;

-- name: insert_policy
-- The next version of the tenant's policy, numbered in the same statement.
INSERT INTO kernos_policies (tenant_id, version, document, sha256, created_by, created_at)
SELECT :tenant_id, COALESCE(MAX(version), 0) + 1, :document, :sha256, :created_by, :now
FROM kernos_policies WHERE tenant_id = :tenant_id
ON CONFLICT DO NOTHING
RETURNING *;

-- name: current_policy
SELECT * FROM kernos_policies WHERE tenant_id = :tenant_id ORDER BY version DESC LIMIT 1;

-- name: get_policy
SELECT * FROM kernos_policies WHERE tenant_id = :tenant_id AND version = :version;

-- name: list_policies
SELECT * FROM kernos_policies WHERE tenant_id = :tenant_id ORDER BY version DESC LIMIT :limit;
