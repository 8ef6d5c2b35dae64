//! Reading request bodies and query strings at the edge, with the documented errors:
//! `413 PAYLOAD_TOO_LARGE` past the size limit, `400 VALIDATION_ERROR` for malformed
//! JSON, JSON nested deeper than `chat_domain::json::MAX_DEPTH`, a number that would not
//! read back as written (`chat_domain::json::unfaithful_number`), or a field of the
//! wrong type, naming the field.
//!
//! Request bodies are typed structs per endpoint whose fields are read loosely
//! (`Option<Value>`: any JSON deserializes), then checked by the endpoint's
//! conversion into its command with the [`field`] readers, so a wrong type is an error
//! naming the field in the document's words rather than serde's.

use actix_web::HttpRequest;
use actix_web::error::PayloadError;
use actix_web::web::{self, Bytes};
use chat_domain::{ApiError, ErrorCode};
use futures_util::{Stream, StreamExt as _};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Reads the whole body, refusing more than `limit` bytes without buffering them.
pub async fn read(
    req: &HttpRequest,
    mut payload: impl Stream<Item = Result<Bytes, PayloadError>> + Unpin,
    limit: usize,
) -> Result<Bytes, ApiError> {
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
        let chunk = chunk.map_err(|e| {
            timed_out(&e)
                .unwrap_or_else(|| ApiError::validation("body", format!("Could not read the request body: {e}")))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// What a body that stops arriving in time fails with, as the app's deadline on request
/// bodies (`GATEWAY_BODY_TIMEOUT_SECS`) words it: [`timed_out`] finds it in an error
/// however a reader (multipart, JSON) wrapped it.
pub const BODY_TIMED_OUT: &str = "the request body did not arrive in time";

/// The error a body that missed its deadline is answered with (`408 REQUEST_TIMEOUT`),
/// when `e` or an error it wraps (its `source` chain) is that.
pub fn timed_out(e: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    let mut at = Some(e);
    while let Some(e) = at {
        if e.to_string().contains(BODY_TIMED_OUT) {
            return Some(
                ApiError::new(ErrorCode::RequestTimeout, "The request body did not arrive in time").with_field("body"),
            );
        }
        at = e.source();
    }
    None
}

/// Whether a body is empty (or only whitespace).
pub fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// Parses a body that must be a JSON object into `T` (a struct of loosely typed fields).
pub fn object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let not_object = || ApiError::validation("body", "Request body must be a JSON object");
    if is_blank(body) {
        return Err(not_object());
    }
    if chat_domain::json::nests_deeper_than(body, chat_domain::json::MAX_DEPTH) {
        return Err(chat_domain::json::too_deep("body"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(_)) if let Some(n) = chat_domain::json::unfaithful_number(body) => {
            Err(chat_domain::json::unfaithful("body", &n))
        }
        Ok(v @ Value::Object(_)) => {
            serde_json::from_value(v).map_err(|e| ApiError::validation("body", format!("Invalid request body: {e}")))
        }
        Ok(_) => Err(not_object()),
        Err(e) => Err(ApiError::validation("body", format!("Malformed JSON: {e}"))),
    }
}

/// Readers of loosely typed fields (`null` counts as absent), with the documented
/// messages.
pub mod field {
    use chat_domain::ApiError;
    use serde_json::Value;

    fn present(v: Option<Value>) -> Option<Value> {
        v.filter(|v| !v.is_null())
    }

    pub fn required_str(name: &str, v: Option<Value>) -> Result<String, ApiError> {
        optional_str(name, v)?.ok_or_else(|| ApiError::validation(name, format!("{name} is required")))
    }

    pub fn optional_str(name: &str, v: Option<Value>) -> Result<Option<String>, ApiError> {
        match present(v) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::validation(name, format!("{name} must be a string"))),
        }
    }

    pub fn optional_str_array(name: &str, v: Option<Value>) -> Result<Option<Vec<String>>, ApiError> {
        let bad = || ApiError::validation(name, format!("{name} must be an array of strings"));
        match present(v) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(bad()),
        }
    }

    pub fn optional_object(name: &str, v: Option<Value>) -> Result<Option<Value>, ApiError> {
        match present(v) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(_) => Err(ApiError::validation(name, format!("{name} must be a JSON object"))),
        }
    }

    pub fn optional_i64(name: &str, v: Option<Value>) -> Result<Option<i64>, ApiError> {
        match present(v) {
            None => Ok(None),
            Some(v) => {
                v.as_i64().map(Some).ok_or_else(|| ApiError::validation(name, format!("{name} must be an integer")))
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

    /// An optional boolean parameter (`true` or `false`).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::validation(name, format!("{name} must be true or false"))),
        }
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

    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(rename = "type", default)]
        kind: Option<Value>,
        #[serde(default)]
        members: Option<Value>,
        #[serde(default)]
        meta: Option<Value>,
        #[serde(default)]
        content: Option<Value>,
    }

    #[test]
    fn malformed_and_wrong_types_name_the_field() {
        let field_of = |r: Result<Body, ApiError>| r.err().and_then(|e| e.field);
        assert_eq!(field_of(object(b"{")), Some("body".into()));
        assert_eq!(field_of(object(b"[1]")), Some("body".into()));
        assert_eq!(field_of(object(b"  ")), Some("body".into()));
        let Ok(b) = object::<Body>(br#"{"type": 5, "members": ["a", 1], "meta": "x"}"#) else {
            panic!("an object with any fields parses");
        };
        assert_eq!(field::required_str("type", b.kind).err().and_then(|e| e.field), Some("type".into()));
        assert_eq!(field::optional_str_array("members", b.members).err().and_then(|e| e.field), Some("members".into()));
        assert_eq!(field::optional_object("meta", b.meta).err().and_then(|e| e.field), Some("meta".into()));
        assert_eq!(
            field::required_str("content", b.content).err().map(|e| e.message),
            Some("content is required".into())
        );
        assert_eq!(field::optional_str("name", Some(Value::Null)).ok(), Some(None), "null is absent");
        let deep = format!("{}{}", r#"{"meta":"#.repeat(33), "1".to_owned() + &"}".repeat(33));
        assert_eq!(field_of(object(deep.as_bytes())), Some("body".into()), "33 levels are too deep");
        let ok = format!("{}{}", r#"{"meta":"#.repeat(32), "1".to_owned() + &"}".repeat(32));
        assert!(object::<Body>(ok.as_bytes()).is_ok(), "32 levels are fine");
    }
}
