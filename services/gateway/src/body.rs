//! Reading request bodies and query strings at the edge, with the documented errors:
//! `413 PAYLOAD_TOO_LARGE` past the size limit, `400 VALIDATION_ERROR` for malformed
//! JSON or a field of the wrong type, naming the field.

use actix_web::{HttpRequest, web};
use chat_domain::{ApiError, ErrorCode};
use futures_util::StreamExt as _;
use serde_json::{Map, Value};

/// Reads the whole body, refusing more than `limit` bytes without buffering them.
pub async fn read(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let too_large = || ApiError::new(ErrorCode::PayloadTooLarge, format!("Request body must be at most {limit} bytes"));
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::validation("body", format!("Could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A request body that is a JSON object, with typed field access.
#[derive(Debug)]
pub struct Fields(Map<String, Value>);

impl Fields {
    /// Parses a JSON object body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::validation("body", "Request body must be a JSON object"));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            Ok(_) => Err(ApiError::validation("body", "Request body must be a JSON object")),
            Err(e) => Err(ApiError::validation("body", format!("Malformed JSON: {e}"))),
        }
    }

    /// Reads and parses in one go.
    pub async fn read(req: &HttpRequest, payload: web::Payload, limit: usize) -> Result<Self, ApiError> {
        let body = read(req, payload, limit).await?;
        Self::parse(&body)
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    pub fn required_str(&self, field: &str) -> Result<&str, ApiError> {
        self.optional_str(field)?.ok_or_else(|| ApiError::validation(field, format!("{field} is required")))
    }

    pub fn optional_str(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::validation(field, format!("{field} must be a string"))),
        }
    }

    pub fn optional_str_array(&self, field: &str) -> Result<Option<Vec<&str>>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| ApiError::validation(field, format!("{field} must be an array of strings")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::validation(field, format!("{field} must be an array of strings"))),
        }
    }

    pub fn optional_object(&self, field: &str) -> Result<Option<Value>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(_) => Err(ApiError::validation(field, format!("{field} must be a JSON object"))),
        }
    }

    pub fn optional_i64(&self, field: &str) -> Result<Option<i64>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => {
                v.as_i64().map(Some).ok_or_else(|| ApiError::validation(field, format!("{field} must be an integer")))
            }
        }
    }
}

/// Query-string parameters.
#[derive(Debug)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(req: &HttpRequest) -> Result<Self, ApiError> {
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| Query(q.into_inner()))
            .map_err(|e| ApiError::validation("query", format!("Malformed query string: {e}")))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// A non-empty string parameter.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name)
    }

    /// An optional integer parameter within `min..=max`.
    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::validation(name, format!("{name} must be an integer from {min} to {max}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_and_wrong_types_name_the_field() {
        assert_eq!(Fields::parse(b"{").err().and_then(|e| e.field), Some("body".into()));
        assert_eq!(Fields::parse(b"[1]").err().and_then(|e| e.field), Some("body".into()));
        let f = Fields::parse(br#"{"type": 5, "members": ["a", 1], "meta": "x"}"#);
        let f = f.ok();
        let f = f.as_ref();
        assert_eq!(f.and_then(|f| f.required_str("type").err()).and_then(|e| e.field), Some("type".into()));
        assert_eq!(f.and_then(|f| f.optional_str_array("members").err()).and_then(|e| e.field), Some("members".into()));
        assert_eq!(f.and_then(|f| f.optional_object("meta").err()).and_then(|e| e.field), Some("meta".into()));
        assert_eq!(
            f.and_then(|f| f.required_str("content").err()).map(|e| e.message),
            Some("content is required".into())
        );
    }
}
