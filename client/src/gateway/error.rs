//! The gateway's one error type and its single mapping to OpenAI's error shape:
//! `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status. The message says
//! what to do next (the client library's hint, e.g. the command that funds the sub-account); the
//! state database's internals are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::store::StoreError;
use crate::error::ClientError;

/// An OpenAI error object (also a failed job's `error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorObject {
    /// A machine-readable code.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
    /// The request parameter at fault, if any.
    pub param: Option<String>,
}

/// Why a gateway request failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is invalid (400).
    #[error("{message}")]
    Invalid {
        /// The code.
        code: &'static str,
        /// The message.
        message: String,
        /// The parameter.
        param: Option<&'static str>,
    },
    /// No such file or job (404).
    #[error("{message}")]
    NotFound {
        /// The code.
        code: &'static str,
        /// The message.
        message: String,
        /// The parameter.
        param: Option<&'static str>,
    },
    /// The request needs an API key the caller did not give (401).
    #[error("invalid or missing API key (Authorization: Bearer …) for this gateway")]
    Unauthorized,
    /// The chain, the provider or a local check refused.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The state database failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `Result` with [`GatewayError`].
pub type GatewayResult<T> = std::result::Result<T, GatewayError>;

impl GatewayError {
    /// A 400 for `param`.
    pub fn invalid(
        code: &'static str,
        param: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
            param,
        }
    }

    /// A 404 for `param`.
    pub fn not_found(
        code: &'static str,
        param: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
            param,
        }
    }

    /// The HTTP status and the OpenAI error object.
    pub fn to_openai(&self) -> (StatusCode, &'static str, ErrorObject) {
        let obj = |code: &str, message: String, param: Option<&str>| ErrorObject {
            code: code.to_owned(),
            message,
            param: param.map(str::to_owned),
        };
        match self {
            Self::Invalid {
                code,
                message,
                param,
            } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                obj(code, message.clone(), *param),
            ),
            Self::NotFound {
                code,
                message,
                param,
            } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                obj(code, message.clone(), *param),
            ),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                obj("invalid_api_key", self.to_string(), None),
            ),
            Self::Client(e) => {
                let (status, kind) = client_status(e);
                (status, kind, client_error_object(e))
            }
            Self::Store(e) => {
                eprintln!("sealtune gateway: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    obj(
                        "internal_error",
                        "the gateway's state database failed (see the gateway's log)".into(),
                        None,
                    ),
                )
            }
        }
    }
}

fn client_status(e: &ClientError) -> (StatusCode, &'static str) {
    match e {
        ClientError::InvalidInput(_) | ClientError::Amount(_) | ClientError::Fee(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request_error")
        }
        ClientError::BalanceTooLow { .. }
        | ClientError::NoSubAccount(_)
        | ClientError::NoLedger(_) => (StatusCode::BAD_REQUEST, "insufficient_quota"),
        ClientError::UnknownProvider(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        ClientError::Rpc { .. }
        | ClientError::Unreachable { .. }
        | ClientError::Http { .. }
        | ClientError::BadResponse { .. } => (StatusCode::BAD_GATEWAY, "server_error"),
        ClientError::NotReady(_) => (StatusCode::CONFLICT, "invalid_request_error"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    }
}

/// The OpenAI error object of a client-library error: its kind as the code (balance errors as
/// `insufficient_balance`), its message with the hint appended.
pub fn client_error_object(e: &ClientError) -> ErrorObject {
    let code = match e {
        ClientError::BalanceTooLow { .. }
        | ClientError::NoSubAccount(_)
        | ClientError::NoLedger(_) => "insufficient_balance",
        other => other.kind(),
    };
    let message = match e.hint() {
        Some(h) => format!("{e}; {h}"),
        None => e.to_string(),
    };
    ErrorObject {
        code: code.to_owned(),
        message,
        param: None,
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (status, kind, e) = self.to_openai();
        let body = json!({ "error": {
            "message": e.message,
            "type": kind,
            "param": e.param,
            "code": e.code,
        }});
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use alloy::primitives::{Address, U256};

    #[test]
    fn insufficient_balance_says_how_much_and_the_command_to_fund() {
        let provider = Address::repeat_byte(0x11);
        let e = GatewayError::from(ClientError::BalanceTooLow {
            provider,
            spendable: U256::from(5u8),
            needed: U256::from(7u8),
        });
        let (status, kind, obj) = e.to_openai();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(kind, "insufficient_quota");
        assert_eq!(obj.code, "insufficient_balance");
        assert!(obj.message.contains("5 neuron"), "{}", obj.message);
        assert!(obj.message.contains("7 needed"), "{}", obj.message);
        assert!(
            obj.message
                .contains(&format!("sealtune transfer-fund --provider {provider}")),
            "{}",
            obj.message
        );
    }
}
