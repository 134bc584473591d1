//! The task store: SQLite through sqlx (WAL, migrations embedded from `worker/migrations`).
//!
//! Every state change is a committed row before the worker acts on it, and every transition is a
//! compare-and-set on the current state, so two actors (the pipeline and a cancel request) can
//! never both win. Times are inputs (`now` in unix seconds), never read here.
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

/// The states of PROTOCOL.md §2, in order, plus `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TaskState {
    /// Accepted, queued.
    Init,
    /// Fetching, counting, checking.
    SettingUp,
    /// Ready to train.
    SetUp,
    /// The script runs.
    Training,
    /// The script finished; the output waits to be sealed.
    Trained,
    /// Sealing, storing, announcing on chain.
    Delivering,
    /// On chain; waiting for the customer's acknowledgement.
    Delivered,
    /// Acknowledged; settlement in flight.
    UserAcknowledged,
    /// Settled.
    Finished,
    /// Failed (reason in `fail_reason` and the log).
    Failed,
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 10] = [
        TaskState::Init,
        TaskState::SettingUp,
        TaskState::SetUp,
        TaskState::Training,
        TaskState::Trained,
        TaskState::Delivering,
        TaskState::Delivered,
        TaskState::UserAcknowledged,
        TaskState::Finished,
        TaskState::Failed,
    ];
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Init => "Init",
            TaskState::SettingUp => "SettingUp",
            TaskState::SetUp => "SetUp",
            TaskState::Training => "Training",
            TaskState::Trained => "Trained",
            TaskState::Delivering => "Delivering",
            TaskState::Delivered => "Delivered",
            TaskState::UserAcknowledged => "UserAcknowledged",
            TaskState::Finished => "Finished",
            TaskState::Failed => "Failed",
        }
    }
    /// Not yet settled or failed.
    pub fn is_unfinished(self) -> bool {
        !matches!(self, TaskState::Finished | TaskState::Failed)
    }
    /// Queued or running (counts toward `/v1/task/pending` and the queue limit).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            TaskState::Init
                | TaskState::SettingUp
                | TaskState::SetUp
                | TaskState::Training
                | TaskState::Trained
                | TaskState::Delivering
        )
    }
    /// The customer may still cancel (training has not started).
    pub fn is_cancellable(self) -> bool {
        matches!(
            self,
            TaskState::Init | TaskState::SettingUp | TaskState::SetUp
        )
    }
}

impl FromStr for TaskState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown task state `{s}`")))
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    #[error("corrupt task row: {0}")]
    Corrupt(String),
    /// The user already has a task that is not finished.
    #[error(
        "user {user} already has an unfinished task {task} (state {state}); wait for it to finish or cancel it"
    )]
    UnfinishedTask {
        /// The user.
        user: String,
        /// Their task.
        task: String,
        /// Its state.
        state: TaskState,
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

/// A new task, as validated by the API.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// UUID with dashes.
    pub id: String,
    /// Lowercase `0x` address.
    pub user_address: String,
    /// `preTrainedModelHash` as sent.
    pub pre_trained_model_hash: String,
    /// `datasetHash` as sent.
    pub dataset_hash: String,
    /// `trainingParams` (a JSON string).
    pub training_params: String,
    /// `fee` as sent.
    pub fee: String,
    /// `nonce` as sent.
    pub nonce: String,
    /// `signature` as sent.
    pub signature: String,
    /// The recovered public key, hex.
    pub user_public_key: String,
    /// The signed fee ceiling, decimal.
    pub fee_ceiling: Option<String>,
    /// `wait`.
    pub wait: bool,
    /// `text` / `image`.
    pub model_type: String,
}

/// A task row.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct Task {
    pub id: String,
    pub user_address: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub pre_trained_model_hash: String,
    pub dataset_hash: String,
    pub training_params: String,
    pub fee: String,
    pub nonce: String,
    pub signature: String,
    pub user_public_key: String,
    pub fee_ceiling: Option<String>,
    pub wait: bool,
    pub model_type: String,
    pub progress: TaskState,
    pub fail_reason: Option<String>,
    pub token_count: Option<i64>,
    pub task_fee: Option<String>,
    pub training_attempts: i64,
    pub deliverable_path: Option<String>,
    pub model_root_hash: Option<String>,
    pub encrypted_secret: Option<String>,
    pub tee_signer: Option<String>,
    pub deliver_index: Option<i64>,
    pub deliver_time: Option<i64>,
    pub settle_tx: Option<String>,
    pub settled_fee: Option<String>,
    pub settled_acknowledged: Option<bool>,
    pub cleaned_at: Option<i64>,
}

fn task_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Task, StoreError> {
    let progress: String = row.try_get("progress")?;
    Ok(Task {
        id: row.try_get("id")?,
        user_address: row.try_get("user_address")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        pre_trained_model_hash: row.try_get("pre_trained_model_hash")?,
        dataset_hash: row.try_get("dataset_hash")?,
        training_params: row.try_get("training_params")?,
        fee: row.try_get("fee")?,
        nonce: row.try_get("nonce")?,
        signature: row.try_get("signature")?,
        user_public_key: row.try_get("user_public_key")?,
        fee_ceiling: row.try_get("fee_ceiling")?,
        wait: row.try_get::<i64, _>("wait")? != 0,
        model_type: row.try_get("model_type")?,
        progress: progress.parse()?,
        fail_reason: row.try_get("fail_reason")?,
        token_count: row.try_get("token_count")?,
        task_fee: row.try_get("task_fee")?,
        training_attempts: row.try_get("training_attempts")?,
        deliverable_path: row.try_get("deliverable_path")?,
        model_root_hash: row.try_get("model_root_hash")?,
        encrypted_secret: row.try_get("encrypted_secret")?,
        tee_signer: row.try_get("tee_signer")?,
        deliver_index: row.try_get("deliver_index")?,
        deliver_time: row.try_get("deliver_time")?,
        settle_tx: row.try_get("settle_tx")?,
        settled_fee: row.try_get("settled_fee")?,
        settled_acknowledged: row
            .try_get::<Option<i64>, _>("settled_acknowledged")?
            .map(|v| v != 0),
        cleaned_at: row.try_get("cleaned_at")?,
    })
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

const PENDING_STATES: &str = "('Init','SettingUp','SetUp','Training','Trained','Delivering')";
const UNFINISHED_STATES: &str =
    "('Init','SettingUp','SetUp','Training','Trained','Delivering','Delivered','UserAcknowledged')";

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

    /// Inserts a new task in `Init`, enforcing in one transaction: one unfinished task per user, the
    /// queue limit, and `wait` for a non-empty queue.
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
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, progress FROM tasks WHERE user_address = ? AND progress IN {UNFINISHED_STATES} LIMIT 1"
        )))
        .bind(&task.user_address)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let state: String = row.try_get("progress")?;
            return Err(StoreError::UnfinishedTask {
                user: task.user_address.clone(),
                task: row.try_get("id")?,
                state: state.parse()?,
            });
        }
        let pending: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM tasks WHERE progress IN {PENDING_STATES}"
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
               training_params, fee, nonce, signature, user_public_key, fee_ceiling, wait, model_type, progress)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'Init')",
        )
        .bind(&task.id)
        .bind(&task.user_address)
        .bind(now)
        .bind(now)
        .bind(&task.pre_trained_model_hash)
        .bind(&task.dataset_hash)
        .bind(&task.training_params)
        .bind(&task.fee)
        .bind(&task.nonce)
        .bind(&task.signature)
        .bind(&task.user_public_key)
        .bind(&task.fee_ceiling)
        .bind(i64::from(task.wait))
        .bind(&task.model_type)
        .execute(&mut *tx)
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
        user: &str,
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
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Tasks queued or running.
    pub async fn pending_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM tasks WHERE progress IN {PENDING_STATES}"
        )))
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    /// Tasks in `states`, oldest first.
    pub async fn in_states(&self, states: &[TaskState]) -> Result<Vec<Task>, StoreError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM tasks WHERE progress IN ({list}) ORDER BY created_at ASC, rowid ASC"
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
        let list = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE tasks SET progress = ?, updated_at = ? WHERE id = ? AND progress IN ({list})"
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
        let done = sqlx::query(
            "UPDATE tasks SET progress = 'Failed', fail_reason = ?, updated_at = ?
             WHERE id = ? AND progress NOT IN ('Finished','Failed')",
        )
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

    /// Cancels `id` if training has not started (`Init`, `SettingUp`, `SetUp`). Returns whether it did.
    pub async fn cancel(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET progress = 'Failed', fail_reason = 'cancelled by the customer', updated_at = ?
             WHERE id = ? AND progress IN ('Init','SettingUp','SetUp')",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the setup results.
    pub async fn set_setup(
        &self,
        id: &str,
        tokens: u64,
        fee: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET token_count = ?, task_fee = ?, updated_at = ? WHERE id = ?")
            .bind(tokens as i64)
            .bind(fee)
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

    /// Records the sealed deliverable (before it is announced on chain).
    pub async fn set_sealed(
        &self,
        id: &str,
        path: &str,
        root: &str,
        encrypted_secret: &str,
        tee_signer: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET deliverable_path = ?, model_root_hash = ?, encrypted_secret = ?, tee_signer = ?,
             updated_at = ? WHERE id = ?",
        )
        .bind(path)
        .bind(root)
        .bind(encrypted_secret)
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
            "UPDATE tasks SET progress = 'Delivered', deliver_index = ?, deliver_time = ?, updated_at = ?
             WHERE id = ? AND progress = 'Delivering'",
        )
        .bind(index)
        .bind(at)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the settlement and moves to `Finished`.
    pub async fn set_settled(
        &self,
        id: &str,
        tx: Option<&str>,
        fee: &str,
        acknowledged: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET progress = 'Finished', settle_tx = ?, settled_fee = ?, settled_acknowledged = ?,
             updated_at = ? WHERE id = ? AND progress IN ('Delivered','UserAcknowledged')",
        )
        .bind(tx)
        .bind(fee)
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
    pub async fn dataset_in_use(&self, hash: &str, except: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM tasks WHERE lower(dataset_hash) = lower(?) AND id != ? AND cleaned_at IS NULL LIMIT 1",
        )
        .bind(hash)
        .bind(except)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Ended tasks whose files have not been cleaned and that ended before `before`.
    pub async fn cleanable(&self, before: i64) -> Result<Vec<Task>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM tasks WHERE progress IN ('Finished','Failed') AND cleaned_at IS NULL AND updated_at < ?",
        )
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

    fn new_task(id: &str, user: &str, wait: bool) -> NewTask {
        NewTask {
            id: id.into(),
            user_address: user.into(),
            pre_trained_model_hash: "0x01".into(),
            dataset_hash: "0x02".into(),
            training_params: "{}".into(),
            fee: "0".into(),
            nonce: "1".into(),
            signature: "0x".into(),
            user_public_key: "04".into(),
            fee_ceiling: None,
            wait,
            model_type: "text".into(),
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
        s.insert_task(&new_task("a", "0xaa", false), 2, 1)
            .await
            .unwrap();
        // Same user again: refused, nothing inserted.
        let e = s
            .insert_task(&new_task("b", "0xaa", true), 2, 2)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::UnfinishedTask { .. }), "{e}");
        // Non-empty queue without wait: refused.
        let e = s
            .insert_task(&new_task("c", "0xbb", false), 2, 2)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Busy(1)), "{e}");
        s.insert_task(&new_task("c", "0xbb", true), 2, 3)
            .await
            .unwrap();
        let e = s
            .insert_task(&new_task("d", "0xcc", true), 2, 4)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::QueueFull(2)), "{e}");
        assert_eq!(s.pending_count().await.unwrap(), 2);
        assert!(s.get("b").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn transitions_are_compare_and_set() {
        let (_d, s) = store().await;
        s.insert_task(&new_task("a", "0xaa", false), 5, 1)
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
        s.insert_task(&new_task("b", "0xaa", false), 5, 6)
            .await
            .unwrap();
        let latest = s.list_user("0xaa", true, Order::Asc).await.unwrap();
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].id, "b");
    }

    #[tokio::test]
    async fn a_dataset_is_in_use_until_every_task_using_it_is_cleaned() {
        let (_d, s) = store().await;
        // Two users, the same dataset bytes ("0x02"), both ended.
        s.insert_task(&new_task("a", "0xaa", false), 5, 1)
            .await
            .unwrap();
        s.insert_task(&new_task("b", "0xbb", true), 5, 2)
            .await
            .unwrap();
        assert!(s.fail("a", "x", 3).await.unwrap() && s.fail("b", "y", 3).await.unwrap());
        assert!(
            s.dataset_in_use("0x02", "a").await.unwrap(),
            "b still needs it"
        );
        // Case of the hex does not matter; a task does not keep its own dataset.
        assert!(s.dataset_in_use("0X02", "a").await.unwrap());
        s.set_cleaned("b", 4).await.unwrap();
        assert!(
            !s.dataset_in_use("0x02", "a").await.unwrap(),
            "only a is left"
        );
        assert!(!s.dataset_in_use("0x03", "a").await.unwrap());
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
            s.insert_task(&new_task("a", "0xaa", false), 5, 1)
                .await
                .unwrap();
            s.set_meta("tee_signer", "0x1").await.unwrap();
        }
        let s = Store::open(&path).await.unwrap();
        assert!(s.get("a").await.unwrap().is_some());
        assert_eq!(s.meta("tee_signer").await.unwrap().as_deref(), Some("0x1"));
    }
}
