//! The answers of `/api/chat`: `{"success": true, "data": {...}}` and, for every
//! error of the dialect (400, 401, 403, 404, 413, 415, 429, 500, 503), the Express-style
//! `{"success": false, "message": "...", "code": "NOT_FOUND"}`, with `field` when one
//! request field is at fault (named as this dialect names it).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use chat_domain::{ApiError, ErrorCode};
use gateway_core::openapi::ErrorShape;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

/// An error of the chat dialect.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ChatError(pub ApiError);

impl From<ApiError> for ChatError {
    fn from(e: ApiError) -> Self {
        ChatError(e)
    }
}

/// The dialect's name of a field the core names otherwise.
fn field_name(field: &str) -> &str {
    match field {
        "reply_to" => "replyToMessageId",
        "parent_id" => "parentId",
        "meta" => "metadata",
        "participants" | "members" => "participantIds",
        other => other,
    }
}

impl ResponseError for ChatError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({"success": false, "message": self.0.message, "code": self.0.code.as_str()});
        if let Some(field) = &self.0.field {
            body["field"] = json!(field_name(field));
        }
        HttpResponse::build(self.status_code()).json(body)
    }
}

/// What the dialect's handlers return.
pub type ChatResult = Result<HttpResponse, ChatError>;

/// The envelope of every success.
#[derive(Serialize)]
struct Success<T> {
    success: bool,
    data: T,
}

/// `{"success": true, "data": data}` with `status`.
pub(crate) fn ok(status: StatusCode, data: impl Serialize) -> HttpResponse {
    HttpResponse::build(status).json(Success { success: true, data })
}

/// The 404 of a path (or method) under `/api/chat` that no route serves.
pub async fn no_route() -> ChatResult {
    Err(ChatError(ApiError::new(ErrorCode::NotFound, "No such endpoint")))
}

/// The error of every `/api/chat` route.
#[derive(JsonSchema)]
#[schemars(rename = "ChatErrorBody")]
#[allow(dead_code)] // only its schema is used
pub struct ChatErrorBody {
    /// Always `false`.
    #[schemars(extend("const" = false))]
    success: bool,
    message: String,
    code: ErrorCode,
    /// The request field at fault (as this dialect names it), for `VALIDATION_ERROR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

/// [`ChatError`]'s shape in the OpenAPI document; JSON replies are wrapped in
/// `{"success": true, "data": ...}`.
pub const SHAPE: ErrorShape = ErrorShape {
    name: "ChatError",
    schema: |g| g.subschema_for::<ChatErrorBody>(),
    example: |code, message| json!({"success": false, "message": message, "code": code}),
    envelope: Some(|data| {
        json!({
            "type": "object",
            "properties": {"success": {"const": true}, "data": data},
            "required": ["success", "data"],
        })
    }),
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[actix_web::test]
    async fn errors_have_the_express_shape() -> anyhow::Result<()> {
        let res = ChatError(ApiError::validation("reply_to", "bad")).error_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let body = actix_web::body::to_bytes(res.into_body()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let v: Value = serde_json::from_slice(&body)?;
        assert_eq!(
            v,
            json!({"success": false, "message": "bad", "code": "VALIDATION_ERROR", "field": "replyToMessageId"})
        );
        Ok(())
    }
}
