//! The HTTP routes: OpenAI's fine-tuning API and OPEA's forms of it (seed 004), over [`Gateway`].
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/files` | upload a training file (multipart `file`, `purpose=fine-tune`): JSONL, a zip of JSONL, or a JSON array (converted to JSONL) |
//! | `GET /v1/files`, `GET /v1/files/{id}` | the files |
//! | `GET /v1/files/{id}/content` | a result file's bytes (the decrypted adapter zip) |
//! | `POST /v1/fine_tuning/jobs` | create a job |
//! | `GET /v1/fine_tuning/jobs?after=&limit=` | list jobs, newest first |
//! | `GET /v1/fine_tuning/jobs/{id}` | one job |
//! | `POST /v1/fine_tuning/jobs/{id}/cancel` | cancel (before the provider starts training) |
//! | `GET /v1/fine_tuning/jobs/{id}/events?after=&limit=` | its events, newest first |
//! | `GET /v1/fine_tuning/jobs/{id}/checkpoints` | its checkpoint (the delivered adapter) |
//! | `POST /v1/fine_tuning/jobs/retrieve`, `/cancel`, `POST /v1/finetune/list_checkpoints` | OPEA's forms (`fine_tuning_job_id` in the body) |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::error::{GatewayError, GatewayResult};
use super::store::{FileRow, JobRow};
use super::{Gateway, ModelRef, new_id, openai, runner};
use crate::error::ClientError;

type Shared = State<Arc<Gateway>>;

/// JSON for a success.
struct Ok200(Value);

impl IntoResponse for Ok200 {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The router over `gw`.
pub fn router(gw: Arc<Gateway>) -> Router {
    let limit =
        usize::try_from(gw.config.max_upload_bytes.saturating_add(1 << 20)).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/files", post(upload_file).get(list_files))
        .route("/v1/files/{id}", get(get_file))
        .route("/v1/files/{id}/content", get(file_content))
        .route("/v1/fine_tuning/jobs", post(create_job).get(list_jobs))
        .route("/v1/fine_tuning/jobs/retrieve", post(opea_retrieve))
        .route("/v1/fine_tuning/jobs/cancel", post(opea_cancel))
        .route("/v1/finetune/list_checkpoints", post(opea_checkpoints))
        .route("/v1/fine_tuning/jobs/{id}", get(get_job))
        .route("/v1/fine_tuning/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/fine_tuning/jobs/{id}/events", get(list_events))
        .route(
            "/v1/fine_tuning/jobs/{id}/checkpoints",
            get(list_checkpoints),
        )
        .fallback(|| async {
            GatewayError::not_found("unknown_url", None, "no such route on the sealtune gateway")
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(gw.clone(), guard))
        .with_state(gw)
}

/// Whether `host` (a `Host` header) names the loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Before every route: on loopback only loopback `Host` names (no DNS rebinding from a web page),
/// and the API key when one is configured.
async fn guard(State(gw): Shared, req: Request, next: Next) -> Response {
    if gw.config.listen.ip().is_loopback() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !is_loopback_host(host) {
            return GatewayError::invalid(
                "forbidden_host",
                None,
                format!("the gateway on loopback answers only to localhost, not to Host {host:?}"),
            )
            .into_response();
        }
    }
    if let Some(key) = &gw.config.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| {
            use k256::elliptic_curve::subtle::ConstantTimeEq as _;
            g.len() == key.len() && bool::from(g.as_bytes().ct_eq(key.as_bytes()))
        });
        if !ok {
            return GatewayError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

// ---- files -----------------------------------------------------------------------------------

async fn upload_file(State(gw): Shared, mut form: Multipart) -> GatewayResult<Ok200> {
    let id = new_id("file");
    let path = gw.config.state_dir.join("files").join(&id);
    let mut purpose = None;
    let mut filename = None;
    let mut bytes = None;
    let bad_form = |e: axum::extract::multipart::MultipartError| {
        GatewayError::invalid("invalid_request", None, format!("bad multipart form: {e}"))
    };
    while let Some(mut field) = form.next_field().await.map_err(bad_form)? {
        match field.name() {
            Some("purpose") => purpose = Some(field.text().await.map_err(bad_form)?),
            Some("file") => {
                filename = Some(display_name(field.file_name().unwrap_or("upload.jsonl")));
                let mut out = tokio::fs::File::create(&path)
                    .await
                    .map_err(|e| ClientError::io(&path, e))?;
                let mut n: u64 = 0;
                while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
                    n = n.saturating_add(chunk.len() as u64);
                    if n > gw.config.max_upload_bytes {
                        drop(out);
                        let _ = std::fs::remove_file(&path);
                        return Err(GatewayError::invalid(
                            "file_too_large",
                            Some("file"),
                            format!(
                                "the file is larger than {} bytes",
                                gw.config.max_upload_bytes
                            ),
                        ));
                    }
                    out.write_all(&chunk)
                        .await
                        .map_err(|e| ClientError::io(&path, e))?;
                }
                out.flush().await.map_err(|e| ClientError::io(&path, e))?;
                bytes = Some(n);
            }
            _ => {}
        }
    }
    let cleanup = |e: GatewayError| {
        let _ = std::fs::remove_file(&path);
        e
    };
    let (Some(filename), Some(_)) = (filename, bytes) else {
        return Err(cleanup(GatewayError::invalid(
            "missing_file",
            Some("file"),
            "the form has no `file` part",
        )));
    };
    if purpose.as_deref() != Some("fine-tune") {
        return Err(cleanup(GatewayError::invalid(
            "invalid_purpose",
            Some("purpose"),
            format!(
                "purpose must be \"fine-tune\" (the only files a fine-tuning gateway takes), got {:?}",
                purpose.unwrap_or_default()
            ),
        )));
    }
    let checked = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || check_training_file(&path))
            .await
            .map_err(|e| ClientError::InvalidInput(e.to_string()))?
    };
    let (bytes, details) = checked.map_err(cleanup)?;
    let row = FileRow {
        id,
        filename,
        purpose: "fine-tune".into(),
        bytes,
        created_at: gw.clock.now_ms() / 1000,
        path: path.display().to_string(),
        status_details: details,
    };
    gw.store.insert_file(&row).await?;
    Ok(Ok200(openai::file(&row)))
}

/// The name to show for an uploaded file: its last path component (the bytes are stored under the
/// file's id, never under a name the caller chose).
fn display_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    if clean.is_empty() || clean == "." || clean == ".." {
        "upload.jsonl".into()
    } else {
        clean
    }
}

/// Check a training file the way the provider will read it (JSONL or a zip of JSONL, every record
/// a known shape); a JSON array (OPEA's `alpaca_data.json`) is rewritten as JSONL first. Returns the
/// size and a note.
fn check_training_file(path: &Path) -> GatewayResult<(u64, Option<String>)> {
    let bad = |m: String| GatewayError::invalid("invalid_file_format", Some("file"), m);
    let mut note = None;
    if starts_with_bracket(path)? {
        let text = std::fs::read(path).map_err(|e| ClientError::io(path, e))?;
        let records: Vec<Value> = serde_json::from_slice(&text).map_err(|e| {
            bad(format!(
                "the file starts with `[` but is not a JSON array: {e}"
            ))
        })?;
        let mut out = Vec::with_capacity(text.len());
        for r in &records {
            serde_json::to_writer(&mut out, r).map_err(|e| bad(e.to_string()))?;
            out.push(b'\n');
        }
        std::fs::write(path, &out).map_err(|e| ClientError::io(path, e))?;
        note = Some(format!(
            "converted from a JSON array of {} records to JSONL",
            records.len()
        ));
    }
    let summary = sealtune_protocol::dataset::read_dataset(
        path,
        &sealtune_protocol::dataset::ReadLimits::default(),
        |_, _| Ok::<(), sealtune_protocol::dataset::DatasetError>(()),
    )
    .map_err(|e| {
        bad(format!(
            "not a training file the provider can read ({e}): one JSON object per line with `messages`, `instruction`/`output` or `text`, or a zip of such .jsonl files"
        ))
    })?;
    let size = std::fs::metadata(path)
        .map_err(|e| ClientError::io(path, e))?
        .len();
    let note = note.unwrap_or_else(|| format!("{} records", summary.records));
    Ok((size, Some(note)))
}

fn starts_with_bracket(path: &Path) -> GatewayResult<bool> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(|e| ClientError::io(path, e))?;
    let mut buf = [0u8; 256];
    let n = f.read(&mut buf).map_err(|e| ClientError::io(path, e))?;
    let first = buf
        .get(..n)
        .unwrap_or_default()
        .iter()
        .find(|b| !b.is_ascii_whitespace());
    Ok(first == Some(&b'['))
}

async fn list_files(State(gw): Shared, Query(q): Query<openai::ListQuery>) -> GatewayResult<Ok200> {
    let files = gw.store.files(q.purpose.as_deref()).await?;
    Ok(Ok200(openai::list(
        files.iter().map(openai::file).collect(),
        false,
    )))
}

async fn find_file(gw: &Gateway, id: &str) -> GatewayResult<FileRow> {
    gw.store.file(id).await?.ok_or_else(|| {
        GatewayError::not_found(
            "file_not_found",
            Some("id"),
            format!("No such File object: {id}"),
        )
    })
}

async fn get_file(State(gw): Shared, UrlPath(id): UrlPath<String>) -> GatewayResult<Ok200> {
    Ok(Ok200(openai::file(&find_file(&gw, &id).await?)))
}

async fn file_content(State(gw): Shared, UrlPath(id): UrlPath<String>) -> GatewayResult<Response> {
    let f = find_file(&gw, &id).await?;
    if f.purpose != "fine-tune-results" {
        return Err(GatewayError::invalid(
            "invalid_request",
            Some("id"),
            format!("Not allowed to download files of purpose: {}", f.purpose),
        ));
    }
    let path = PathBuf::from(&f.path);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ClientError::io(&path, e))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/zip"),
    );
    Ok((headers, body).into_response())
}

// ---- jobs ------------------------------------------------------------------------------------

/// The provider and its model name for the `model` a caller gave (an alias, `<provider>:<model>`,
/// or a model of the default provider), checked against the provider's list.
async fn resolve_model(
    gw: &Gateway,
    name: &str,
) -> GatewayResult<(alloy::primitives::Address, String)> {
    let unavailable = |why: String| {
        GatewayError::invalid(
            "model_not_available",
            Some("model"),
            format!("Model {name} is not available for fine-tuning or does not exist: {why}"),
        )
    };
    let target = match gw.config.aliases.get(name) {
        Some(m) => m.clone(),
        None => ModelRef::parse(name).map_err(|e| unavailable(e.to_string()))?,
    };
    let provider = target
        .provider
        .or(gw.config.default_provider)
        .ok_or_else(|| {
            unavailable(
                "name it as <provider address>:<model>, or start the gateway with --provider"
                    .into(),
            )
        })?;
    let (_, api) = match gw.client.provider_api(provider).await {
        Ok(x) => x,
        Err(ClientError::UnknownProvider(p)) => {
            return Err(unavailable(format!(
                "no fine-tuning service of {p} is registered on chain"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    match api.model(&target.model).await {
        Ok(_) => Ok((provider, target.model)),
        Err(ClientError::Http { status: 404, .. }) => {
            let offered = api
                .models()
                .await
                .map(|ms| {
                    ms.into_iter()
                        .map(|m| m.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            Err(unavailable(format!(
                "provider {provider} offers: {offered}"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// The sub-account must be able to pay something before a job is accepted (the runner checks
/// again, with the fee, when it creates the task).
async fn check_funds(gw: &Gateway, provider: alloy::primitives::Address) -> GatewayResult<()> {
    let user = gw.client.user()?;
    let account = gw
        .client
        .chain
        .account(user, provider)
        .await?
        .ok_or(ClientError::NoSubAccount(provider))?;
    if account.spendable().is_zero() {
        return Err(ClientError::BalanceTooLow {
            provider,
            spendable: account.spendable(),
            needed: alloy::primitives::U256::from(1u8),
        }
        .into());
    }
    Ok(())
}

async fn create_job(
    State(gw): Shared,
    body: Result<axum::Json<openai::CreateJob>, axum::extract::rejection::JsonRejection>,
) -> GatewayResult<Ok200> {
    let axum::Json(req) = body.map_err(|e| {
        GatewayError::invalid(
            "invalid_request",
            None,
            format!("bad job request: {}", e.body_text()),
        )
    })?;
    let file = match req.training_file.starts_with("file-") {
        true => gw.store.file(&req.training_file).await?,
        false => gw.store.file_by_name(&req.training_file).await?,
    }
    .filter(|f| f.purpose == "fine-tune")
    .ok_or_else(|| {
        GatewayError::invalid(
            "invalid_training_file",
            Some("training_file"),
            format!("invalid training_file: {} (upload it first: POST /v1/files with purpose=fine-tune)", req.training_file),
        )
    })?;
    let hyper = req.hyperparameters();
    let translated = hyper.training_params().map_err(|(param, msg)| {
        GatewayError::invalid("invalid_hyperparameters", Some(param), msg)
    })?;
    let (provider, provider_model) = resolve_model(&gw, &req.model).await?;
    check_funds(&gw, provider).await?;
    let row = JobRow {
        id: new_id("ftjob"),
        created_at: gw.clock.now_ms() / 1000,
        model: req.model.clone(),
        provider: provider.to_checksum(None),
        provider_model,
        training_file: file.id.clone(),
        validation_file: req.validation_file.clone(),
        hyperparameters: serde_json::to_string(&hyper).unwrap_or_default(),
        training_params: translated.training_params.clone(),
        seed: req.seed.unwrap_or(0),
        status: "validating_files".into(),
        stage: runner::stage::NEW.into(),
        task_id: None,
        fine_tuned_model: None,
        result_file: None,
        error: None,
        finished_at: None,
        trained_tokens: None,
        log_lines: 0,
        last_state: None,
    };
    gw.store.insert_job(&row).await?;
    gw.event(
        &row.id,
        "info",
        &format!(
            "Created fine-tuning job {} on provider {} (model {}), training parameters {}",
            row.id, row.provider, row.provider_model, row.training_params
        ),
        None,
    )
    .await;
    for note in &translated.notes {
        gw.event(&row.id, "warn", note, None).await;
    }
    let mut unused: Vec<&str> = req.extra.keys().map(String::as_str).collect();
    if req.validation_file.is_some() {
        unused.push("validation_file");
    }
    if req.seed.is_some() {
        unused.push("seed");
    }
    if !unused.is_empty() {
        gw.event(
            &row.id,
            "warn",
            &format!("not used by 0G providers (ignored): {}", unused.join(", ")),
            None,
        )
        .await;
    }
    gw.spawn_runner(row.id.clone());
    Ok(Ok200(openai::job(&row)))
}

async fn find_job(gw: &Gateway, id: &str) -> GatewayResult<JobRow> {
    gw.store.job(id).await?.ok_or_else(|| {
        GatewayError::not_found(
            "fine_tuning_job_not_found",
            Some("fine_tuning_job_id"),
            format!("No such fine-tuning job: {id}"),
        )
    })
}

async fn list_jobs(State(gw): Shared, Query(q): Query<openai::ListQuery>) -> GatewayResult<Ok200> {
    let page = gw.store.jobs(q.after.as_deref(), q.limit()).await?;
    Ok(Ok200(openai::list(
        page.rows.iter().map(openai::job).collect(),
        page.has_more,
    )))
}

async fn get_job(State(gw): Shared, UrlPath(id): UrlPath<String>) -> GatewayResult<Ok200> {
    Ok(Ok200(openai::job(&find_job(&gw, &id).await?)))
}

async fn cancel_job(State(gw): Shared, UrlPath(id): UrlPath<String>) -> GatewayResult<Ok200> {
    cancel(&gw, &id).await
}

/// Cancel job `id`: before its task exists, or while the provider has not started training.
async fn cancel(gw: &Arc<Gateway>, id: &str) -> GatewayResult<Ok200> {
    let job = find_job(gw, id).await?;
    if runner::is_terminal(&job.status) {
        return Err(GatewayError::invalid(
            "job_already_finished",
            Some("fine_tuning_job_id"),
            format!(
                "Job {id} has already {}: it cannot be cancelled",
                job.status
            ),
        ));
    }
    if let Some(task) = &job.task_id {
        let provider = job.provider.parse().map_err(|_| {
            ClientError::InvalidInput("the job's provider is not an address".into())
        })?;
        let t = gw.client.task(provider, Some(task)).await?;
        let state = t.progress.unwrap_or_default();
        let cancellable = state
            .parse::<sealtune_protocol::task::TaskState>()
            .is_ok_and(|s| s.is_cancellable());
        if !cancellable {
            return Err(GatewayError::invalid(
                "training_started",
                Some("fine_tuning_job_id"),
                format!(
                    "the provider's task {task} is {state}: a task cannot be cancelled once training has started; the job goes on and delivers"
                ),
            ));
        }
        gw.client.cancel_task(provider, task).await?;
    }
    gw.store
        .finish(id, "cancelled", None, None, None, gw.clock.now_ms() / 1000)
        .await?;
    gw.event(id, "info", "The job was cancelled", None).await;
    Ok(Ok200(openai::job(&find_job(gw, id).await?)))
}

async fn list_events(
    State(gw): Shared,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<openai::ListQuery>,
) -> GatewayResult<Ok200> {
    find_job(&gw, &id).await?;
    let page = gw.store.events(&id, q.after.as_deref(), q.limit()).await?;
    Ok(Ok200(openai::list(
        page.rows.iter().map(openai::event).collect(),
        page.has_more,
    )))
}

async fn checkpoints_of(gw: &Gateway, id: &str) -> GatewayResult<Vec<Value>> {
    let job = find_job(gw, id).await?;
    let metrics = gw.store.last_metrics(id).await?;
    Ok(openai::checkpoints(&job, metrics.as_ref()))
}

async fn list_checkpoints(State(gw): Shared, UrlPath(id): UrlPath<String>) -> GatewayResult<Ok200> {
    Ok(Ok200(openai::list(checkpoints_of(&gw, &id).await?, false)))
}

// ---- OPEA's forms ----------------------------------------------------------------------------

fn job_id_of(
    body: Result<axum::Json<openai::JobIdBody>, axum::extract::rejection::JsonRejection>,
) -> GatewayResult<String> {
    body.map(|b| b.0.fine_tuning_job_id).map_err(|e| {
        GatewayError::invalid(
            "invalid_request",
            Some("fine_tuning_job_id"),
            format!(
                "the body must be {{\"fine_tuning_job_id\": \"ftjob-…\"}}: {}",
                e.body_text()
            ),
        )
    })
}

type JobIdJson = Result<axum::Json<openai::JobIdBody>, axum::extract::rejection::JsonRejection>;

async fn opea_retrieve(State(gw): Shared, body: JobIdJson) -> GatewayResult<Ok200> {
    let id = job_id_of(body)?;
    Ok(Ok200(openai::job(&find_job(&gw, &id).await?)))
}

async fn opea_cancel(State(gw): Shared, body: JobIdJson) -> GatewayResult<Ok200> {
    let id = job_id_of(body)?;
    cancel(&gw, &id).await
}

async fn opea_checkpoints(State(gw): Shared, body: JobIdJson) -> GatewayResult<Ok200> {
    let id = job_id_of(body)?;
    Ok(Ok200(json!(checkpoints_of(&gw, &id).await?)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_loopback_host_names_pass_on_loopback() {
        for ok in [
            "localhost",
            "localhost:8015",
            "127.0.0.1:8015",
            "[::1]:8015",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8015",
            "127.0.0.1.evil.example",
            "",
            "10.0.0.1:8015",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn an_uploaded_name_never_becomes_a_path() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("..\\..\\x.jsonl"), "x.jsonl");
        assert_eq!(display_name(".."), "upload.jsonl");
        assert_eq!(display_name("a/"), "upload.jsonl");
    }

    #[test]
    fn training_files_are_checked_and_json_arrays_become_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(
            &p,
            r#" [{"instruction":"a","input":"","output":"b"},{"text":"c"}]"#,
        )
        .unwrap();
        let (_, note) = check_training_file(&p).unwrap();
        assert!(note.unwrap().contains("JSON array of 2 records"));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"instruction\":\"a\",\"input\":\"\",\"output\":\"b\"}\n{\"text\":\"c\"}\n"
        );
        std::fs::write(&p, "{not json\n").unwrap();
        let e = check_training_file(&p).unwrap_err();
        let (status, _, obj) = e.to_openai();
        assert_eq!(status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(obj.code, "invalid_file_format");
        assert_eq!(obj.param.as_deref(), Some("file"));
        assert!(obj.message.contains("line 1"), "{}", obj.message);
    }
}
