-- 0004: approval requests and their decisions (issue 7). One row per request;
-- its id derives from (run_id, seq), and every change is a compare-and-set on status and level.
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
