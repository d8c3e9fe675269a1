//! One error type for the whole server, rendered as the spec's standard error
//! response `{errcode, error}` with its HTTP status (Client-Server API,
//! "Standard error response"), or as a user-interactive-auth 401.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use ruma::api::{
    client::uiaa::UiaaInfo,
    error::{ErrorKind, StandardErrorBody},
};

use crate::storage::StorageError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// A Matrix error the client can act on.
    Matrix {
        status: StatusCode,
        kind: ErrorKind,
        message: String,
    },
    /// User-interactive authentication is needed, or a stage failed (401 with flows).
    Uiaa(Box<UiaaInfo>),
    /// Our fault; logged in full, the client sees only `M_UNKNOWN`.
    Internal(String),
}

impl Error {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Error {
        Error::Matrix {
            status,
            kind,
            message: message.into(),
        }
    }
    pub fn bad_json(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, ErrorKind::BadJson, message)
    }
    pub fn not_json(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, ErrorKind::NotJson, message)
    }
    pub fn invalid_param(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }
    pub fn unrecognized(message: impl Into<String>) -> Error {
        Error::new(StatusCode::NOT_FOUND, ErrorKind::Unrecognized, message)
    }
    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }
    /// Another server failed us (unreachable, or answered nonsense) while
    /// serving a client's request: 502 `M_UNKNOWN` with the reason.
    pub fn bad_gateway(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, message)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Matrix { status, .. } => *status,
            Error::Uiaa(_) => StatusCode::UNAUTHORIZED,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Matrix {
                status,
                kind,
                message,
            } => {
                write!(f, "{} {}: {message}", status.as_u16(), kind.errcode())
            }
            Error::Uiaa(_) => write!(f, "user-interactive authentication required"),
            Error::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<StorageError> for Error {
    fn from(error: StorageError) -> Error {
        Error::Internal(format!("storage: {error}"))
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(error: tokio::task::JoinError) -> Error {
        Error::Internal(format!("background task failed: {error}"))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match self {
            Error::Matrix { kind, message, .. } => {
                serde_json::to_vec(&StandardErrorBody::new(kind, message))
            }
            Error::Uiaa(info) => serde_json::to_vec(&info),
            Error::Internal(message) => {
                tracing::error!(%message, "internal error");
                serde_json::to_vec(&StandardErrorBody::new(
                    ErrorKind::Unknown,
                    "Internal server error".to_owned(),
                ))
            }
        };
        let body = body.unwrap_or_else(|_| {
            br#"{"errcode":"M_UNKNOWN","error":"Internal server error"}"#.to_vec()
        });
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
