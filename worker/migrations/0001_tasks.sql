-- Tasks: one row per customer task; every state change is committed here before it is acted on.
CREATE TABLE tasks (
    id                     TEXT PRIMARY KEY,          -- UUID with dashes (the deliverable id)
    user_address           TEXT NOT NULL,             -- lowercase 0x address
    created_at             INTEGER NOT NULL,          -- unix seconds
    updated_at             INTEGER NOT NULL,
    pre_trained_model_hash TEXT NOT NULL,
    dataset_hash           TEXT NOT NULL,
    training_params        TEXT NOT NULL,
    fee                    TEXT NOT NULL,             -- as sent (decimal); the signed ceiling in the fee-bound form
    nonce                  TEXT NOT NULL,
    signature              TEXT NOT NULL,
    user_public_key        TEXT NOT NULL,             -- uncompressed, hex: the ECIES recipient
    fee_ceiling            TEXT,                      -- decimal, when signed
    wait                   INTEGER NOT NULL,
    model_type             TEXT NOT NULL,
    progress               TEXT NOT NULL,             -- state name (PROTOCOL.md §2)
    fail_reason            TEXT,
    token_count            INTEGER,
    task_fee               TEXT,                      -- computed fee (decimal)
    training_attempts      INTEGER NOT NULL DEFAULT 0,
    deliverable_path       TEXT,
    model_root_hash        TEXT,                      -- 0x + 64 hex (announced on chain)
    encrypted_secret       TEXT,                      -- hex, the ECIES-wrapped model key (safe at rest)
    tee_signer             TEXT,                      -- the TEE signer that signed the tags
    deliver_index          INTEGER,
    deliver_time           INTEGER,
    settle_tx              TEXT,
    settled_fee            TEXT,
    settled_acknowledged   INTEGER,
    cleaned_at             INTEGER
);
CREATE INDEX tasks_user ON tasks(user_address, created_at);
CREATE INDEX tasks_progress ON tasks(progress);

CREATE TABLE task_log (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,                         -- unix milliseconds
    message TEXT NOT NULL
);
CREATE INDEX task_log_task ON task_log(task_id, seq);

-- Facts about this worker that must survive restarts (e.g. the TEE signer tasks were made under).
CREATE TABLE worker_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
