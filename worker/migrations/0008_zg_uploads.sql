-- Deliverables uploaded to 0G Storage (`[storage.zg]` with a Flow contract): one row per task, written
-- before the Flow submission is broadcast, so that a worker killed at any point of the upload finds
-- the submission it signed (and paid for, once mined) instead of paying the storage fee again.
CREATE TABLE zg_uploads (
    task_id TEXT PRIMARY KEY NOT NULL,
    -- the 0G Storage root of the sealed file (0x + 64 hex): what the deliverable is announced with
    root TEXT NOT NULL,
    -- the signed Flow `submit` transaction: its hash and raw bytes (rebroadcast after a crash: same
    -- nonce, same hash, paid at most once); NULL until signed, cleared when it can never be mined
    submission_tx TEXT,
    submission_raw BLOB,
    updated_at INTEGER NOT NULL
);
