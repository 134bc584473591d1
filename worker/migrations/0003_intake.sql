-- Create-task requests are usable once per provider, ever (PROTOCOL.md §2): a (user, nonce) pair and
-- a signature are recorded when their task is accepted and never deleted, so a re-post after a
-- cancel, a failed setup or a restart is refused.
CREATE TABLE used_requests (
    user_address TEXT NOT NULL,                       -- lowercase 0x address
    nonce        TEXT NOT NULL,                       -- decimal
    signature    TEXT NOT NULL,                       -- 0x + 130 hex, lowercase, v as 27/28
    task_id      TEXT NOT NULL,
    used_at      INTEGER NOT NULL,                    -- unix seconds
    PRIMARY KEY (user_address, nonce)
);
CREATE UNIQUE INDEX used_requests_signature ON used_requests(signature);
-- Requests of tasks created before this table existed are used too.
INSERT OR IGNORE INTO used_requests (user_address, nonce, signature, task_id, used_at)
    SELECT user_address, nonce, lower(signature), id, created_at FROM tasks;

-- TEE uploads and who made them: a dataset uploaded to the TEE is usable only by its uploaders
-- (the addresses whose upload signature verified). Rows of an upload no task uses expire with
-- retention, and its bytes with them.
CREATE TABLE uploads (
    dataset_hash TEXT NOT NULL,                       -- 0x + 64 hex, lowercase (keccak256)
    owner        TEXT NOT NULL,                       -- lowercase 0x address
    uploaded_at  INTEGER NOT NULL,                    -- unix seconds, the latest upload by this owner
    PRIMARY KEY (dataset_hash, owner)
);
-- Uploads made before owners were recorded belong to the customers whose tasks used them.
INSERT OR IGNORE INTO uploads (dataset_hash, owner, uploaded_at)
    SELECT '0x' || lower(substr(dataset_hash, CASE WHEN lower(substr(dataset_hash, 1, 2)) = '0x' THEN 3 ELSE 1 END)),
           user_address, created_at
    FROM tasks;
