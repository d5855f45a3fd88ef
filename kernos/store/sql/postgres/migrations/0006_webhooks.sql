-- 0006: webhook subscriptions and their outbox of deliveries (issue 7).
-- A subscription's cursor is the last event id handed to its outbox; an event
-- becomes at most one delivery per subscription (unique webhook_id, event_id),
-- written in the same transaction as the cursor, so a restart neither loses
-- nor repeats a notification. Test pings have no event (event_id NULL).
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
