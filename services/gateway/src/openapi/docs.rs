//! `GET /openapi.json`, and the rendered reference at `GET /docs`: Redoc's standalone
//! bundle (npm `redoc` 3.0.1, MIT, `assets/LICENSE-redoc.txt`), checked in and built
//! into the binary so the page renders with no internet. The page's CSP allows only
//! this gateway, so a renderer that reached for a CDN would fail the browser test.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use actix_web::{HttpResponse, web};

/// The document, serialized once when the gateway starts.
#[derive(Clone)]
pub struct DocsPage {
    pub json: bytes::Bytes,
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>chat-backend API reference</title>
<style>body { margin: 0; }</style>
</head>
<body>
<redoc spec-url="openapi.json" hide-download-button="false"></redoc>
<script type="module" src="docs/redoc.standalone.js"></script>
</body>
</html>
"#;

const REDOC: &[u8] = include_bytes!("assets/redoc.standalone.js");

/// Everything from this origin; styles and workers as Redoc makes them.
const CSP: &str = "default-src 'self'; script-src 'self' blob:; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'";

/// `GET /openapi.json`.
pub async fn openapi_json(doc: web::Data<DocsPage>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/json"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(doc.json.clone())
}

/// `GET /docs`.
pub async fn render_page() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header((CONTENT_SECURITY_POLICY, CSP))
        .body(PAGE)
}

/// `GET /docs/redoc.standalone.js`.
pub async fn redoc_js() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "public, max-age=86400"))
        .body(REDOC)
}
