-- 0003: tenants, and the control plane that serves them: users, memberships,
-- API keys, sessions, the audit record and bulk jobs. Every run has a tenant.
ALTER TABLE kernos_runs ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default';
CREATE INDEX kernos_runs_tenant ON kernos_runs (tenant_id, created_at, run_id);
-- Purging a run deletes its messages, read or not.
CREATE INDEX kernos_messages_run ON kernos_messages (run_id);

CREATE TABLE kernos_tenants (
    tenant_id        TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    created_at       REAL NOT NULL,
    retention_days   INTEGER,
    retention_action TEXT NOT NULL DEFAULT 'delete'
);
-- The tenant of every run created before tenants existed, and of runs started
-- without one.
INSERT INTO kernos_tenants (tenant_id, name, created_at)
VALUES ('default', 'Default', (julianday('now') - 2440587.5) * 86400.0);

CREATE TABLE kernos_users (
    user_id       TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    REAL NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE kernos_memberships (
    user_id    TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at REAL NOT NULL,
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
    created_at   REAL NOT NULL,
    expires_at   REAL,
    revoked_at   REAL,
    last_used_at REAL,
    rotated_from TEXT
);
CREATE INDEX kernos_api_keys_tenant ON kernos_api_keys (tenant_id);

CREATE TABLE kernos_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    ip         TEXT
);
CREATE INDEX kernos_sessions_expiry ON kernos_sessions (expires_at);

CREATE TABLE kernos_audit (
    audit_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    at          REAL NOT NULL,
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
    created_at  REAL NOT NULL,
    finished_at REAL,
    results     TEXT
);
CREATE INDEX kernos_bulk_jobs_tenant ON kernos_bulk_jobs (tenant_id, created_at);
