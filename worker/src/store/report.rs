//! The `task_reports` table: what the worker observed while a task trained, and its signed report
//! (docs/PROTOCOL.md §9). Typed at this boundary: callers give and get [`SignedReport`] values and
//! the observation's JSON text, which `pipeline::report` owns.
use sealtune_protocol::report::SignedReport;
use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// Records what training showed (replacing an earlier attempt's observation and report).
    pub async fn set_observed(&self, id: &str, observed: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO task_reports (task_id, observed) VALUES (?, ?)
             ON CONFLICT(task_id) DO UPDATE SET observed = excluded.observed, document = NULL, signature = NULL",
        )
        .bind(id)
        .bind(observed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What training showed, when recorded.
    pub async fn observed(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT observed FROM task_reports WHERE task_id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records the signed report (an observation row is created when none was recorded: a script
    /// that reported nothing, or a restart that lost it).
    pub async fn set_report(&self, id: &str, report: &SignedReport) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO task_reports (task_id, observed, document, signature) VALUES (?, '{}', ?, ?)
             ON CONFLICT(task_id) DO UPDATE SET document = excluded.document, signature = excluded.signature",
        )
        .bind(id)
        .bind(&report.document)
        .bind(&report.signature)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The signed report, once recorded.
    pub async fn report(&self, id: &str) -> Result<Option<SignedReport>, StoreError> {
        let row = sqlx::query(
            "SELECT document, signature FROM task_reports WHERE task_id = ? AND document IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SignedReport {
                document: r.try_get("document")?,
                signature: r.try_get("signature")?,
            })
        })
        .transpose()
    }
}
