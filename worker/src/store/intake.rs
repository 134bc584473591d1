//! The intake tables: create-task requests used once, ever (`used_requests`), and who uploaded
//! which dataset to the TEE (`uploads`). Rows are typed here like the task rows: callers give and
//! get addresses, hashes and nonces, never the stored text.
use alloy::primitives::{Address, B256, U256};
use sqlx::{Row, SqliteConnection};

use super::task::address_text;
use super::{Store, StoreError};

/// The stored text of a create-task signature: the 65 bytes in lowercase hex with `v` as 27/28, so
/// that the same signature written another way (`v` as 0/1, upper case) is the same row. Text that
/// is no signature (the API verified it before, so only a test writes one) is kept lowercased.
pub(crate) fn signature_text(signature: &str) -> String {
    sealtune_protocol::request::parse_signature(signature)
        .map(|s| s.to_hex_v27().to_lowercase())
        .unwrap_or_else(|_| signature.to_lowercase())
}

/// A hash as the `uploads` table writes it: `0x` and 64 lowercase hex digits.
fn hash_text(hash: B256) -> String {
    format!("{hash:#x}")
}

/// The task that already used this request (its user and nonce, or its signature), if any.
pub(crate) async fn used_by(
    conn: &mut SqliteConnection,
    user: Address,
    nonce: U256,
    signature: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(
        "SELECT task_id FROM used_requests WHERE (user_address = ? AND nonce = ?) OR signature = ? LIMIT 1",
    )
    .bind(address_text(user))
    .bind(nonce.to_string())
    .bind(signature_text(signature))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.try_get("task_id")).transpose()?)
}

/// Records the request of task `task` as used (in the caller's transaction, with the task's insert).
pub(crate) async fn mark_used(
    conn: &mut SqliteConnection,
    user: Address,
    nonce: U256,
    signature: &str,
    task: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO used_requests (user_address, nonce, signature, task_id, used_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(address_text(user))
    .bind(nonce.to_string())
    .bind(signature_text(signature))
    .bind(task)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Records that `owner` uploaded the dataset `hash` (its upload signature verified) at `now`.
    pub async fn record_upload(
        &self,
        hash: B256,
        owner: Address,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO uploads (dataset_hash, owner, uploaded_at) VALUES (?, ?, ?)
             ON CONFLICT(dataset_hash, owner) DO UPDATE SET uploaded_at = excluded.uploaded_at",
        )
        .bind(hash_text(hash))
        .bind(address_text(owner))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The addresses that uploaded the dataset `hash` to the TEE (none: not a recorded upload).
    pub async fn upload_owners(&self, hash: B256) -> Result<Vec<Address>, StoreError> {
        let rows = sqlx::query("SELECT owner FROM uploads WHERE dataset_hash = ?")
            .bind(hash_text(hash))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("owner")?;
                text.parse::<Address>().map_err(|e| StoreError::Corrupt {
                    task: None,
                    column: "uploads.owner",
                    reason: format!("{text}: {e}"),
                })
            })
            .collect()
    }

    /// Uploads that expired: last uploaded before `before` and used by no task whose files are
    /// still kept (a task not cleaned by retention yet).
    pub async fn expired_uploads(&self, before: i64) -> Result<Vec<B256>, StoreError> {
        let rows = sqlx::query(
            "SELECT dataset_hash FROM uploads GROUP BY dataset_hash HAVING MAX(uploaded_at) < ?
               AND dataset_hash NOT IN (
                 SELECT '0x' || lower(substr(dataset_hash, CASE WHEN lower(substr(dataset_hash, 1, 2)) = '0x' THEN 3 ELSE 1 END))
                 FROM tasks WHERE cleaned_at IS NULL)",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("dataset_hash")?;
                text.parse::<B256>().map_err(|e| StoreError::Corrupt {
                    task: None,
                    column: "uploads.dataset_hash",
                    reason: format!("{text}: {e}"),
                })
            })
            .collect()
    }

    /// Forgets the upload `hash` (its bytes were deleted): its owners no longer own anything.
    pub async fn forget_upload(&self, hash: B256) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM uploads WHERE dataset_hash = ?")
            .bind(hash_text(hash))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
