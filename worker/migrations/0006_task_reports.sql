-- The training report of a task (docs/PROTOCOL.md §8): what the worker saw while the script ran
-- (recorded when training ends, before the seal is committed), then the signed report (recorded
-- once the deliverable's root is known, before it is announced). Kept as long as the task row.
CREATE TABLE task_reports (
    task_id     TEXT PRIMARY KEY,
    observed    TEXT NOT NULL,                    -- JSON: worker/src/pipeline/report.rs `Observed`
    document    TEXT,                             -- the canonical report JSON (the signed bytes)
    signature   TEXT                              -- 0x + 130 hex, v = 27/28
);
