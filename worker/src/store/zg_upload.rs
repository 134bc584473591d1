//! The `zg_uploads` table: the Flow submission of a deliverable's 0G Storage upload, recorded
//! before it is broadcast (see `pipeline::publish`). Typed here like the task rows.
use alloy::primitives::{B256, Bytes};
use sqlx::Row;

use super::{Store, StoreError};

/// What is recorded of a task's 0G Storage upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZgUploadRecord {
    /// The 0G Storage root of the sealed file.
    pub root: B256,
    /// The signed Flow submission (hash, raw transaction), once signed.
    pub submission: Option<(B256, Bytes)>,
}

fn corrupt(task: &str, column: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        task: Some(task.to_owned()),
        column,
        reason: reason.to_string(),
    }
}

impl Store {
    /// The recorded 0G Storage upload of task `id`, if any.
    pub async fn zg_upload(&self, id: &str) -> Result<Option<ZgUploadRecord>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT root, submission_tx, submission_raw FROM zg_uploads WHERE task_id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let root: String = row.try_get("root")?;
        let root: B256 = root.parse().map_err(|e| corrupt(id, "root", e))?;
        let tx: Option<String> = row.try_get("submission_tx")?;
        let raw: Option<Vec<u8>> = row.try_get("submission_raw")?;
        let submission = match (tx, raw) {
            (Some(tx), Some(raw)) => Some((
                tx.parse().map_err(|e| corrupt(id, "submission_tx", e))?,
                Bytes::from(raw),
            )),
            (None, None) => None,
            _ => return Err(corrupt(id, "submission_raw", "hash and bytes not both set")),
        };
        Ok(Some(ZgUploadRecord { root, submission }))
    }

    /// Records the signed Flow submission of task `id`'s file `root` (before it is broadcast).
    pub async fn zg_record_submission(
        &self,
        id: &str,
        root: B256,
        tx: B256,
        raw: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO zg_uploads (task_id, root, submission_tx, submission_raw, updated_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (task_id) DO UPDATE SET root = excluded.root,
               submission_tx = excluded.submission_tx, submission_raw = excluded.submission_raw,
               updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(format!("{root:#x}"))
        .bind(format!("{tx:#x}"))
        .bind(raw)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets the Flow submission of task `id`: it can never be mined (its nonce went to another
    /// transaction) or it reverted, so nothing was paid for it.
    pub async fn zg_clear_submission(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE zg_uploads SET submission_tx = NULL, submission_raw = NULL, updated_at = ?
             WHERE task_id = ?",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets the root a task's deliverable is announced with (the 0G Storage root once uploaded
    /// there), before it is announced.
    pub async fn set_announced_root(
        &self,
        id: &str,
        root: B256,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET model_root_hash = ?, updated_at = ? WHERE id = ?")
            .bind(root.to_string())
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_submission_is_recorded_read_back_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        assert_eq!(s.zg_upload("t").await.unwrap(), None);
        let (root, tx) = (B256::repeat_byte(1), B256::repeat_byte(2));
        s.zg_record_submission("t", root, tx, &[9, 8, 7], 5)
            .await
            .unwrap();
        let got = s.zg_upload("t").await.unwrap().unwrap();
        assert_eq!(got.root, root);
        assert_eq!(got.submission, Some((tx, Bytes::from(vec![9, 8, 7]))));
        s.zg_clear_submission("t", 6).await.unwrap();
        assert_eq!(s.zg_upload("t").await.unwrap().unwrap().submission, None);
    }
}
