//! Stable machine-readable error codes and the error body shared by REST, WebSocket
//! and bus replies. A code knows its HTTP status; the message is for humans and never
//! carries internal causes (those go to the logs).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every error a client or another service can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    AuthenticationError,
    Forbidden,
    /// A muted room member tried to send or type (room moderation, `403`).
    Muted,
    /// A user banned from a room, or an attempt to add them back (room moderation, `403`).
    Banned,
    NotFound,
    Conflict,
    PayloadTooLarge,
    /// An upload whose type (sniffed from its bytes) the tenant does not allow.
    UnsupportedMediaType,
    RateLimitExceeded,
    /// A request (its head or its body) that did not arrive in time: a client sending
    /// slowly holds a connection and a worker's buffer, so it is cut off.
    RequestTimeout,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    /// The HTTP status this code maps to on the REST API.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::ValidationError => 400,
            ErrorCode::AuthenticationError => 401,
            ErrorCode::Forbidden | ErrorCode::Muted | ErrorCode::Banned => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimitExceeded => 429,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::InternalError => 500,
        }
    }

    /// The wire spelling, e.g. `VALIDATION_ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::AuthenticationError => "AUTHENTICATION_ERROR",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Muted => "MUTED",
            ErrorCode::Banned => "BANNED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error body: `{"code","message","field"}`. REST wraps it as
/// `{"success":false,"error":...}`, the bus as `{"ok":false,"error":...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault, for validation errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait before trying again, for a `RATE_LIMIT_EXCEEDED` whose wait the
    /// answering service knows (a room's slow mode); REST sends it as `Retry-After` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None, retry_after: None }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: ErrorCode::ValidationError, message: message.into(), field: Some(field.into()), retry_after: None }
    }

    pub fn authentication(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AuthenticationError, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// A muted member's send or typing (`MUTED`, `403`).
    pub fn muted(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Muted, message)
    }

    /// A banned user, or adding them back (`BANNED`, `403`).
    pub fn banned(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Banned, message)
    }

    /// A send refused by a room's slow mode: `RATE_LIMIT_EXCEEDED` with the wait.
    pub fn slow_mode(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                ErrorCode::RateLimitExceeded,
                format!("Slow mode is on in this room. Try again in {retry_after} seconds"),
            )
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServiceUnavailable, message)
    }

    /// An internal failure. The caller logs the cause; the client sees only this.
    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "Internal server error")
    }

    /// The same error, naming the request field at fault.
    pub fn with_field(self, field: impl Into<String>) -> Self {
        Self { field: Some(field.into()), ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_matches_the_documented_shape() -> Result<(), serde_json::Error> {
        let e = ApiError::validation("type", "Invalid room type. Must be one of: dm, group, channel");
        let v = serde_json::to_value(&e)?;
        assert_eq!(v["code"], "VALIDATION_ERROR");
        assert_eq!(v["field"], "type");
        let auth = serde_json::to_value(ApiError::authentication("Invalid API key"))?;
        assert!(auth.get("field").is_none(), "field is omitted when there is none");
        Ok(())
    }

    #[test]
    fn codes_map_to_statuses() {
        assert_eq!(ErrorCode::RateLimitExceeded.http_status(), 429);
        assert_eq!(ErrorCode::PayloadTooLarge.http_status(), 413);
        assert_eq!(ErrorCode::Conflict.as_str(), "CONFLICT");
    }
}
