//! The gateway's state in one local SQLite file (`gateway.sqlite` in the state directory): the
//! uploaded files, the jobs (with the stage the runner reached, so a restarted gateway resumes
//! following each task) and the jobs' events. Nothing in it is secret: the key is never stored.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

/// A failure of the state database.
#[derive(Debug, thiserror::Error)]
#[error("gateway state database: {0}")]
pub struct StoreError(#[from] sqlx::Error);

/// The tables, created when missing (the gateway's own file: no migrations to share).
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS files (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        filename TEXT NOT NULL,
        purpose TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        path TEXT NOT NULL,
        status_details TEXT
    )",
    "CREATE TABLE IF NOT EXISTS jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        provider_model TEXT NOT NULL,
        training_file TEXT NOT NULL,
        validation_file TEXT,
        hyperparameters TEXT NOT NULL,
        training_params TEXT NOT NULL,
        seed INTEGER NOT NULL,
        status TEXT NOT NULL,
        stage TEXT NOT NULL,
        task_id TEXT,
        fine_tuned_model TEXT,
        result_file TEXT,
        error TEXT,
        finished_at INTEGER,
        trained_tokens INTEGER,
        log_lines INTEGER NOT NULL DEFAULT 0,
        last_state TEXT
    )",
    "CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        job_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        type TEXT NOT NULL,
        data TEXT
    )",
    "CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, seq)",
];

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    /// `file-…`.
    pub id: String,
    /// The name it was uploaded (or produced) under.
    pub filename: String,
    /// `fine-tune` (uploads) or `fine-tune-results` (the decrypted adapters).
    pub purpose: String,
    /// Its size.
    pub bytes: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Where its bytes are.
    pub path: String,
    /// A note (e.g. converted from a JSON array).
    pub status_details: Option<String>,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// `ftjob-…`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model as the caller named it.
    pub model: String,
    /// The provider (checksummed address).
    pub provider: String,
    /// The provider's model name.
    pub provider_model: String,
    /// The training file's id.
    pub training_file: String,
    /// The validation file's id, when given (not used by providers).
    pub validation_file: Option<String>,
    /// The OpenAI hyperparameters as the job reports them (JSON).
    pub hyperparameters: String,
    /// The provider's training parameters (JSON text, signed into the task).
    pub training_params: String,
    /// The seed reported.
    pub seed: i64,
    /// The OpenAI status.
    pub status: String,
    /// How far the runner got (see `runner::Stage`).
    pub stage: String,
    /// The provider's task id, once created.
    pub task_id: Option<String>,
    /// The decrypted adapter's directory.
    pub fine_tuned_model: Option<String>,
    /// The result file's id.
    pub result_file: Option<String>,
    /// The OpenAI error object (JSON), when failed.
    pub error: Option<String>,
    /// Unix seconds.
    pub finished_at: Option<u64>,
    /// Tokens trained on (the provider's count), when known.
    pub trained_tokens: Option<u64>,
    /// Lines of the provider's task log already turned into events.
    pub log_lines: u64,
    /// The provider's last task state seen.
    pub last_state: Option<String>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// `ftevent-…`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// `info`, `warn` or `error`.
    pub level: String,
    /// What happened.
    pub message: String,
    /// `message` or `metrics`.
    pub kind: String,
    /// Metrics (JSON), for `metrics` events.
    pub data: Option<String>,
}

/// The gateway's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn file_row(r: &sqlx::sqlite::SqliteRow) -> Result<FileRow, sqlx::Error> {
    Ok(FileRow {
        id: r.try_get("id")?,
        filename: r.try_get("filename")?,
        purpose: r.try_get("purpose")?,
        bytes: u64_of(r.try_get("bytes")?),
        created_at: u64_of(r.try_get("created_at")?),
        path: r.try_get("path")?,
        status_details: r.try_get("status_details")?,
    })
}

fn job_row(r: &sqlx::sqlite::SqliteRow) -> Result<JobRow, sqlx::Error> {
    Ok(JobRow {
        id: r.try_get("id")?,
        created_at: u64_of(r.try_get("created_at")?),
        model: r.try_get("model")?,
        provider: r.try_get("provider")?,
        provider_model: r.try_get("provider_model")?,
        training_file: r.try_get("training_file")?,
        validation_file: r.try_get("validation_file")?,
        hyperparameters: r.try_get("hyperparameters")?,
        training_params: r.try_get("training_params")?,
        seed: r.try_get("seed")?,
        status: r.try_get("status")?,
        stage: r.try_get("stage")?,
        task_id: r.try_get("task_id")?,
        fine_tuned_model: r.try_get("fine_tuned_model")?,
        result_file: r.try_get("result_file")?,
        error: r.try_get("error")?,
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(u64_of),
        trained_tokens: r.try_get::<Option<i64>, _>("trained_tokens")?.map(u64_of),
        log_lines: u64_of(r.try_get("log_lines")?),
        last_state: r.try_get("last_state")?,
    })
}

fn event_row(r: &sqlx::sqlite::SqliteRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        id: r.try_get("id")?,
        created_at: u64_of(r.try_get("created_at")?),
        level: r.try_get("level")?,
        message: r.try_get("message")?,
        kind: r.try_get("type")?,
        data: r.try_get("data")?,
    })
}

/// A page of rows, newest first, and whether older ones remain.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows.
    pub rows: Vec<T>,
    /// More rows after the last one.
    pub has_more: bool,
}

fn page<T>(mut rows: Vec<T>, limit: u32) -> Page<T> {
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Page { rows, has_more }
}

impl Store {
    /// Open (creating) the database at `path`.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        for stmt in SCHEMA {
            sqlx::query(*stmt).execute(&pool).await?;
        }
        Ok(Store { pool })
    }

    /// Record a file.
    pub async fn insert_file(&self, f: &FileRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO files (id, filename, purpose, bytes, created_at, path, status_details)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&f.id)
        .bind(&f.filename)
        .bind(&f.purpose)
        .bind(i64_of(f.bytes))
        .bind(i64_of(f.created_at))
        .bind(&f.path)
        .bind(&f.status_details)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The file `id`.
    pub async fn file(&self, id: &str) -> Result<Option<FileRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM files WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(file_row).transpose()?)
    }

    /// The newest uploaded (`fine-tune`) file named `filename` (OPEA names training files so).
    pub async fn file_by_name(&self, filename: &str) -> Result<Option<FileRow>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM files WHERE filename = ? AND purpose = 'fine-tune' ORDER BY seq DESC LIMIT 1",
        )
        .bind(filename)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(file_row).transpose()?)
    }

    /// Every file, newest first (with `purpose`, only those).
    pub async fn files(&self, purpose: Option<&str>) -> Result<Vec<FileRow>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM files WHERE (?1 IS NULL OR purpose = ?1) ORDER BY seq DESC")
                .bind(purpose)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(file_row).collect::<Result<_, _>>()?)
    }

    /// Record a new job.
    pub async fn insert_job(&self, j: &JobRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO jobs (id, created_at, model, provider, provider_model, training_file,
                validation_file, hyperparameters, training_params, seed, status, stage)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&j.id)
        .bind(i64_of(j.created_at))
        .bind(&j.model)
        .bind(&j.provider)
        .bind(&j.provider_model)
        .bind(&j.training_file)
        .bind(&j.validation_file)
        .bind(&j.hyperparameters)
        .bind(&j.training_params)
        .bind(j.seed)
        .bind(&j.status)
        .bind(&j.stage)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The job `id`.
    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(job_row).transpose()?)
    }

    /// Jobs newest first, starting after the job `after` (a cursor), at most `limit`.
    pub async fn jobs(&self, after: Option<&str>, limit: u32) -> Result<Page<JobRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM jobs
             WHERE (?1 IS NULL OR seq < (SELECT seq FROM jobs WHERE id = ?1))
             ORDER BY seq DESC LIMIT ?2",
        )
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let rows = rows.iter().map(job_row).collect::<Result<_, _>>()?;
        Ok(page(rows, limit))
    }

    /// The jobs the runner has not finished (to resume after a restart).
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE status NOT IN ('succeeded', 'failed', 'cancelled') ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(job_row).collect::<Result<_, _>>()?)
    }

    /// Move job `id` to `status` and `stage`, unless it ended (a cancel between the runner's
    /// read and this write stays cancelled).
    pub async fn set_stage(&self, id: &str, status: &str, stage: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET status = ?, stage = ?
             WHERE id = ? AND status NOT IN ('succeeded', 'failed', 'cancelled')",
        )
        .bind(status)
        .bind(stage)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record the provider's task id (the task exists from now on); the job is `queued` at `stage`
    /// unless it ended meanwhile (cancelled while the task was created: the id is kept).
    pub async fn set_task(&self, id: &str, task_id: &str, stage: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET task_id = ?1,
                stage = CASE WHEN status IN ('succeeded', 'failed', 'cancelled') THEN stage ELSE ?2 END,
                status = CASE WHEN status IN ('succeeded', 'failed', 'cancelled') THEN status ELSE 'queued' END
             WHERE id = ?3",
        )
            .bind(task_id)
            .bind(stage)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record how many log lines were turned into events and the provider's last state.
    pub async fn set_progress(
        &self,
        id: &str,
        log_lines: u64,
        last_state: Option<&str>,
        trained_tokens: Option<u64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET log_lines = ?, last_state = COALESCE(?, last_state),
                trained_tokens = COALESCE(?, trained_tokens) WHERE id = ?",
        )
        .bind(i64_of(log_lines))
        .bind(last_state)
        .bind(trained_tokens.map(i64_of))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// End job `id` as `status` (`succeeded`, `failed` or `cancelled`) unless it ended already;
    /// returns whether this call ended it.
    pub async fn finish(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
        fine_tuned_model: Option<&str>,
        result_file: Option<&str>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = ?, stage = 'done', error = ?, fine_tuned_model = ?,
                result_file = ?, finished_at = ?
             WHERE id = ? AND status NOT IN ('succeeded', 'failed', 'cancelled')",
        )
        .bind(status)
        .bind(error)
        .bind(fine_tuned_model)
        .bind(result_file)
        .bind(i64_of(now))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Append an event to job `job_id`.
    pub async fn add_event(&self, job_id: &str, e: &EventRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO events (id, job_id, created_at, level, message, type, data)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.id)
        .bind(job_id)
        .bind(i64_of(e.created_at))
        .bind(&e.level)
        .bind(&e.message)
        .bind(&e.kind)
        .bind(&e.data)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Events of `job_id`, newest first, starting after the event `after`, at most `limit`.
    pub async fn events(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM events
             WHERE job_id = ?1 AND (?2 IS NULL OR seq < (SELECT seq FROM events WHERE id = ?2))
             ORDER BY seq DESC LIMIT ?3",
        )
        .bind(job_id)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let rows = rows.iter().map(event_row).collect::<Result<_, _>>()?;
        Ok(page(rows, limit))
    }

    /// The newest `metrics` event of `job_id`.
    pub async fn last_metrics(&self, job_id: &str) -> Result<Option<EventRow>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM events WHERE job_id = ? AND type = 'metrics' ORDER BY seq DESC LIMIT 1",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(event_row).transpose()?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn job(id: &str) -> JobRow {
        JobRow {
            id: id.into(),
            created_at: 1,
            model: "m".into(),
            provider: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            provider_model: "m".into(),
            training_file: "file-1".into(),
            validation_file: None,
            hyperparameters: "{}".into(),
            training_params: "{}".into(),
            seed: 0,
            status: "validating_files".into(),
            stage: "new".into(),
            task_id: None,
            fine_tuned_model: None,
            result_file: None,
            error: None,
            finished_at: None,
            trained_tokens: None,
            log_lines: 0,
            last_state: None,
        }
    }

    #[tokio::test]
    async fn a_job_cancelled_while_its_task_is_created_stays_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).await.unwrap();
        store.insert_job(&job("ftjob-a")).await.unwrap();
        assert!(
            store
                .finish("ftjob-a", "cancelled", None, None, None, 2)
                .await
                .unwrap()
        );
        store
            .set_stage("ftjob-a", "validating_files", "creating")
            .await
            .unwrap();
        store
            .set_task("ftjob-a", "task-1", "following")
            .await
            .unwrap();
        let j = store.job("ftjob-a").await.unwrap().unwrap();
        assert_eq!(j.status, "cancelled");
        assert_eq!(j.task_id.as_deref(), Some("task-1"));
        assert!(
            !store
                .finish("ftjob-a", "succeeded", None, None, None, 3)
                .await
                .unwrap()
        );
        assert!(store.unfinished_jobs().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn pages_go_newest_first_after_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).await.unwrap();
        for id in ["ftjob-1", "ftjob-2", "ftjob-3"] {
            store.insert_job(&job(id)).await.unwrap();
        }
        let p = store.jobs(None, 2).await.unwrap();
        let ids: Vec<_> = p.rows.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["ftjob-3", "ftjob-2"]);
        assert!(p.has_more);
        let p = store.jobs(Some("ftjob-2"), 2).await.unwrap();
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.rows[0].id, "ftjob-1");
        assert!(!p.has_more);
    }
}
