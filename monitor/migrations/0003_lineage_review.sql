-- Lineage: what each loaded model version is (its weights, where they came from, whether
-- their signature held), one row per (model, version, artifact digest). A stored
-- prediction names its model, version and digest, so each answer joins its lineage.

CREATE TABLE lineages (
    model    TEXT NOT NULL,
    version  TEXT NOT NULL,
    digest   TEXT NOT NULL,
    -- JSON: troupe_monitor::lineage::Lineage
    record   TEXT NOT NULL,
    -- when a node last loaded it (ms since the epoch)
    time_ms  BIGINT NOT NULL,
    PRIMARY KEY (model, version, digest)
);

-- Human review: calls queued by a model's review rules, what a reviewer saw, and what
-- they decided (a decision is also stored as the call's ground truth).

CREATE TABLE reviews (
    request_id  TEXT PRIMARY KEY,
    model       TEXT NOT NULL,
    version     TEXT NOT NULL,
    -- the rule that queued it: sample | low_score | outlier | drift
    reason      TEXT NOT NULL,
    -- when it was queued (ms since the epoch)
    time_ms     BIGINT NOT NULL,
    -- JSON objects: the call's inputs (size-capped), outputs, and explanation if one was asked
    inputs      TEXT,
    outputs     TEXT NOT NULL,
    explanation TEXT,
    -- when `next` last handed it to a reviewer
    claimed_ms  BIGINT,
    -- the decision
    label       TEXT,
    value       DOUBLE PRECISION,
    reviewer    TEXT,
    decided_ms  BIGINT
);
CREATE INDEX reviews_model_open ON reviews (model, decided_ms, time_ms);
