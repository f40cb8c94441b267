-- Drift: each model version's reference rows (kept across restarts) and its tested
-- windows (the latest is what quality reports show).

CREATE TABLE drift_references (
    model    TEXT NOT NULL,
    version  TEXT NOT NULL,
    -- JSON array of rows (arrays of numbers)
    rows     TEXT NOT NULL,
    time_ms  BIGINT NOT NULL,
    PRIMARY KEY (model, version)
);

CREATE TABLE drift_windows (
    model     TEXT NOT NULL,
    version   TEXT NOT NULL,
    time_ms   BIGINT NOT NULL,
    node      TEXT NOT NULL,
    alerting  BIGINT NOT NULL,
    -- JSON: {"window_rows", "reference_rows", "features": [{feature, test, statistic, p_value, psi, drifted}]}
    result    TEXT NOT NULL
);
CREATE INDEX drift_windows_model_time ON drift_windows (model, version, time_ms);
