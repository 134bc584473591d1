//! The API's one error type and the request id every answer carries.
//!
//! Whose fault decides what the customer reads: a customer's mistake ([`ApiError::Client`]) keeps its
//! precise message; a failure on the provider's side ([`ApiError::Internal`]) answers with a generic
//! message and the request id only, and the cause goes to the worker's log under that id. The error
//! body stays `{"error": "..."}` (PROTOCOL.md §2, the official CLI prints `error`), with `requestId`
//! added to internal failures. Every answer has an `x-request-id` header.
use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::Instrument;

/// The response header with the request's id.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// What an internal failure tells the customer (with the request id).
pub const INTERNAL_MESSAGE: &str = "internal error";

/// An API error.
#[derive(Debug)]
pub enum ApiError {
    /// The customer's mistake, or a state they can act on: the status and a message for them.
    Client(StatusCode, String),
    /// A failure on the provider's side: the status and the cause, which only the log sees.
    Internal(StatusCode, String),
}

impl ApiError {
    /// 400 with a message for the customer.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::Client(StatusCode::BAD_REQUEST, msg.into())
    }

    /// 404 with a message for the customer.
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError::Client(StatusCode::NOT_FOUND, msg.into())
    }

    /// 409 with a message for the customer.
    pub fn conflict(msg: impl Into<String>) -> Self {
        ApiError::Client(StatusCode::CONFLICT, msg.into())
    }

    /// 500: the cause is logged with the request id, never answered.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(StatusCode::INTERNAL_SERVER_ERROR, cause.to_string())
    }
}

/// The cause of an internal failure, handed from [`ApiError`]'s response to [`request_id`], which
/// logs it with the id.
#[derive(Clone)]
struct InternalCause(String);

/// Marks a 5xx answer an [`ApiError::Client`] chose to give with its message (e.g. a full queue).
#[derive(Clone)]
struct ClientMessage;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Client(status, message) => {
                let mut res = (status, Json(json!({ "error": message }))).into_response();
                res.extensions_mut().insert(ClientMessage);
                res
            }
            ApiError::Internal(status, cause) => {
                let mut res = (status, Json(json!({ "error": INTERNAL_MESSAGE }))).into_response();
                res.extensions_mut().insert(InternalCause(cause));
                res
            }
        }
    }
}

/// Middleware (outermost): gives the request an id, runs it inside a `request{id=…}` log span, puts
/// the id in the `x-request-id` header of the answer, and turns every internal failure into the
/// generic body with the id while logging the cause. A 5xx that did not come from an [`ApiError`]
/// (an extractor, a future handler) is treated the same way, so no 5xx carries internal text.
pub async fn request_id(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", id = %id);
    let res = next.run(req).instrument(span).await;
    let status = res.status();
    let mut res = match res.extensions().get::<InternalCause>().cloned() {
        Some(InternalCause(cause)) => {
            tracing::error!(request_id = %id, %method, %path, %status, "internal error: {cause}");
            internal_body(status, &id)
        }
        None if status.is_server_error() && res.extensions().get::<ClientMessage>().is_none() => {
            tracing::error!(request_id = %id, %method, %path, %status, "internal error: a {status} answer without an ApiError");
            internal_body(status, &id)
        }
        None => res,
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    res
}

fn internal_body(status: StatusCode, id: &str) -> Response {
    (
        status,
        Json(json!({
            "error": format!("{INTERNAL_MESSAGE} (request id {id})"),
            "requestId": id,
        })),
    )
        .into_response()
}
