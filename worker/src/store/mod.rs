//! The task store: SQLite through sqlx (WAL, migrations embedded from `worker/migrations`).
//!
//! Every state change is a committed row before the worker acts on it, and every transition is a
//! compare-and-set on the current state, so two actors (the pipeline and a cancel request) can
//! never both win. Times are inputs (`now` in unix seconds), never read here.
//!
//! The rows are typed at this boundary ([`task`]): callers get and give [`Task`] / [`NewTask`]
//! values, never the stored text. Which states a statement concerns comes from the predicates of
//! [`TaskState`] (`is_pending`, `is_cancellable`…), never from a list of names written in SQL.
use sealtune_protocol::dataset_type::DatasetType;
use std::path::Path;

use alloy::primitives::{Address, B256, U256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

pub mod checkpoint;
pub mod intake;
pub mod report;
pub mod task;
pub mod zg_upload;

pub use task::{DatasetHash, NewTask, StatePredicate, Task, TaskState, TrainingParams};
use task::{address_text, corrupt, public_key_text, sql_list, sql_set, task_from_row};
pub use zg_upload::ZgUploadRecord;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row holds something this version cannot read.
    #[error("corrupt task row{}: column `{column}`: {reason}", .task.as_deref().map(|t| format!(" {t}")).unwrap_or_default())]
    Corrupt {
        /// The task, when its id could be read.
        task: Option<String>,
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The user already has a task that is not finished.
    #[error(
        "user {user:#x} already has an unfinished task {task} (state {state}); wait for it to finish or cancel it"
    )]
    UnfinishedTask {
        /// The user.
        user: Address,
        /// Their task.
        task: String,
        /// Its state.
        state: TaskState,
    },
    /// The create-task request was used before: its user and nonce, or its signature, belong to an
    /// earlier task (requests are usable once per provider, ever: after a cancel, a failed setup or
    /// a restart too).
    #[error(
        "this create-task request was already used (task {task}): a signature and a nonce are usable once; sign a new request with a new nonce"
    )]
    Reused {
        /// The task that used it.
        task: String,
    },
    /// The queue is full.
    #[error("the provider's queue is full ({0} tasks); try again later")]
    QueueFull(u32),
    /// The queue is not empty and the request did not set `wait`.
    #[error(
        "the provider is busy ({0} tasks queued or running); send `wait: true` to join the queue"
    )]
    Busy(u64),
}

/// Sort order of a task list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

/// The SQLite task store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    insert_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Opens (creating) the database at `path` in WAL mode and runs the migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store {
            pool,
            insert_lock: Default::default(),
        })
    }

    /// Inserts a new task in `Init`, enforcing in one transaction: a request (signature, user and
    /// nonce) used once ever, one unfinished task per user, the queue limit, and `wait` for a
    /// non-empty queue. The request is recorded as used with the task.
    pub async fn insert_task(
        &self,
        task: &NewTask,
        queue_size: u32,
        now: i64,
    ) -> Result<(), StoreError> {
        // One process owns the database: a mutex makes the checks and the insert one serial step.
        let _serial = self.insert_lock.lock().await;
        // IMMEDIATE: take the write lock up front; a deferred read-then-write transaction fails with
        // SQLITE_BUSY when the pipeline commits in between.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let user = address_text(task.user_address);
        if let Some(earlier) =
            intake::used_by(&mut tx, task.user_address, task.nonce, &task.signature).await?
        {
            return Err(StoreError::Reused { task: earlier });
        }
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, progress FROM tasks WHERE user_address = ? AND progress IN {} LIMIT 1",
            sql_set(TaskState::is_unfinished)
        )))
        .bind(&user)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let state: String = row.try_get("progress")?;
            return Err(StoreError::UnfinishedTask {
                user: task.user_address,
                task: row.try_get("id")?,
                state: state
                    .parse()
                    .map_err(|e: sealtune_protocol::task::UnknownState| {
                        corrupt("progress", e.to_string())
                    })?,
            });
        }
        let pending: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM tasks WHERE progress IN {}",
            sql_set(TaskState::is_pending)
        )))
        .fetch_one(&mut *tx)
        .await?;
        if pending >= i64::from(queue_size) {
            return Err(StoreError::QueueFull(queue_size));
        }
        if pending > 0 && !task.wait {
            return Err(StoreError::Busy(pending as u64));
        }
        sqlx::query(
            "INSERT INTO tasks (id, user_address, created_at, updated_at, pre_trained_model_hash, dataset_hash,
               training_params, fee, nonce, signature, user_public_key, fee_ceiling, wait, model_type, progress,
               dataset_type)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&task.id)
        .bind(&user)
        .bind(now)
        .bind(now)
        .bind(task.pre_trained_model_hash.as_str())
        .bind(task.dataset_hash.as_str())
        .bind(task.training_params.as_str())
        .bind(task.fee.to_string())
        .bind(task.nonce.to_string())
        .bind(&task.signature)
        .bind(public_key_text(&task.user_public_key))
        .bind(task.fee_ceiling.map(|c| c.to_string()))
        .bind(i64::from(task.wait))
        .bind(task.model_type.as_str())
        .bind(TaskState::Init.as_str())
        .bind(task.dataset_type.as_ref().map(DatasetType::canonical_json))
        .execute(&mut *tx)
        .await?;
        intake::mark_used(
            &mut tx,
            task.user_address,
            task.nonce,
            &task.signature,
            &task.id,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One task.
    pub async fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query("SELECT * FROM tasks WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    /// A user's tasks; `latest` keeps only the newest.
    pub async fn list_user(
        &self,
        user: Address,
        latest: bool,
        order: Order,
    ) -> Result<Vec<Task>, StoreError> {
        let dir = if latest || order == Order::Desc {
            "DESC"
        } else {
            "ASC"
        };
        let limit = if latest { 1 } else { 1000 };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM tasks WHERE user_address = ? ORDER BY created_at {dir}, rowid {dir} LIMIT {limit}"
        )))
        .bind(address_text(user))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Tasks queued or running.
    pub async fn pending_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM tasks WHERE progress IN {}",
            sql_set(TaskState::is_pending)
        )))
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    /// Tasks in a state for which `pred` holds (e.g. [`TaskState::is_pending`]), oldest first.
    pub async fn in_states(&self, pred: StatePredicate) -> Result<Vec<Task>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM tasks WHERE progress IN {} ORDER BY created_at ASC, rowid ASC",
            sql_set(pred)
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Compare-and-set the state: moves `id` to `to` only if it is in one of `from`. Returns whether it moved.
    pub async fn transition(
        &self,
        id: &str,
        from: &[TaskState],
        to: TaskState,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE tasks SET progress = ?, updated_at = ? WHERE id = ? AND progress IN {}",
            sql_list(from)
        )))
        .bind(to.as_str())
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks `id` failed with `reason` unless it already finished or failed; logs the reason.
    pub async fn fail(&self, id: &str, reason: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE tasks SET progress = ?, fail_reason = ?, updated_at = ?
             WHERE id = ? AND progress IN {}",
            sql_set(TaskState::is_unfinished)
        )))
        .bind(TaskState::Failed.as_str())
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            self.log(id, &format!("task failed: {reason}"), now * 1000)
                .await?;
        }
        Ok(done.rows_affected() == 1)
    }

    /// Cancels `id` if it is still [cancellable](TaskState::is_cancellable) (training has not
    /// started). Returns whether it did.
    pub async fn cancel(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE tasks SET progress = ?, fail_reason = 'cancelled by the customer', updated_at = ?
             WHERE id = ? AND progress IN {}",
            sql_set(TaskState::is_cancellable)
        )))
        .bind(TaskState::Failed.as_str())
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks `id`, which must be in `Training` and not stopped yet, as stopped during training for
    /// `reason` (a cancel, or the funds retrieved). Returns whether it did (the first reason wins).
    pub async fn cancel_training(
        &self,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET cancelled = ?, updated_at = ? WHERE id = ? AND progress = ? AND cancelled IS NULL",
        )
        .bind(reason)
        .bind(now)
        .bind(id)
        .bind(TaskState::Training.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a task stopped during training: `Training` → `Failed` with `reason`, recording what its
    /// settlement charged (`fee`, from the chain's `FeesSettled`; zero and no `tx` when nothing was
    /// settled). Returns whether it moved.
    pub async fn finish_cancelled(
        &self,
        id: &str,
        reason: &str,
        tx: Option<B256>,
        fee: U256,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET progress = ?, fail_reason = ?, settle_tx = ?, settled_fee = ?,
             settled_acknowledged = 0, updated_at = ? WHERE id = ? AND progress = ?",
        )
        .bind(TaskState::Failed.as_str())
        .bind(reason)
        .bind(tx.map(|t| t.to_string()))
        .bind(fee.to_string())
        .bind(now)
        .bind(id)
        .bind(TaskState::Training.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            self.log(id, &format!("task failed: {reason}"), now * 1000)
                .await?;
        }
        Ok(done.rows_affected() == 1)
    }

    /// Records the setup results.
    pub async fn set_setup(
        &self,
        id: &str,
        tokens: u64,
        fee: U256,
        now: i64,
    ) -> Result<(), StoreError> {
        let tokens =
            i64::try_from(tokens).map_err(|_| corrupt("token_count", tokens.to_string()))?;
        sqlx::query("UPDATE tasks SET token_count = ?, task_fee = ?, updated_at = ? WHERE id = ?")
            .bind(tokens)
            .bind(fee.to_string())
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Counts one more training attempt; returns the new count.
    pub async fn bump_attempts(&self, id: &str) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "UPDATE tasks SET training_attempts = training_attempts + 1 WHERE id = ? RETURNING training_attempts",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// `Training` → `Trained`, unless the task was stopped during training
    /// ([`Store::cancel_training`]): a cancel and the end of training cannot both win. Returns
    /// whether it moved.
    pub async fn trained(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET progress = ?, updated_at = ? WHERE id = ? AND progress = ? AND cancelled IS NULL",
        )
        .bind(TaskState::Trained.as_str())
        .bind(now)
        .bind(id)
        .bind(TaskState::Training.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a task stopped in `Training` by a graceful stop back in `SetUp`, without counting the
    /// stopped attempt (it trains again at the next start). A task stopped by a cancel stays in
    /// `Training` (its cancel is settled at the next start). Returns whether it moved.
    pub async fn requeue(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET progress = ?, training_attempts = max(training_attempts - 1, 0),
             updated_at = ? WHERE id = ? AND progress = ? AND cancelled IS NULL",
        )
        .bind(TaskState::SetUp.as_str())
        .bind(now)
        .bind(id)
        .bind(TaskState::Training.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a new model key (ECIES-wrapped to the customer), and the tag digest of the file
    /// sealed with it once that file exists, clearing any earlier seal (the seal columns read `''`:
    /// not sealed yet). Committed before the file sealed with the key can be used.
    pub async fn set_model_key(
        &self,
        id: &str,
        encrypted_secret: &[u8],
        seal_tag_digest: Option<B256>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET deliverable_path = '', model_root_hash = '', encrypted_secret = ?,
             tee_signer = '', seal_tag_digest = ?, updated_at = ? WHERE id = ?",
        )
        .bind(hex::encode(encrypted_secret))
        .bind(seal_tag_digest.map_or_else(String::new, |d| d.to_string()))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the sealed deliverable (before it is announced on chain).
    pub async fn set_sealed(
        &self,
        id: &str,
        path: &Path,
        root: B256,
        encrypted_secret: &[u8],
        tee_signer: Address,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write_seal(
            id,
            &path.display().to_string(),
            &root.to_string(),
            encrypted_secret,
            &tee_signer.to_string(),
            now,
        )
        .await
    }

    async fn write_seal(
        &self,
        id: &str,
        path: &str,
        root: &str,
        encrypted_secret: &[u8],
        tee_signer: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET deliverable_path = ?, model_root_hash = ?, encrypted_secret = ?, tee_signer = ?,
             updated_at = ? WHERE id = ?",
        )
        .bind(path)
        .bind(root)
        .bind(hex::encode(encrypted_secret))
        .bind(tee_signer)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the delivery (on chain) and moves to `Delivered`.
    pub async fn set_delivered(
        &self,
        id: &str,
        index: Option<i64>,
        at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET progress = ?, deliver_index = ?, deliver_time = ?, updated_at = ?
             WHERE id = ? AND progress = ?",
        )
        .bind(TaskState::Delivered.as_str())
        .bind(index)
        .bind(at)
        .bind(now)
        .bind(id)
        .bind(TaskState::Delivering.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the settlement and moves a [settling](TaskState::is_settling) task to `Finished`.
    pub async fn set_settled(
        &self,
        id: &str,
        tx: Option<B256>,
        fee: U256,
        acknowledged: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE tasks SET progress = ?, settle_tx = ?, settled_fee = ?, settled_acknowledged = ?,
             updated_at = ? WHERE id = ? AND progress IN {}",
            sql_set(TaskState::is_settling)
        )))
        .bind(TaskState::Finished.as_str())
        .bind(tx.map(|t| t.to_string()))
        .bind(fee.to_string())
        .bind(i64::from(acknowledged))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the task's files deleted by retention.
    pub async fn set_cleaned(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET cleaned_at = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether a task other than `except` still needs the dataset `hash` (its files not cleaned
    /// yet): retention keeps a dataset shared by tasks until the last of them is cleaned.
    pub async fn dataset_in_use(
        &self,
        hash: &DatasetHash,
        except: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM tasks WHERE lower(dataset_hash) = lower(?) AND id != ? AND cleaned_at IS NULL LIMIT 1",
        )
        .bind(hash.as_str())
        .bind(except)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// [Ended](TaskState::is_ended) tasks whose files have not been cleaned and that ended before `before`.
    pub async fn cleanable(&self, before: i64) -> Result<Vec<Task>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM tasks WHERE progress IN {} AND cleaned_at IS NULL AND updated_at < ?",
            sql_set(TaskState::is_ended)
        )))
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Appends a line to the task's progress log (`at` in unix milliseconds).
    pub async fn log(&self, id: &str, message: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO task_log (task_id, at, message) VALUES (?, ?, ?)")
            .bind(id)
            .bind(at)
            .bind(message)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The task's log lines, oldest first: (unix ms, message).
    pub async fn read_log(&self, id: &str) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT at, message FROM task_log WHERE task_id = ? ORDER BY seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("at")?, r.try_get("message")?)))
            .collect()
    }

    /// A worker fact.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM worker_meta WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records a worker fact.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO worker_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::DataType;

    /// A dataset hash: 32 bytes of `byte`, written as `0x` + `hex` repeated.
    fn dataset(hex: &str) -> DatasetHash {
        DatasetHash::parse(&format!("0x{}", hex.repeat(32))).unwrap()
    }

    fn user(byte: u8) -> Address {
        Address::repeat_byte(byte)
    }

    fn new_task(id: &str, who: u8, wait: bool) -> NewTask {
        NewTask {
            id: id.into(),
            user_address: user(who),
            pre_trained_model_hash: crate::models::ModelRef::new("0x01"),
            dataset_hash: dataset("ab"),
            training_params: TrainingParams::new("{}"),
            fee: U256::ZERO,
            // A request per task: its own nonce and signature text.
            nonce: U256::from(u64::from(id.as_bytes()[0])),
            signature: format!("0x{id}"),
            user_public_key: k256::SecretKey::from_slice(&[7; 32]).unwrap().public_key(),
            fee_ceiling: None,
            dataset_type: None,
            wait,
            model_type: DataType::Text,
        }
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn queue_rules_hold() {
        let (_d, s) = store().await;
        s.insert_task(&new_task("a", 0xaa, false), 2, 1)
            .await
            .unwrap();
        // Same user again: refused, nothing inserted.
        let e = s
            .insert_task(&new_task("b", 0xaa, true), 2, 2)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::UnfinishedTask { .. }), "{e}");
        // Non-empty queue without wait: refused.
        let e = s
            .insert_task(&new_task("c", 0xbb, false), 2, 2)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Busy(1)), "{e}");
        s.insert_task(&new_task("c", 0xbb, true), 2, 3)
            .await
            .unwrap();
        let e = s
            .insert_task(&new_task("d", 0xcc, true), 2, 4)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::QueueFull(2)), "{e}");
        assert_eq!(s.pending_count().await.unwrap(), 2);
        assert!(s.get("b").await.unwrap().is_none());
    }

    /// A request is usable once, ever: its user and nonce, or its signature (in any encoding),
    /// after its task failed too; the same nonce of another user is another request.
    #[tokio::test]
    async fn a_request_is_usable_once_even_after_its_task_failed() {
        let (_d, s) = store().await;
        let key = k256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
        let sig = sealtune_protocol::request::personal_sign(&key, &B256::repeat_byte(1));
        let mut t = new_task("a", 0xaa, false);
        t.signature = sig.to_hex_v27();
        s.insert_task(&t, 5, 1).await.unwrap();
        assert!(s.fail("a", "setup failed", 2).await.unwrap());
        let mut again = t.clone();
        again.id = "b".into();
        let e = s.insert_task(&again, 5, 3).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Reused { task } if task == "a"),
            "{e}"
        );
        // The same signature with v as 0/1 and in upper case, under another nonce: still used.
        let mut bytes = sig.to_bytes_v27();
        bytes[64] -= 27;
        again.signature = format!("0x{}", hex::encode_upper(bytes));
        again.nonce = U256::from(1000u64);
        let e = s.insert_task(&again, 5, 3).await.unwrap_err();
        assert!(matches!(e, StoreError::Reused { .. }), "{e}");
        // Another user with the same nonce is another request.
        let mut other = new_task("c", 0xbb, false);
        other.nonce = t.nonce;
        s.insert_task(&other, 5, 4).await.unwrap();
    }

    /// A database made before the intake tables gets them on open: its tasks' requests are used
    /// and its tasks' datasets owned by their users.
    #[tokio::test]
    async fn the_intake_migration_works_on_an_existing_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let pool = SqlitePoolOptions::new()
                .connect_with(
                    SqliteConnectOptions::new()
                        .filename(&path)
                        .create_if_missing(true),
                )
                .await
                .unwrap();
            let mut first = sqlx::migrate!("./migrations");
            first.migrations = std::borrow::Cow::Owned(first.migrations[..1].to_vec());
            first.run(&pool).await.unwrap();
            sqlx::query(
                "INSERT INTO tasks (id, user_address, created_at, updated_at, pre_trained_model_hash, dataset_hash,
                   training_params, fee, nonce, signature, user_public_key, wait, model_type, progress)
                 VALUES ('old', ?, 1, 1, '0x01', ?, '{}', '0', '7', '0xSIG', '04', 0, 'text', 'Failed')",
            )
            .bind(address_text(user(0xaa)))
            .bind(format!("0X{}", "AB".repeat(32)))
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let s = Store::open(&path).await.unwrap();
        let mut t = new_task("new", 0xaa, false);
        t.nonce = U256::from(7u64);
        let e = s.insert_task(&t, 5, 2).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Reused { task } if task == "old"),
            "{e}"
        );
        assert_eq!(
            s.upload_owners(dataset("ab").hash()).await.unwrap(),
            vec![user(0xaa)]
        );
    }

    #[tokio::test]
    async fn transitions_are_compare_and_set() {
        let (_d, s) = store().await;
        s.insert_task(&new_task("a", 0xaa, false), 5, 1)
            .await
            .unwrap();
        assert!(
            s.transition("a", &[TaskState::Init], TaskState::SettingUp, 2)
                .await
                .unwrap()
        );
        assert!(
            !s.transition("a", &[TaskState::Init], TaskState::SettingUp, 3)
                .await
                .unwrap()
        );
        assert!(s.fail("a", "cancelled by the user", 4).await.unwrap());
        assert!(!s.fail("a", "again", 5).await.unwrap());
        let t = s.get("a").await.unwrap().unwrap();
        assert_eq!(t.progress, TaskState::Failed);
        assert_eq!(t.fail_reason.as_deref(), Some("cancelled by the user"));
        let log = s.read_log("a").await.unwrap();
        assert_eq!(log.len(), 1);
        assert!(log[0].1.contains("cancelled"));
        // A failed task no longer blocks the user.
        s.insert_task(&new_task("b", 0xaa, false), 5, 6)
            .await
            .unwrap();
        let latest = s.list_user(user(0xaa), true, Order::Asc).await.unwrap();
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].id, "b");
    }

    /// A cancel during training and the end of training cannot both win: once stopped, the task
    /// neither moves to `Trained` nor is requeued by a graceful stop; it ends `Failed` with the
    /// cancel's reason and what was charged.
    #[tokio::test]
    async fn a_cancel_during_training_wins_over_trained_and_requeue() {
        let (_d, s) = store().await;
        s.insert_task(&new_task("a", 0xaa, false), 5, 1)
            .await
            .unwrap();
        assert!(
            !s.cancel_training("a", "stop", 2).await.unwrap(),
            "not training yet"
        );
        assert!(
            s.transition("a", &[TaskState::Init], TaskState::Training, 2)
                .await
                .unwrap()
        );
        assert!(s.cancel_training("a", "cancelled", 3).await.unwrap());
        assert!(
            !s.cancel_training("a", "funds", 3).await.unwrap(),
            "the first reason wins"
        );
        assert!(!s.trained("a", 4).await.unwrap());
        assert!(!s.requeue("a", 4).await.unwrap());
        let t = s.get("a").await.unwrap().unwrap();
        assert_eq!(
            (t.progress, t.cancelled.as_deref()),
            (TaskState::Training, Some("cancelled"))
        );
        assert!(
            s.finish_cancelled("a", "cancelled; 3 charged", None, U256::from(3u64), 5)
                .await
                .unwrap()
        );
        let t = s.get("a").await.unwrap().unwrap();
        assert_eq!(t.progress, TaskState::Failed);
        assert_eq!(t.settled_fee, Some(U256::from(3u64)));
        assert_eq!(t.fail_reason.as_deref(), Some("cancelled; 3 charged"));
        // Not stopped: trained as ever.
        s.insert_task(&new_task("b", 0xaa, false), 5, 6)
            .await
            .unwrap();
        assert!(
            s.transition("b", &[TaskState::Init], TaskState::Training, 7)
                .await
                .unwrap()
        );
        assert!(s.trained("b", 8).await.unwrap());
    }

    /// Upload owners are recorded per address; an upload expires once it is old and no task whose
    /// files are kept uses it, and forgetting it forgets its owners.
    #[tokio::test]
    async fn uploads_have_owners_and_expire_when_unused() {
        let (_d, s) = store().await;
        let (ab, cd) = (dataset("ab").hash(), dataset("cd").hash());
        s.record_upload(ab, user(0xaa), 10).await.unwrap();
        s.record_upload(ab, user(0xbb), 12).await.unwrap();
        s.record_upload(cd, user(0xaa), 10).await.unwrap();
        let mut owners = s.upload_owners(ab).await.unwrap();
        owners.sort();
        assert_eq!(owners, vec![user(0xaa), user(0xbb)]);
        // ab is used by a task (not cleaned): kept; cd is not: expired once old.
        s.insert_task(&new_task("a", 0xaa, false), 5, 1)
            .await
            .unwrap();
        assert_eq!(s.expired_uploads(11).await.unwrap(), vec![cd]);
        assert_eq!(s.expired_uploads(100).await.unwrap(), vec![cd]);
        s.set_cleaned("a", 20).await.unwrap();
        let mut expired = s.expired_uploads(100).await.unwrap();
        expired.sort();
        assert_eq!(expired, vec![ab, cd]);
        // The newest upload counts.
        assert_eq!(s.expired_uploads(12).await.unwrap(), vec![cd]);
        s.forget_upload(cd).await.unwrap();
        assert!(s.upload_owners(cd).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_dataset_is_in_use_until_every_task_using_it_is_cleaned() {
        let (_d, s) = store().await;
        // Two users, the same dataset bytes, both ended.
        s.insert_task(&new_task("a", 0xaa, false), 5, 1)
            .await
            .unwrap();
        s.insert_task(&new_task("b", 0xbb, true), 5, 2)
            .await
            .unwrap();
        assert!(s.fail("a", "x", 3).await.unwrap() && s.fail("b", "y", 3).await.unwrap());
        assert!(
            s.dataset_in_use(&dataset("ab"), "a").await.unwrap(),
            "b still needs it"
        );
        // Case of the hex does not matter; a task does not keep its own dataset.
        assert!(s.dataset_in_use(&dataset("AB"), "a").await.unwrap());
        s.set_cleaned("b", 4).await.unwrap();
        assert!(
            !s.dataset_in_use(&dataset("ab"), "a").await.unwrap(),
            "only a is left"
        );
        assert!(!s.dataset_in_use(&dataset("cd"), "a").await.unwrap());
    }

    #[tokio::test]
    async fn state_names_round_trip_and_reopen_keeps_rows() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let s = Store::open(&path).await.unwrap();
            s.insert_task(&new_task("a", 0xaa, false), 5, 1)
                .await
                .unwrap();
            s.set_meta("tee_signer", "0x1").await.unwrap();
        }
        let s = Store::open(&path).await.unwrap();
        assert!(s.get("a").await.unwrap().is_some());
        assert_eq!(s.meta("tee_signer").await.unwrap().as_deref(), Some("0x1"));
    }

    /// Every SQL state set is its predicate: for each state, `? IN <set>` in SQLite says exactly
    /// what the predicate says.
    #[tokio::test]
    async fn sql_state_sets_equal_the_predicates() {
        let (_d, s) = store().await;
        let predicates: [(&str, StatePredicate); 7] = [
            ("is_pending", TaskState::is_pending),
            ("is_unfinished", TaskState::is_unfinished),
            ("is_ended", TaskState::is_ended),
            ("is_cancellable", TaskState::is_cancellable),
            ("is_settling", TaskState::is_settling),
            ("is_delivered", TaskState::is_delivered),
            ("is_sealed_unsettled", TaskState::is_sealed_unsettled),
        ];
        for (name, pred) in predicates {
            for state in TaskState::ALL {
                let in_set: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT ? IN {}",
                    sql_set(pred)
                )))
                .bind(state.as_str())
                .fetch_one(&s.pool)
                .await
                .unwrap();
                assert_eq!(in_set, pred(state), "{name}({state})");
            }
        }
        // The empty set matches nothing.
        let none: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT 'Init' IN {}",
            sql_list(&[])
        )))
        .fetch_one(&s.pool)
        .await
        .unwrap();
        assert!(!none);
    }

    /// The typed row is written as the text every earlier version wrote, and read back equal.
    #[tokio::test]
    async fn typed_rows_keep_the_stored_text_formats() {
        let (_d, s) = store().await;
        let mut t = new_task("a", 0xab, false);
        t.user_address = "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"
            .parse()
            .unwrap();
        t.fee = U256::from(1234u64);
        t.nonce = U256::from(77u64);
        t.fee_ceiling = Some(U256::from(5000u64));
        t.dataset_type = Some(
            r#"{"format":"Q: {instruction}","field_output":"a"}"#
                .parse()
                .unwrap(),
        );
        s.insert_task(&t, 5, 1).await.unwrap();
        let root = B256::repeat_byte(0xcd);
        let signer: Address = "0x00000000000000000000000000000000000000Aa"
            .parse()
            .unwrap();
        s.set_setup("a", 42, U256::from(999u64), 2).await.unwrap();
        s.set_sealed("a", Path::new("/x/y"), root, &[1, 2, 255], signer, 3)
            .await
            .unwrap();
        let text = |col: &'static str| {
            let pool = s.pool.clone();
            async move {
                sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(format!(
                    "SELECT CAST({col} AS TEXT) FROM tasks WHERE id = 'a'"
                )))
                .fetch_one(&pool)
                .await
                .unwrap()
                .unwrap_or_default()
            }
        };
        assert_eq!(
            text("user_address").await,
            "0xabcdef0123456789abcdef0123456789abcdef01"
        );
        assert_eq!(text("fee").await, "1234");
        assert_eq!(text("nonce").await, "77");
        assert_eq!(text("fee_ceiling").await, "5000");
        // The canonical JSON (sorted keys): what a request v2 signature hashes.
        assert_eq!(
            text("dataset_type").await,
            r#"{"field_output":"a","format":"Q: {instruction}"}"#
        );
        assert_eq!(text("task_fee").await, "999");
        assert_eq!(text("dataset_hash").await, format!("0x{}", "ab".repeat(32)));
        assert_eq!(
            text("model_root_hash").await,
            format!("0x{}", "cd".repeat(32))
        );
        assert_eq!(text("encrypted_secret").await, "0102ff");
        assert_eq!(text("tee_signer").await, signer.to_checksum(None));
        assert_eq!(text("model_type").await, "text");
        assert_eq!(text("progress").await, "Init");
        let pk = text("user_public_key").await;
        assert!(pk.len() == 130 && pk.starts_with("04"), "{pk}");

        let got = s.get("a").await.unwrap().unwrap();
        assert_eq!(got.user_address, t.user_address);
        assert_eq!((got.fee, got.nonce), (t.fee, t.nonce));
        assert_eq!(got.fee_ceiling, t.fee_ceiling);
        assert_eq!(got.dataset_type, t.dataset_type);
        assert_eq!(got.dataset_hash, t.dataset_hash);
        assert_eq!(got.user_public_key, t.user_public_key);
        assert_eq!(got.task_fee, Some(U256::from(999u64)));
        assert_eq!(got.token_count, Some(42));
        assert_eq!(got.model_root_hash, Some(root));
        assert_eq!(got.tee_signer, Some(signer));
        assert_eq!(
            got.encrypted_secret.as_ref().map(|b| &b[..]),
            Some(&[1u8, 2, 255][..])
        );
        assert_eq!(got.model_type, DataType::Text);

        // Before the seal, the seal columns read '' and are typed as "not yet".
        s.set_model_key("a", &[9], None, 4).await.unwrap();
        assert_eq!(text("model_root_hash").await, "");
        let got = s.get("a").await.unwrap().unwrap();
        assert_eq!(
            (got.model_root_hash, got.tee_signer, got.deliverable_path),
            (None, None, None)
        );
        assert_eq!(got.seal_tag_digest, None);
        let digest = B256::repeat_byte(0x5e);
        s.set_model_key("a", &[9], Some(digest), 5).await.unwrap();
        assert_eq!(
            text("seal_tag_digest").await,
            format!("0x{}", "5e".repeat(32))
        );
        assert_eq!(
            s.get("a").await.unwrap().unwrap().seal_tag_digest,
            Some(digest)
        );
        assert_eq!(
            got.encrypted_secret.as_ref().map(|b| &b[..]),
            Some(&[9u8][..])
        );
    }

    #[tokio::test]
    async fn a_row_that_does_not_parse_is_corrupt_naming_the_column() {
        for (column, bad) in [
            ("nonce", "0x1"),
            ("user_address", "alice"),
            ("dataset_hash", "0x02"),
            ("model_type", "video"),
            ("progress", "Sleeping"),
            ("task_fee", "-1"),
            ("model_root_hash", "0xzz"),
        ] {
            let (_d, s) = store().await;
            s.insert_task(&new_task("a", 0xaa, false), 5, 1)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE tasks SET {column} = ? WHERE id = 'a'"
            )))
            .bind(bad)
            .execute(&s.pool)
            .await
            .unwrap();
            match s.get("a").await {
                Err(StoreError::Corrupt { column: c, .. }) => assert_eq!(c, column),
                other => panic!("{column} = {bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn customer_addresses_are_written_in_lowercase_hex() {
        let a: Address = "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"
            .parse()
            .unwrap();
        assert_eq!(task::address_text(a), a.to_string().to_lowercase());
    }

    /// A model entry as a provider writes it in its config.
    fn model(toml_lines: &str) -> crate::models::ModelConfig {
        toml::from_str(&format!(
            "name = \"m\"\nhash = \"0x{}\"\ntraining_script = \"s.py\"\n{toml_lines}",
            "11".repeat(32)
        ))
        .unwrap()
    }

    #[test]
    fn training_params_are_checked_against_the_models_schema() {
        let lora = TrainingParams::new(
            r#"{"neftune_noise_alpha":5,"num_train_epochs":3,"per_device_train_batch_size":2,"learning_rate":0.0002,"max_steps":-1}"#,
        );
        let (lora_model, free_model) = (model(""), model("params = \"free\""));
        assert_eq!(lora.epochs(&lora_model), Ok(3));
        assert_eq!(lora.epochs(&free_model), Ok(3));
        let free = TrainingParams::new(r#"{"num_train_epochs":2,"other":1}"#);
        assert_eq!(free.epochs(&free_model), Ok(2));
        assert!(free.epochs(&lora_model).is_err());
        assert_eq!(free.as_str(), r#"{"num_train_epochs":2,"other":1}"#);
    }

    /// The model's declared `lora_ranges` decide which LoRA options a task may carry: an `r` the
    /// provider does not offer is refused with the key, the value and the declared range, while
    /// the same `r` passes on a model without a declaration (the defaults).
    #[test]
    fn an_r_outside_the_models_declared_range_is_refused() {
        let params = TrainingParams::new(
            r#"{"neftune_noise_alpha":0,"num_train_epochs":2,"per_device_train_batch_size":2,"learning_rate":0.0002,"max_steps":-1,"lora_config":{"r":32}}"#,
        );
        let narrow = model("[lora_ranges]\nr = [1, 16]\ntarget_modules = [\"q_proj\", \"v_proj\"]");
        assert!(narrow.problems().iter().all(|p| !p.contains("lora_ranges")));
        let e = params.epochs(&narrow).unwrap_err();
        assert!(
            e.contains("`r` = 32: this provider allows 1 to 16 for this model"),
            "{e}"
        );
        assert_eq!(params.epochs(&model("")), Ok(2));
        let reversed = model("[lora_ranges]\nr = [16, 1]");
        assert!(
            reversed
                .problems()
                .iter()
                .any(|p| p.contains("`lora_ranges` `r`")),
            "{:?}",
            reversed.problems()
        );
    }
}
