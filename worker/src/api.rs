//! The provider HTTP API (PROTOCOL.md §2), with axum.
//!
//! Errors are `{"error": "..."}` with a 4xx/5xx status that says whose fault it is; a failure on the
//! provider's side answers a generic message and the request id only (see [`error`]); every answer
//! carries an `x-request-id` header. The served `/openapi.json` lists exactly the routes of
//! [`router`] (checked route by route in `worker_api.rs`). Request bodies
//! are size-limited (JSON: `limits.max_body_bytes`, uploads: `limits.max_upload_bytes`); model
//! downloads are rate-limited per customer. Everything a customer reads or changes is scoped to the
//! address in the URL, and the mutating routes (cancel, download, upload) are signed by it.
//!
//! Timeouts: a request body that sends nothing for [`BODY_IDLE_TIMEOUT`] fails, and a handler that
//! has not answered after [`REQUEST_TIMEOUT`] is answered 408, so no client holds a request (or the
//! worker's graceful stop, which waits for open requests) for long.
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use futures_util::TryStreamExt;
use sealtune_protocol::api::{CreateTaskBody, SignedBody};
use sealtune_protocol::request::{self, CreateTask, RequestError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::Worker;
use crate::intake::IntakeError;
use crate::models::ModelRef;
use crate::store::task::address_text;
use crate::store::{DatasetHash, NewTask, Order, StoreError, Task, TaskState, TrainingParams};

pub mod error;

pub use error::ApiError;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnfinishedTask { .. } | StoreError::Busy(_) | StoreError::Reused { .. } => {
                ApiError::conflict(e.to_string())
            }
            StoreError::QueueFull(_) => {
                ApiError::Client(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

fn request_err(e: RequestError) -> ApiError {
    match e {
        RequestError::WrongSigner { .. } => {
            ApiError::Client(StatusCode::UNAUTHORIZED, e.to_string())
        }
        other => ApiError::bad(other.to_string()),
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON body the extractor refused: 400, except a body over `limits.max_body_bytes`, which is
/// 413 Payload Too Large (found by worker_more.rs: it was reported as a 400 "invalid body").
fn json_rejection(what: &str, e: axum::extract::rejection::JsonRejection) -> ApiError {
    let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::Client(status, format!("invalid {what} body: {}", e.body_text()))
}

/// A request body that sends nothing for this long fails (the handler answers 400).
pub const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// A handler that has not answered after this long is answered 408 Request Timeout (long enough for
/// a large dataset upload; a model download's body streams after the answer and is not cut).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The router with every route.
pub fn router(worker: Arc<Worker>) -> Router {
    let upload_limit = usize::try_from(worker.config.limits.max_upload_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(64 << 10);
    let body_limit = worker.config.limits.max_body_bytes;
    routes(upload_limit)
        .into_iter()
        .fold(Router::new(), |r, (path, method_router)| {
            r.route(path, method_router)
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            BODY_IDLE_TIMEOUT,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(
            worker.clone(),
            count_responses,
        ))
        .layer(axum::middleware::from_fn(error::request_id))
        .with_state(worker)
}

/// Every route: its path and handlers. The one list `router` mounts and the unit test compares with
/// `/openapi.json`'s paths.
fn routes(upload_limit: usize) -> Vec<(&'static str, MethodRouter<Arc<Worker>>)> {
    vec![
        ("/v1/user/{addr}/task", post(create_task).get(list_tasks)),
        ("/v1/user/{addr}/task/{id}", get(get_task)),
        ("/v1/user/{addr}/task/{id}/cancel", post(cancel_task)),
        ("/v1/user/{addr}/task/{id}/log", get(task_log)),
        ("/v1/user/{addr}/task/{id}/report", get(task_report)),
        (
            "/v1/user/{addr}/task/{id}/checkpoints",
            get(task_checkpoints),
        ),
        ("/v1/user/{addr}/task/{id}/lora", post(download_lora)),
        (
            "/v1/user/{addr}/dataset",
            post(upload_dataset).layer(DefaultBodyLimit::max(upload_limit)),
        ),
        ("/v1/task/pending", get(pending)),
        ("/v1/quote", get(quote)),
        ("/v1/config", get(measured_config)),
        ("/v1/model", get(list_models)),
        ("/v1/model/{name}", get(get_model)),
        ("/v1/model/desc/{name}", get(model_desc)),
        ("/metrics", get(metrics)),
        ("/openapi.json", get(openapi)),
        ("/healthz", get(|| async { "ok" })),
    ]
}

async fn count_responses(
    State(worker): State<Arc<Worker>>,
    matched: Option<axum::extract::MatchedPath>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let res = next.run(req).await;
    worker
        .metrics
        .http
        .get_or_create(&crate::metrics::HttpLabel {
            route,
            status: res.status().as_u16(),
        })
        .inc();
    res
}

fn parse_addr(addr: &str) -> ApiResult<alloy::primitives::Address> {
    request::parse_address("user address in the URL", addr).map_err(request_err)
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The task as 0G's broker returns it, plus sealtune's extra fields.
fn task_json(t: &Task) -> Value {
    json!({
        "id": t.id,
        "createdAt": rfc3339(t.created_at),
        "updatedAt": rfc3339(t.updated_at),
        "userAddress": address_text(t.user_address),
        "preTrainedModelHash": t.pre_trained_model_hash.as_str(),
        "datasetHash": t.dataset_hash.as_str(),
        "trainingParams": t.training_params.as_str(),
        "fee": t.task_fee.unwrap_or(t.fee).to_string(),
        "nonce": t.nonce.to_string(),
        // A create-task signature is usable once and never shown again (PROTOCOL.md §2): the field
        // stays for the official CLI, which reads it, but is empty.
        "signature": "",
        "progress": t.progress.as_str(),
        "deliverIndex": t.deliver_index.map(|i| i.to_string()),
        "deliverTime": t.deliver_time.map(rfc3339),
        "modelType": t.model_type.as_str(),
        "wait": t.wait,
        "failReason": t.fail_reason,
        "tokens": t.token_count,
        "modelRootHash": t.model_root_hash.map(|r| r.to_string()),
        "settledFee": t.settled_fee.map(|f| f.to_string()),
        "settleTx": t.settle_tx.map(|h| h.to_string()),
    })
}

async fn own_task(worker: &Worker, addr: &str, id: &str) -> ApiResult<Task> {
    let user = parse_addr(addr)?;
    let task = worker.store.get(id).await?;
    match task {
        Some(t) if t.user_address == user => Ok(t),
        // Another customer's task looks exactly like a missing one.
        _ => Err(ApiError::not_found(format!(
            "task {id} not found for {user}"
        ))),
    }
}

async fn create_task(
    State(worker): State<Arc<Worker>>,
    Path(addr): Path<String>,
    body: Result<Json<CreateTaskBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(body) = body.map_err(|e| json_rejection("task", e))?;
    let url_user = parse_addr(&addr)?;
    let fee = body.fee.clone().unwrap_or_else(|| "0".to_owned());
    let wire = CreateTask::from_wire(&body.user_address, &body.nonce, &body.dataset_hash, &fee)
        .map_err(request_err)?;
    if wire.user != url_user {
        return Err(ApiError::bad(format!(
            "userAddress {} does not match the address in the URL {url_user}",
            wire.user
        )));
    }
    let model_ref = ModelRef::new(&body.pre_trained_model_hash);
    let model = worker.config.model(&model_ref).ok_or_else(|| {
        let names: Vec<String> = worker
            .config
            .service
            .models
            .iter()
            .map(|m| format!("{} ({})", m.name, m.hash))
            .collect();
        ApiError::bad(format!(
            "unknown preTrainedModelHash {}; this provider offers: {}",
            body.pre_trained_model_hash,
            names.join(", ")
        ))
    })?;
    let training_params = TrainingParams::new(&body.training_params);
    training_params.epochs(model).map_err(ApiError::bad)?;
    let dataset_hash = DatasetHash::parse(&body.dataset_hash).ok_or_else(|| {
        ApiError::bad(format!(
            "datasetHash {} is not a 0x-prefixed 32-byte hash",
            body.dataset_hash
        ))
    })?;
    let signature = request::parse_signature(&body.signature).map_err(request_err)?;
    let (public_key, fee_ceiling) = match body.request_version {
        None => {
            let v = wire.verify(&signature).map_err(request_err)?;
            (v.signer.public_key, v.fee_ceiling)
        }
        Some(2) => {
            let request = crate::intake::task_request_v2(
                &worker,
                &body,
                &wire,
                model.hash,
                dataset_hash.hash(),
            );
            let v = request
                .verify(&crate::intake::request_v2_domain(&worker), &signature)
                .map_err(|e| ApiError::Client(StatusCode::UNAUTHORIZED, e.to_string()))?;
            (v.public_key, v.fee_ceiling)
        }
        Some(other) => {
            return Err(ApiError::bad(format!(
                "requestVersion {other} is not supported: send 2 (sealtune's EIP-712 request) or leave it out (0G's request)"
            )));
        }
    };
    // After the signature: nothing about the customer's tasks is told to anyone else.
    crate::pipeline::evaluate::check_request(
        &worker,
        url_user,
        &training_params,
        model,
        body.request_version,
    )
    .await
    .map_err(|e| match e {
        crate::pipeline::evaluate::Refused::NotFound(m) => ApiError::not_found(m),
        crate::pipeline::evaluate::Refused::Bad(m) => ApiError::bad(m),
    })?;
    crate::intake::check_dataset_owner(&worker.store, &worker.files, url_user, dataset_hash.hash())
        .await
        .map_err(|e| match e {
            IntakeError::NotYours { .. } => ApiError::Client(StatusCode::FORBIDDEN, e.to_string()),
            IntakeError::Store(e) => ApiError::from(e),
        })?;
    // A nonce already used on chain is refused now rather than after setup.
    if let Ok(Some(account)) = worker.chain.account(url_user).await
        && wire.nonce <= account.nonce
    {
        return Err(ApiError::bad(format!(
            "nonce {} was already used: it must be greater than the account's nonce {}",
            wire.nonce, account.nonce
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let new = NewTask {
        id: id.clone(),
        user_address: url_user,
        pre_trained_model_hash: model_ref.clone(),
        dataset_hash,
        training_params,
        fee: wire.fee,
        nonce: wire.nonce,
        signature: body.signature.clone(),
        user_public_key: (&public_key).into(),
        fee_ceiling,
        wait: body.wait,
        model_type: model.data_type,
        dataset_type: body.dataset_type.clone(),
    };
    worker
        .store
        .insert_task(&new, worker.config.limits.queue_size, worker.clock.now())
        .await?;
    worker.metrics.tasks_created.inc();
    worker.metrics.state(TaskState::Init);
    worker.task_log(&id, "task accepted and queued").await;
    worker.wake.notify_one();
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    latest: Option<bool>,
    #[serde(default)]
    order: Option<String>,
}

async fn list_tasks(
    State(worker): State<Arc<Worker>>,
    Path(addr): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let user = parse_addr(&addr)?;
    let order = match q.order.as_deref() {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(o) => return Err(ApiError::bad(format!("order must be asc or desc, not {o}"))),
    };
    let tasks = worker
        .store
        .list_user(user, q.latest.unwrap_or(false), order)
        .await?;
    Ok(Json(Value::Array(tasks.iter().map(task_json).collect())))
}

async fn get_task(
    State(worker): State<Arc<Worker>>,
    Path((addr, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(task_json(&own_task(&worker, &addr, &id).await?)))
}

async fn cancel_task(
    State(worker): State<Arc<Worker>>,
    Path((addr, id)): Path<(String, String)>,
    body: Result<Json<SignedBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body.map_err(|e| json_rejection("cancel", e))?;
    let task = own_task(&worker, &addr, &id).await?;
    let uuid = request::parse_task_id(&id).map_err(request_err)?;
    let signature = request::parse_signature(&body.signature).map_err(request_err)?;
    let user = parse_addr(&addr)?;
    request::verify_cancel(user, &uuid, &signature).map_err(request_err)?;
    if task.progress == TaskState::Training {
        return cancel_training(&worker, &task).await;
    }
    if !task.progress.is_cancellable() {
        return Err(ApiError::conflict(format!(
            "task {id} is {}: it can only be cancelled before it is trained",
            task.progress
        )));
    }
    let moved = worker.store.cancel(&id, worker.clock.now()).await?;
    if !moved {
        return Err(ApiError::conflict(format!(
            "task {id} started training meanwhile: it can no longer be cancelled"
        )));
    }
    worker.metrics.state(TaskState::Failed);
    worker
        .task_log(
            &id,
            "task cancelled by the customer before training; nothing is charged",
        )
        .await;
    Ok((StatusCode::OK, "task cancelled").into_response())
}

/// The owner's cancel of a task in `Training` (`pipeline::cancel`: the child stops, nothing is
/// delivered, the penalty share of the fee is charged on chain). Repeating it answers the same.
async fn cancel_training(worker: &Worker, task: &Task) -> ApiResult<Response> {
    let id = &task.id;
    let stopped =
        crate::pipeline::cancel::request(worker, id, crate::pipeline::cancel::BY_CUSTOMER).await?
            || task.cancelled.is_some()
            || worker
                .store
                .get(id)
                .await?
                .is_some_and(|t| t.cancelled.is_some());
    if !stopped {
        return Err(ApiError::conflict(format!(
            "task {id} finished training meanwhile: it can no longer be cancelled"
        )));
    }
    Ok((StatusCode::OK, "task cancelled").into_response())
}

async fn task_log(
    State(worker): State<Arc<Worker>>,
    Path((addr, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    own_task(&worker, &addr, &id).await?;
    let lines = worker.store.read_log(&id).await?;
    let mut text = String::new();
    for (at, message) in lines {
        let ts = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        text.push_str(&format!("[{ts}] {message}\n"));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// The task's signed training report (docs/PROTOCOL.md §9), to its owner, once the model is sealed.
async fn task_report(
    State(worker): State<Arc<Worker>>,
    Path((addr, id)): Path<(String, String)>,
) -> ApiResult<Json<sealtune_protocol::report::SignedReport>> {
    let task = own_task(&worker, &addr, &id).await?;
    match worker.store.report(&id).await? {
        Some(report) => Ok(Json(report)),
        None => Err(ApiError::not_found(format!(
            "task {id} has no training report yet (state {}): it is signed when the model is sealed",
            task.progress
        ))),
    }
}

/// The task's sealed checkpoints, oldest first, to its owner (`pipeline::checkpoint`).
async fn task_checkpoints(
    State(worker): State<Arc<Worker>>,
    Path((addr, id)): Path<(String, String)>,
) -> ApiResult<Json<Vec<sealtune_protocol::api::CheckpointInfo>>> {
    own_task(&worker, &addr, &id).await?;
    let rows = worker.store.checkpoints(&id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| sealtune_protocol::api::CheckpointInfo {
                step: r.step,
                loss: r.loss,
                created_at: r.created_at,
                sealed_bytes: r.sealed_bytes,
            })
            .collect(),
    ))
}

fn parse_ts(v: Option<&Value>) -> ApiResult<u64> {
    match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| ApiError::bad("timestamp must be unix seconds")),
        Some(Value::String(s)) => request::parse_timestamp(s).map_err(request_err),
        _ => Err(ApiError::bad("timestamp (unix seconds) is missing")),
    }
}

async fn download_lora(
    State(worker): State<Arc<Worker>>,
    Path((addr, id)): Path<(String, String)>,
    body: Result<Json<SignedBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body.map_err(|e| json_rejection("download", e))?;
    let task = own_task(&worker, &addr, &id).await?;
    let user = parse_addr(&addr)?;
    let uuid = request::parse_task_id(&id).map_err(request_err)?;
    let ts = parse_ts(body.timestamp.as_ref())?;
    let signature = request::parse_signature(&body.signature).map_err(request_err)?;
    request::verify_lora_download(
        user,
        &uuid,
        ts,
        worker.clock.now().max(0) as u64,
        &signature,
    )
    .map_err(request_err)?;
    if !task.progress.is_delivered() {
        return Err(ApiError::conflict(format!(
            "task {id} is {}: the model is not delivered yet",
            task.progress
        )));
    }
    if task.cleaned_at.is_some() {
        return Err(ApiError::Client(
            StatusCode::GONE,
            format!("task {id}: the retention period is over and the model was deleted"),
        ));
    }
    // Rate limit per customer per minute.
    {
        let minute = worker.clock.now() / 60;
        let mut map = worker.downloads.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(task.user_address).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= worker.config.limits.downloads_per_minute {
            return Err(ApiError::Client(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many downloads: at most {} per minute",
                    worker.config.limits.downloads_per_minute
                ),
            ));
        }
        entry.1 += 1;
    }
    let root = task
        .model_root_hash
        .ok_or_else(|| ApiError::internal("delivered task without a root hash"))?;
    let path = worker.files.path_of(&root).ok_or_else(|| {
        ApiError::Client(
            StatusCode::GONE,
            format!("the model file {root} is no longer stored"),
        )
    })?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(ApiError::internal)?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    worker.metrics.download_bytes.inc_by(len);
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 16);
    let mut res = Response::new(Body::from_stream(stream));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"lora_model_{id}.zip\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

/// `POST /v1/user/:addr/dataset`. The official CLI sends the file before its signature, so the
/// bytes are received into the store's `tmp/` first; only once the signature verifies for the
/// address in the URL are they moved into the store (an identical object already there is kept, a
/// failed upload never deletes one) and the address recorded as an owner of the dataset.
async fn upload_dataset(
    State(worker): State<Arc<Worker>>,
    Path(addr): Path<String>,
    multipart: Multipart,
) -> ApiResult<Json<Value>> {
    parse_addr(&addr)?;
    let limit = worker.config.limits.max_upload_bytes;
    let form = read_upload_form(&worker, multipart, limit).await?;
    let Some(received) = form.file else {
        return Err(ApiError::bad("file field missing"));
    };
    let checked = check_upload_signature(&worker, &addr, &form.signature, &form.timestamp)
        .and_then(|owner| {
            let path = received.path().to_owned();
            let key = worker.attest.dataset_key().public_key();
            crate::confidential::check_upload(&path, owner, &key)
                .map(|sealed| (owner, sealed))
                .map_err(|e| ApiError::Client(StatusCode::FORBIDDEN, e.to_string()))
        });
    let (owner, sealed) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            worker.files.discard(received).await;
            return Err(e);
        }
    };
    let stored = worker
        .files
        .commit_upload(received)
        .map_err(|e| upload_err(e, limit))?;
    worker
        .store
        .record_upload(stored.keccak, owner, worker.clock.now())
        .await?;
    Ok(Json(json!({
        "datasetHash": stored.keccak.to_string(),
        "rootHash": stored.root.to_string(),
        "size": stored.len,
        "encrypted": sealed,
        "message": if sealed {
            "encrypted dataset stored (ciphertext; opened only inside the TEE for its owner's tasks)"
        } else {
            "dataset uploaded to the TEE"
        },
    })))
}

/// The fields of an upload: the file (received, not stored), the signature and the timestamp.
struct UploadForm {
    file: Option<crate::storage::Received>,
    signature: Option<String>,
    timestamp: Option<String>,
}

/// Reads the multipart upload; on any failure, what was received is dropped.
async fn read_upload_form(
    worker: &Worker,
    mut multipart: Multipart,
    limit: u64,
) -> ApiResult<UploadForm> {
    let mut form = UploadForm {
        file: None,
        signature: None,
        timestamp: None,
    };
    let result = async {
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::bad(format!("invalid multipart body: {e}")))?
        {
            match field.name().unwrap_or("") {
                "file" => {
                    let reader = tokio_util::io::StreamReader::new(
                        field.map_err(|e| std::io::Error::other(UploadBodyError(e.to_string()))),
                    );
                    let received = worker
                        .files
                        .receive_upload(reader, limit)
                        .await
                        .map_err(|e| upload_err(e, limit))?;
                    if let Some(earlier) = form.file.replace(received) {
                        worker.files.discard(earlier).await;
                    }
                }
                "signature" => {
                    form.signature = Some(
                        field
                            .text()
                            .await
                            .map_err(|e| ApiError::bad(e.to_string()))?,
                    )
                }
                "timestamp" => {
                    form.timestamp = Some(
                        field
                            .text()
                            .await
                            .map_err(|e| ApiError::bad(e.to_string()))?,
                    )
                }
                _ => {}
            }
        }
        Ok::<(), ApiError>(())
    }
    .await;
    match result {
        Ok(()) => Ok(form),
        Err(e) => {
            if let Some(received) = form.file.take() {
                worker.files.discard(received).await;
            }
            Err(e)
        }
    }
}

/// The upload's signature verifies for the address in the URL at a fresh timestamp: the uploader.
fn check_upload_signature(
    worker: &Worker,
    addr: &str,
    signature: &Option<String>,
    timestamp: &Option<String>,
) -> ApiResult<alloy::primitives::Address> {
    let sig = request::parse_signature(
        signature
            .as_deref()
            .ok_or_else(|| ApiError::bad("signature field missing"))?,
    )
    .map_err(request_err)?;
    let ts = request::parse_timestamp(
        timestamp
            .as_deref()
            .ok_or_else(|| ApiError::bad("timestamp field missing"))?,
    )
    .map_err(request_err)?;
    request::verify_dataset_upload(addr, ts, worker.clock.now().max(0) as u64, &sig)
        .map(|signer| signer.address)
        .map_err(request_err)
}

/// Reading the customer's multipart body failed (their side), as opposed to writing it (ours).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UploadBodyError(String);

/// An upload's failure: too large, empty or a broken body are the customer's; the rest is ours.
fn upload_err(e: crate::storage::StorageError, limit: u64) -> ApiError {
    use crate::storage::StorageError;
    match e {
        StorageError::TooLarge { .. } => ApiError::Client(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the dataset is larger than this provider's limit of {limit} bytes"),
        ),
        StorageError::Empty => ApiError::bad("upload failed: the dataset is empty"),
        StorageError::Io { ref source, .. } if is_disk_full(source) => ApiError::Client(
            StatusCode::INSUFFICIENT_STORAGE,
            "upload failed: the provider's disk is full; nothing was stored, try again later"
                .into(),
        ),
        StorageError::Io { ref source, .. }
            if source
                .get_ref()
                .is_some_and(|inner| inner.is::<UploadBodyError>()) =>
        {
            ApiError::bad(format!("upload failed: reading the body: {source}"))
        }
        other => ApiError::internal(format!("dataset upload: {other}")),
    }
}

#[cfg(test)]
mod upload_tests {
    use super::*;

    /// A full disk is a clear answer for the customer (507), not an internal error.
    #[test]
    fn a_full_disk_is_a_clear_error() {
        for e in [
            std::io::Error::from_raw_os_error(28),
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        ] {
            let err = upload_err(
                crate::storage::StorageError::Io {
                    path: "/x".into(),
                    source: e,
                },
                10,
            );
            match err {
                ApiError::Client(status, msg) => {
                    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
                    assert!(msg.contains("disk is full"), "{msg}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

/// Whether an I/O error says the disk (or the quota) is full.
fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122))
}

async fn pending(State(worker): State<Arc<Worker>>) -> ApiResult<String> {
    Ok(worker.store.pending_count().await?.to_string())
}

#[derive(Deserialize)]
struct QuoteQuery {
    #[serde(default)]
    nonce: Option<String>,
}

async fn quote(
    State(worker): State<Arc<Worker>>,
    Query(q): Query<QuoteQuery>,
) -> ApiResult<Json<Value>> {
    let nonce = match q.nonce {
        None => None,
        Some(n) => {
            let bytes = hex::decode(n.trim_start_matches("0x"))
                .map_err(|_| ApiError::bad("nonce must be 64 hex characters"))?;
            Some(
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| ApiError::bad("nonce must be 32 bytes (64 hex characters)"))?,
            )
        }
    };
    // The attestation source's failure is the provider's: the cause goes to the log, not the caller.
    let body = worker.attest.quote_body(nonce).await.map_err(|e| {
        ApiError::Internal(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no quote available: {e}"),
        )
    })?;
    Ok(Json(body))
}

/// The measured configuration document and its hash (the hash the quote binds and, on dstack,
/// RTMR3 records): a verifier recomputes the hash from the document and reads what it pins.
async fn measured_config(State(worker): State<Arc<Worker>>) -> Json<Value> {
    Json(json!({
        "config_hash": worker.measured.hash.to_string(),
        "document": worker.measured.document,
    }))
}

fn model_json(m: &crate::models::ModelConfig) -> Value {
    json!({
        "name": m.name,
        "hash": m.hash.to_string(),
        "image": m.image,
        "dataType": m.data_type.as_str(),
        "trainingScript": m.training_script.display().to_string(),
        "description": m.description,
        "tokenizer": m.tokenizer,
        "usageFile": m.usage_file.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    })
}

async fn list_models(State(worker): State<Arc<Worker>>) -> Json<Value> {
    Json(Value::Array(
        worker
            .config
            .service
            .models
            .iter()
            .map(model_json)
            .collect(),
    ))
}

async fn get_model(
    State(worker): State<Arc<Worker>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    worker
        .config
        .model(&ModelRef::new(&name))
        .map(|m| Json(model_json(m)))
        .ok_or_else(|| ApiError::not_found(format!("model {name} is not offered here")))
}

async fn model_desc(
    State(worker): State<Arc<Worker>>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let m = worker
        .config
        .model(&ModelRef::new(&name))
        .ok_or_else(|| ApiError::not_found(format!("model {name} is not offered here")))?;
    let path = m
        .usage_file
        .as_ref()
        .ok_or_else(|| ApiError::not_found(format!("model {name} has no usage documentation")))?;
    let bytes = tokio::fs::read(path).await.map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/zip")], bytes).into_response())
}

async fn metrics(State(worker): State<Arc<Worker>>) -> Response {
    if let Ok(n) = worker.store.pending_count().await {
        worker.metrics.pending.set(n as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        worker.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes `router` mounts are exactly the paths `/openapi.json` documents (the methods of each
    /// are checked against the running router in `worker_api.rs`).
    #[test]
    fn openapi_documents_exactly_the_mounted_paths() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let mut documented: Vec<&str> = doc["paths"]
            .as_object()
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut mounted: Vec<&str> = routes(0).into_iter().map(|(p, _)| p).collect();
        documented.sort_unstable();
        mounted.sort_unstable();
        assert_eq!(documented, mounted);
    }
}
