//! The reply envelope of every command: `{"ok":true,"data":...}` on success,
//! `{"ok":false,"error":{"code","message","field"}}` on failure.

use bytes::Bytes;
use chat_domain::ApiError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct OkRef<'a, T> {
    ok: bool,
    data: &'a T,
}

#[derive(Serialize)]
struct ErrRef<'a> {
    ok: bool,
    error: &'a ApiError,
}

#[derive(Deserialize)]
struct Raw<T> {
    ok: bool,
    data: Option<T>,
    error: Option<ApiError>,
}

/// Encodes a successful reply. Serializing our own reply types cannot fail in
/// practice; if it ever does, the caller gets an internal error envelope instead.
pub fn ok<T: Serialize>(data: &T) -> Bytes {
    match serde_json::to_vec(&OkRef { ok: true, data }) {
        Ok(v) => Bytes::from(v),
        Err(e) => {
            tracing::error!(error = %e, "could not serialize a reply");
            err(&ApiError::internal())
        }
    }
}

/// Encodes an error reply.
pub fn err(error: &ApiError) -> Bytes {
    let v = serde_json::to_vec(&ErrRef { ok: false, error }).unwrap_or_else(|_| {
        br#"{"ok":false,"error":{"code":"INTERNAL_ERROR","message":"Internal server error"}}"#.to_vec()
    });
    Bytes::from(v)
}

/// Decodes a reply into the command's reply type or its error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ApiError> {
    let raw: Raw<T> = serde_json::from_slice(payload).map_err(|e| {
        tracing::error!(error = %e, "malformed reply envelope");
        ApiError::internal()
    })?;
    match (raw.ok, raw.data, raw.error) {
        (true, Some(data), _) => Ok(data),
        (false, _, Some(error)) => Err(error),
        _ => {
            tracing::error!("reply envelope without data or error");
            Err(ApiError::internal())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::ErrorCode;

    #[test]
    fn round_trips() -> Result<(), ApiError> {
        let b = ok(&vec![1, 2, 3]);
        assert_eq!(&b[..], br#"{"ok":true,"data":[1,2,3]}"#);
        assert_eq!(decode::<Vec<i32>>(&b)?, vec![1, 2, 3]);
        let e = err(&ApiError::not_found("Room not found"));
        let back = decode::<Vec<i32>>(&e).err().map(|e| e.code);
        assert_eq!(back, Some(ErrorCode::NotFound));
        assert_eq!(decode::<Vec<i32>>(b"nonsense").err().map(|e| e.code), Some(ErrorCode::InternalError));
        Ok(())
    }
}
