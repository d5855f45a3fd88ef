-- 0005: versioned policy documents per tenant (issue 7). A version is never changed;
-- applying a document adds the next one.
CREATE TABLE kernos_policies (
    tenant_id  TEXT NOT NULL,
    version    INTEGER NOT NULL,
    document   TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
