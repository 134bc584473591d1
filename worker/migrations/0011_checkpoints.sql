-- Sealed training checkpoints (worker/src/pipeline/checkpoint.rs): one row per sealed
-- `<task dir>/checkpoints/<step>.sealed` file. `wrapped_key` is the file's random AES key, wrapped
-- (AES-256-GCM) with the task's checkpoint key, which is derived in the TEE and never stored; the
-- wrap's AAD binds the task, the step and the file's tag digest. Deleted with the task's files.
CREATE TABLE task_checkpoints (
    task_id      TEXT    NOT NULL,
    step         INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,               -- unix seconds
    sealed_bytes INTEGER NOT NULL,
    loss         REAL,                           -- the last loss reported at or before `step`
    tag_digest   BLOB    NOT NULL,               -- keccak256 of the sealed file's chunk tags
    wrapped_key  BLOB    NOT NULL,               -- nonce (12) || ciphertext (32) || tag (16)
    PRIMARY KEY (task_id, step)
);
