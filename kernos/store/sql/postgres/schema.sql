-- Canonical schema of the latest version. tests/migration checks that the
-- migration chain produces exactly this.
CREATE TABLE kernos_runs (
    run_id           TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    version          TEXT NOT NULL,
    status           TEXT NOT NULL,
    input            TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    parent_id        TEXT,
    parent_seq       INTEGER,
    forked_from      TEXT,
    fork_seq         INTEGER,
    superseded_by    TEXT,
    queue            TEXT NOT NULL DEFAULT 'default',
    priority         INTEGER NOT NULL DEFAULT 0,
    created_at       DOUBLE PRECISION NOT NULL,
    started_at       DOUBLE PRECISION,
    finished_at      DOUBLE PRECISION,
    updated_at       DOUBLE PRECISION NOT NULL,
    owner            TEXT,
    lease_epoch      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at DOUBLE PRECISION,
    wake_at          DOUBLE PRECISION,
    wait_topics      TEXT,
    deadline         DOUBLE PRECISION,
    timeout          DOUBLE PRECISION,
    pause_requested  INTEGER NOT NULL DEFAULT 0,
    executions       INTEGER NOT NULL DEFAULT 0,
    steps            INTEGER NOT NULL DEFAULT 0,
    concurrency_key  TEXT,
    dedup_id         TEXT,
    deps_pending     INTEGER NOT NULL DEFAULT 0,
    on_dep_failure   TEXT NOT NULL DEFAULT 'cancel',
    tenant_id        TEXT NOT NULL DEFAULT 'default'
);
CREATE INDEX kernos_runs_pending ON kernos_runs (queue, priority DESC, created_at)
    WHERE status = 'pending' AND deps_pending = 0;
CREATE INDEX kernos_runs_running_queue ON kernos_runs (queue, concurrency_key)
    WHERE status = 'running';
CREATE INDEX kernos_runs_started ON kernos_runs (queue, started_at);
CREATE UNIQUE INDEX kernos_runs_dedup ON kernos_runs (queue, dedup_id)
    WHERE dedup_id IS NOT NULL AND status NOT IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX kernos_runs_waiting ON kernos_runs (wake_at) WHERE status = 'waiting';
CREATE INDEX kernos_runs_leased ON kernos_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX kernos_runs_owner ON kernos_runs (owner) WHERE owner IS NOT NULL;
CREATE INDEX kernos_runs_parent ON kernos_runs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX kernos_runs_created ON kernos_runs (created_at);
CREATE INDEX kernos_runs_tenant ON kernos_runs (tenant_id, created_at, run_id);
CREATE INDEX kernos_runs_active ON kernos_runs (queue, status, tenant_id)
    WHERE status IN ('pending', 'running', 'waiting', 'paused');
CREATE INDEX kernos_runs_forked_from ON kernos_runs (forked_from) WHERE forked_from IS NOT NULL;

CREATE TABLE kernos_journal (
    run_id      TEXT NOT NULL REFERENCES kernos_runs (run_id),
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    args_hash   TEXT,
    output      TEXT,
    error       TEXT,
    attempts    TEXT,
    detail      TEXT,
    started_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE kernos_events (
    event_id BIGSERIAL PRIMARY KEY,
    run_id   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    at       DOUBLE PRECISION NOT NULL,
    data     TEXT
);
CREATE INDEX kernos_events_run ON kernos_events (run_id, event_id);

CREATE TABLE kernos_messages (
    message_id   BIGSERIAL PRIMARY KEY,
    run_id       TEXT NOT NULL,
    topic        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    sent_at      DOUBLE PRECISION NOT NULL,
    consumed_seq INTEGER
);
CREATE INDEX kernos_messages_unread ON kernos_messages (run_id, topic, message_id)
    WHERE consumed_seq IS NULL;
CREATE INDEX kernos_messages_run ON kernos_messages (run_id);

CREATE TABLE kernos_blobs (
    blob_id    TEXT PRIMARY KEY,
    data       TEXT NOT NULL,
    size       BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE kernos_workers (
    worker_id    TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    pid_start    TEXT,
    started_at   DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    state        TEXT NOT NULL,
    queues       TEXT,
    concurrency  INTEGER
);

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

CREATE TABLE kernos_tenants (
    tenant_id        TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    created_at       DOUBLE PRECISION NOT NULL,
    retention_days   INTEGER,
    retention_action TEXT NOT NULL DEFAULT 'delete'
);
-- The tenant of every run created before tenants existed, and of runs started
-- without one.
INSERT INTO kernos_tenants (tenant_id, name, created_at)
VALUES ('default', 'Default', extract(epoch FROM now())::double precision);

CREATE TABLE kernos_users (
    user_id       TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    DOUBLE PRECISION NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE kernos_memberships (
    user_id    TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (user_id, tenant_id)
);
CREATE INDEX kernos_memberships_tenant ON kernos_memberships (tenant_id);

CREATE TABLE kernos_api_keys (
    key_id       TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,
    expires_at   DOUBLE PRECISION,
    revoked_at   DOUBLE PRECISION,
    last_used_at DOUBLE PRECISION,
    rotated_from TEXT
);
CREATE INDEX kernos_api_keys_tenant ON kernos_api_keys (tenant_id);

CREATE TABLE kernos_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    ip         TEXT
);
CREATE INDEX kernos_sessions_expiry ON kernos_sessions (expires_at);

CREATE TABLE kernos_audit (
    audit_id    BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    at          DOUBLE PRECISION NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   TEXT,
    ip          TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX kernos_audit_tenant ON kernos_audit (tenant_id, audit_id);

CREATE TABLE kernos_bulk_jobs (
    job_id      TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    action      TEXT NOT NULL,
    filter      TEXT NOT NULL,
    state       TEXT NOT NULL,
    total       INTEGER NOT NULL,
    done        INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    results     TEXT
);
CREATE INDEX kernos_bulk_jobs_tenant ON kernos_bulk_jobs (tenant_id, created_at);

-- Approval requests (0004): one row per kernos.approval() wait or gated tool call.
CREATE TABLE kernos_approvals (
    approval_id    TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    run_id         TEXT NOT NULL,
    workflow       TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    title          TEXT NOT NULL,
    details        TEXT,
    options        TEXT NOT NULL,
    assignees      TEXT NOT NULL,
    timeouts       TEXT NOT NULL,
    default_action TEXT NOT NULL,
    level          INTEGER NOT NULL DEFAULT 0,
    deadline       DOUBLE PRECISION,
    status         TEXT NOT NULL,
    decision       TEXT,
    decided_by     TEXT,
    decided_at     DOUBLE PRECISION,
    created_at     DOUBLE PRECISION NOT NULL,
    args_hash      TEXT,
    history        TEXT
);
CREATE INDEX kernos_approvals_tenant ON kernos_approvals (tenant_id, status, created_at, approval_id);
CREATE INDEX kernos_approvals_run ON kernos_approvals (run_id);

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

-- Webhook subscriptions and their outbox of deliveries (0006).
CREATE TABLE kernos_webhooks (
    webhook_id TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    kinds      TEXT NOT NULL,
    format     TEXT NOT NULL,
    active     INTEGER NOT NULL DEFAULT 1,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    cursor     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX kernos_webhooks_tenant ON kernos_webhooks (tenant_id, created_at);

CREATE TABLE kernos_webhook_deliveries (
    delivery_id     TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    event_id        BIGINT,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,
    response_status INTEGER,
    last_error      TEXT,
    next_attempt_at DOUBLE PRECISION,
    created_at      DOUBLE PRECISION NOT NULL,
    delivered_at    DOUBLE PRECISION,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX kernos_webhook_deliveries_due ON kernos_webhook_deliveries (status, next_attempt_at);
CREATE INDEX kernos_webhook_deliveries_hook ON kernos_webhook_deliveries (webhook_id, created_at);

-- One row per attempt: when, and what the receiver answered or what went wrong.
CREATE TABLE kernos_webhook_attempts (
    delivery_id     TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    at              DOUBLE PRECISION NOT NULL,
    response_status INTEGER,
    error           TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE kernos_policies (
    tenant_id  TEXT NOT NULL,
    version    INTEGER NOT NULL,
    document   TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
