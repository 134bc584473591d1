//! The `task_checkpoints` table: one row per sealed checkpoint of a task
//! (`pipeline::checkpoint` owns the files and the keys; this boundary stores typed rows).
use sqlx::Row;

use super::{Store, StoreError};

/// One sealed checkpoint as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRow {
    /// The global step it holds.
    pub step: u64,
    /// When it was sealed (unix seconds).
    pub created_at: i64,
    /// The sealed file's length.
    pub sealed_bytes: u64,
    /// The last loss reported at or before `step`.
    pub loss: Option<f64>,
    /// keccak256 of the sealed file's chunk tags.
    pub tag_digest: [u8; 32],
    /// The file key wrapped with the task's checkpoint key.
    pub wrapped_key: Vec<u8>,
}

impl Store {
    /// Records a sealed checkpoint (replacing a row of the same step: an earlier attempt's).
    pub async fn add_checkpoint(
        &self,
        task_id: &str,
        row: &CheckpointRow,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR REPLACE INTO task_checkpoints
             (task_id, step, created_at, sealed_bytes, loss, tag_digest, wrapped_key)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(task_id)
        .bind(i64::try_from(row.step).unwrap_or(i64::MAX))
        .bind(row.created_at)
        .bind(i64::try_from(row.sealed_bytes).unwrap_or(i64::MAX))
        .bind(row.loss)
        .bind(row.tag_digest.as_slice())
        .bind(row.wrapped_key.as_slice())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The task's checkpoints, oldest first.
    pub async fn checkpoints(&self, task_id: &str) -> Result<Vec<CheckpointRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, created_at, sealed_bytes, loss, tag_digest, wrapped_key
             FROM task_checkpoints WHERE task_id = ? ORDER BY step",
        )
        .bind(task_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| row_of(task_id, r)).collect()
    }

    /// Forgets the checkpoint of `step` (its file is deleted by the caller).
    pub async fn remove_checkpoint(&self, task_id: &str, step: u64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM task_checkpoints WHERE task_id = ? AND step = ?")
            .bind(task_id)
            .bind(i64::try_from(step).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets every checkpoint of the task.
    pub async fn remove_checkpoints(&self, task_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM task_checkpoints WHERE task_id = ?")
            .bind(task_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn row_of(task_id: &str, r: &sqlx::sqlite::SqliteRow) -> Result<CheckpointRow, StoreError> {
    let corrupt = |column: &'static str| StoreError::Corrupt {
        task: Some(task_id.to_owned()),
        column,
        reason: "out of range in task_checkpoints".to_owned(),
    };
    let digest: Vec<u8> = r.try_get("tag_digest")?;
    Ok(CheckpointRow {
        step: u64::try_from(r.try_get::<i64, _>("step")?).map_err(|_| corrupt("step"))?,
        created_at: r.try_get("created_at")?,
        sealed_bytes: u64::try_from(r.try_get::<i64, _>("sealed_bytes")?)
            .map_err(|_| corrupt("sealed_bytes"))?,
        loss: r.try_get("loss")?,
        tag_digest: digest.try_into().map_err(|_| corrupt("tag_digest"))?,
        wrapped_key: r.try_get("wrapped_key")?,
    })
}
