//! Static files from a configured directory (`GATEWAY_STATIC_DIR`), served at
//! `GET /static/{file}` from the gateway's own origin: a browser page there (the demo
//! page of `ws-rooms.md`, `docs/demo/`) calls the gateway's relative `/api/v1/...`
//! URLs and opens its WebSockets with no cross-origin setup. Files of that one
//! directory only (no subdirectories), named with `[A-Za-z0-9._-]` and not starting
//! with a dot; read on each request, so a page may be replaced while the gateway runs.
//! Nothing is served when the variable is unset.

use std::path::PathBuf;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use chat_domain::{ApiError, ErrorCode};

use gateway_core::error::HttpResult;

/// Where the files are.
#[derive(Debug, Clone)]
pub struct StaticDir(pub PathBuf);

/// Every type [`content_type`] answers (for the document).
pub const CONTENT_TYPES: [&str; 9] = [
    "text/html",
    "text/javascript",
    "text/css",
    "application/json",
    "image/svg+xml",
    "image/png",
    "image/x-icon",
    "text/plain",
    "application/octet-stream",
];

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether `name` is a plain file name this server may serve.
fn servable(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `GET /static/{file}`.
pub async fn serve(dir: web::Data<StaticDir>, file: web::Path<String>) -> HttpResult {
    let not_found = || ApiError::new(ErrorCode::NotFound, "No such file");
    if !servable(&file) {
        return Err(not_found().into());
    }
    let path = dir.0.join(file.as_str());
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, content_type(&file)))
            .insert_header((CACHE_CONTROL, "no-cache"))
            .body(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found().into()),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "could not read a static file");
            Err(not_found().into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_of_the_directory() {
        assert!(servable("ws-rooms-demo.html"));
        for bad in ["", ".env", "../x", "a/b", "a\\b", "%2e%2e", "a b"] {
            assert!(!servable(bad), "{bad:?}");
        }
        assert_eq!(content_type("x.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
