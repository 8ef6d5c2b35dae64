//! `GET /openapi.json`, and the rendered reference at `GET /docs`: Redoc's standalone
//! bundle (npm `redoc` 3.0.1, MIT, `assets/LICENSE-redoc.txt`), checked in and built
//! into the binary so the page renders with no internet. (Redoc 3 was tried first: it
//! loads its logo from a CDN and carries a telemetry client, so it is not used.) The page's CSP allows only
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
<script src="docs/redoc.standalone.js"></script>
</body>
</html>
"#;

const REDOC: &str = include_str!("assets/redoc.standalone.js");

/// The one thing the bundle loads from the internet: the Redocly logo of its
/// "API docs by Redocly" sidebar link. Served from here instead (a blank image; the link
/// and its words stay), so the page needs nothing but this gateway.
const CDN_LOGO: &str = "https://cdn.redoc.ly/redoc/logo-mini.svg";
const LOCAL_LOGO: &str = "data:image/svg+xml,%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%20width%3D%221%22%20height%3D%221%22%2F%3E";

/// The bundle as served (the checked-in file stays as npm ships it).
static SERVED: std::sync::LazyLock<bytes::Bytes> =
    std::sync::LazyLock::new(|| bytes::Bytes::from(REDOC.replace(CDN_LOGO, LOCAL_LOGO)));

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

const REDOC_NOTICES: &str = include_str!("assets/redoc.standalone.js.LICENSE.txt");
const REDOC_LICENSE: &str = include_str!("assets/LICENSE-redoc.txt");

/// `GET /docs/redoc.standalone.js.LICENSE.txt`: Redoc's licence and its bundled
/// libraries' notices (the bundle's first line points here).
pub async fn redoc_licence() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(format!("{REDOC_LICENSE}\n{REDOC_NOTICES}"))
}

/// `GET /docs/redoc.standalone.js`.
pub async fn redoc_js() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "public, max-age=86400"))
        .body(SERVED.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new bundle that fetches something else from the internet, or no longer has the
    /// logo URL this replaces, fails here before the browser test.
    #[test]
    fn the_served_bundle_names_no_other_origin() {
        assert!(REDOC.contains(CDN_LOGO));
        let served = String::from_utf8_lossy(&SERVED);
        assert!(!served.contains("cdn.redoc.ly"));
        assert!(!served.contains("fonts.googleapis.com"));
    }
}
