-- The prediction store: one row per recorded call, and the ground truth given later.
-- Portable SQL: the same file runs on SQLite and on PostgreSQL.

CREATE TABLE predictions (
    request_id     TEXT PRIMARY KEY,
    model          TEXT NOT NULL,
    version        TEXT NOT NULL,
    -- sha256 of the artifact that answered
    digest         TEXT NOT NULL,
    -- milliseconds since the Unix epoch
    time_ms        BIGINT NOT NULL,
    node           TEXT NOT NULL,
    trace_id       TEXT NOT NULL,
    -- classifiers: the predicted class (its name, or its index) and its score
    class          TEXT,
    score          DOUBLE PRECISION,
    -- regression: the predicted value
    value          DOUBLE PRECISION,
    -- JSON array: each class's score (classifiers), or the values of a small output
    scores         TEXT,
    -- sha256 of the outputs when they are too large to keep
    outputs_sha256 TEXT,
    -- JSON of the inputs (sampled, size-capped), else NULL
    inputs         TEXT,
    -- the row's size in bytes, for retention by size
    bytes          BIGINT NOT NULL
);
CREATE INDEX predictions_model_time ON predictions (model, version, time_ms);
CREATE INDEX predictions_time ON predictions (time_ms);

CREATE TABLE feedback (
    request_id TEXT PRIMARY KEY,
    -- the true class (classifiers) or value (regression)
    label      TEXT,
    value      DOUBLE PRECISION,
    time_ms    BIGINT NOT NULL,
    -- who gave it (the caller's name)
    source     TEXT NOT NULL
);
CREATE INDEX feedback_time ON feedback (time_ms);
