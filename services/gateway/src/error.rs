//! REST errors: `{"success":false,"error":{"code","message","field"}}` with the status
//! the code maps to.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use chat_domain::{ApiError, ErrorCode};

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
        HttpResponse::build(self.status_code()).json(serde_json::json!({"success": false, "error": self.0}))
    }
}

/// What REST handlers return.
pub type HttpResult<T = HttpResponse> = Result<T, HttpError>;

/// The JSON 404 for paths no route matches.
pub async fn no_route() -> HttpResult {
    Err(HttpError(ApiError::new(ErrorCode::NotFound, "No such endpoint")))
}
