//! Retention, in its own lane: the files of tasks that ended more than `limits.retention` ago are
//! deleted (the task directory, the sealed model, its sealed checkpoints and their rows, and the
//! dataset unless another task still needs
//! it or it was uploaded again since), and the row records when. Uploads that no task kept uses and
//! that were last uploaded more than `limits.retention` ago are deleted too, with their owners.
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::Worker;
use crate::store::Task;

/// Runs retention forever: deletes the files of tasks that ended more than `limits.retention` ago.
pub async fn run_retention_lane(worker: Arc<Worker>, shutdown: CancellationToken) {
    loop {
        let cutoff = worker.clock.now() - worker.config.limits.retention.0.as_secs() as i64;
        match worker.store.cleanable(cutoff).await {
            Ok(tasks) => {
                for task in tasks {
                    clean(&worker, &task).await;
                }
            }
            Err(crate::store::StoreError::Corrupt { task: Some(id), .. }) => {
                // A row this version cannot read: its directory goes, the row is marked cleaned
                // so that it does not block retention at every poll.
                let _ = tokio::fs::remove_dir_all(worker.task_dir(&id)).await;
                let _ = worker.store.set_cleaned(&id, worker.clock.now()).await;
                tracing::error!(
                    task = id,
                    "retention: unreadable task row; its directory was deleted"
                );
            }
            Err(e) => tracing::error!("store: {e}"),
        }
        expire_uploads(&worker, cutoff).await;
        tokio::select! {
            _ = tokio::time::sleep(retention_period(worker.config.limits.retention.0)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Deletes one ended task's files and records it (best effort: what cannot be deleted now is not
/// retried).
async fn clean(worker: &Worker, task: &Task) {
    super::checkpoint::discard(worker, &task.id).await;
    let _ = tokio::fs::remove_dir_all(worker.task_dir(&task.id)).await;
    if let Some(root) = task.model_root_hash {
        let _ = worker.files.remove(&root).await;
    }
    let hash = task.dataset_hash.hash();
    let shared = worker
        .store
        .dataset_in_use(&task.dataset_hash, &task.id)
        .await
        .unwrap_or(true);
    let renewed = worker
        .files
        .touched_since(&hash, task.updated_at)
        .unwrap_or(false);
    if !shared && !renewed {
        let _ = worker.files.remove(&hash).await;
    }
    let _ = worker.store.set_cleaned(&task.id, worker.clock.now()).await;
    worker
        .task_log(&task.id, "retention period over: files deleted")
        .await;
}

/// Deletes the uploads last uploaded before `cutoff` that no task whose files are kept uses (best
/// effort: what fails now is tried again at the next period).
async fn expire_uploads(worker: &Worker, cutoff: i64) {
    let expired = match worker.store.expired_uploads(cutoff).await {
        Ok(hashes) => hashes,
        Err(e) => {
            tracing::error!("store: {e}");
            return;
        }
    };
    for hash in expired {
        match worker.files.remove(&hash).await {
            Ok(()) => {
                if let Err(e) = worker.store.forget_upload(hash).await {
                    tracing::error!("store: {e}");
                }
                tracing::info!(dataset = %hash, "retention: unused upload deleted");
            }
            Err(e) => tracing::error!(dataset = %hash, "retention: cannot delete the upload: {e}"),
        }
    }
}

/// How often the retention lane looks for expired files: every minute, or as often as the
/// retention period itself when it is shorter (at least once a second), so a short retention
/// (tests, a privacy-minded provider) is honoured within about one period instead of a minute.
pub fn retention_period(retention: Duration) -> Duration {
    retention.clamp(Duration::from_secs(1), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_lane_period_is_a_minute_or_the_retention_when_shorter() {
        assert_eq!(
            retention_period(Duration::from_secs(3 * 86_400)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retention_period(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retention_period(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(retention_period(Duration::ZERO), Duration::from_secs(1));
    }
}
