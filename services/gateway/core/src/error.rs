//! The gateway's default error shape: `{"success":false,"error":{"code","message","field"}}`
//! with the status the code maps to. `rest-rooms.md` defines it; every route outside a
//! dialect with its own shape answers in it (the `/api/v1` helpers, the pages, the
//! probes, a path no route serves), and [`SHAPE`] documents it.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use chat_domain::{ApiError, ErrorCode};
use schemars::JsonSchema;
use serde_json::json;

use crate::openapi::ErrorShape;

/// An [`ApiError`] as an actix response.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        // A wait the service knew (a room's slow mode) goes out as the rate limiter's does.
        if let Some(secs) = self.0.retry_after {
            res.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        res.json(serde_json::json!({"success": false, "error": self.0}))
    }
}

/// What REST handlers return.
pub type HttpResult<T = HttpResponse> = Result<T, HttpError>;

/// The JSON 404 for paths no route matches.
pub async fn no_route() -> HttpResult {
    Err(HttpError(ApiError::new(ErrorCode::NotFound, "No such endpoint")))
}

/// The error of every route outside `/api/chat`.
#[derive(JsonSchema)]
#[schemars(rename = "ErrorBody", extend("examples" = [{"success": false, "error": {"code": "VALIDATION_ERROR", "message": "content must not be empty", "field": "content"}}]))]
#[allow(dead_code)] // only its schema is used
pub struct ErrorBody {
    /// Always `false`.
    #[schemars(extend("const" = false))]
    success: bool,
    error: ApiError,
}

/// [`HttpError`]'s shape in the OpenAPI document; replies go as they are.
pub const SHAPE: ErrorShape = ErrorShape {
    name: "Error",
    schema: |g| g.subschema_for::<ErrorBody>(),
    example: |code, message| json!({"success": false, "error": {"code": code, "message": message}}),
    envelope: None,
};
