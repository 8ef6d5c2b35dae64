//! The web chat app at `/` and the admin console at `/admin`: plain HTML, CSS and
//! JavaScript modules, built into the binary (`include_str!`), so they work with no
//! build step, no CDN and no internet. Both use only the public APIs: the app the
//! user routes of `rest-rooms.md` (with a user token as `Authorization: Bearer`),
//! `/ws/{room_id}` of `ws-rooms.md`, and for attachments `POST
//! /api/chat/{room_id}/messages/file` of `rest-chat.md` (multipart `file` and
//! `content`, the room id being the chat id); it shows the `attachments` of `/ws`
//! frames and of history (images as thumbnails, other files as links), fetching each
//! signed link with the user's token into an object URL, since the link alone is
//! refused (`attachments/download.rs`). The console uses the `/admin/...` routes with
//! the operator key and the gateway's `/metrics`.
//!
//! Tested in headless Chromium by `tests/tests/e2e/webapp.rs`, and as a newcomer
//! meets them (started by `scripts/run.sh`, URL and admin key from its banner) by
//! `tests/tests/walkthrough`.
//!
//! - `GET /`, `GET /admin`: the two pages; `GET /app/{file}`: their scripts and styles.
//! - `dev_login`: `POST /dev/token`, which signs a browser in as any user of one
//!   tenant without a key. Only registered when the gateway is started with
//!   `GATEWAY_DEV_LOGIN=1` (`make run` sets it); elsewhere the path is the JSON `404`.

mod dev_login;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use chat_domain::ids::TenantId;
use chat_domain::{ApiError, ErrorCode};

use gateway_core::Dialect;
use gateway_core::error::HttpResult;
use gateway_core::routes::{Mount, op};

/// The pages, and `POST /dev/token` for one tenant when `dev_login` names it.
#[derive(Debug, Default)]
pub struct WebApp {
    /// `GATEWAY_DEV_LOGIN=1`: the tenant `POST /dev/token` signs users of in.
    pub dev_login: Option<TenantId>,
}

impl Dialect for WebApp {
    fn name(&self) -> &'static str {
        "webapp"
    }

    fn mount(&self, m: &mut Mount) {
        routes(m, self.dev_login.clone());
    }
}

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const INDEX: Asset = Asset { name: "index.html", content_type: HTML, body: include_str!("assets/index.html") };
const ADMIN: Asset = Asset { name: "admin.html", content_type: HTML, body: include_str!("assets/admin.html") };

/// What `/app/{file}` serves.
const FILES: &[Asset] = &[
    Asset { name: "app.js", content_type: JS, body: include_str!("assets/app.js") },
    Asset { name: "admin.js", content_type: JS, body: include_str!("assets/admin.js") },
    Asset { name: "api.js", content_type: JS, body: include_str!("assets/api.js") },
    Asset { name: "style.css", content_type: CSS, body: include_str!("assets/style.css") },
];

/// The Content-Security-Policy of the pages and their files: scripts, styles and
/// everything fetched come from the gateway only (no inline script or style, no
/// `eval`); images and downloads of attachments are object URLs (`blob:`) the app made
/// from what it fetched with the user's token (and may be read back: `connect-src
/// blob:`); no page may frame them.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                       media-src 'self' blob:; connect-src 'self' blob:; object-src 'none'; base-uri 'none'; \
                       form-action 'self'; frame-ancestors 'none'";

/// The security headers every page and file of the web app carries (with [`CSP`]):
/// no content-type sniffing, no framing (for browsers without `frame-ancestors`), and
/// no `Referer` leaving with the page's URL.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

fn respond(asset: &Asset) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.insert_header((CONTENT_TYPE, asset.content_type))
        // Revalidated on every load: a new gateway binary brings new assets at once.
        .insert_header((CACHE_CONTROL, "no-cache"));
    for header in SECURITY_HEADERS {
        res.insert_header(header);
    }
    res.body(asset.body)
}

async fn index() -> HttpResponse {
    respond(&INDEX)
}

async fn admin() -> HttpResponse {
    respond(&ADMIN)
}

/// `GET /app/{file}`: an embedded script or stylesheet; anything else is the JSON `404`.
async fn file(name: web::Path<String>) -> HttpResult {
    FILES
        .iter()
        .find(|a| a.name == name.as_str())
        .map(respond)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "No such file").into())
}

/// Adds the pages, their files and (when `dev_login` names a tenant) `POST /dev/token`.
fn routes(m: &mut Mount, dev_login: Option<TenantId>) {
    m.tagged("Pages")
        .at(&["/"], |r| r.get(index, op("The web chat app").raw().reply_raw(200, "The page.", Some(HTML))))
        .at(&["/admin"], |r| r.get(admin, op("The admin console").raw().reply_raw(200, "The page.", Some(HTML))))
        .at(&["/app/{file}"], |r| {
            r.get(
                file,
                op("A script or stylesheet of the two pages")
                    .path_param("file", "`app.js`, `admin.js`, `api.js` or `style.css`.")
                    .raw()
                    .reply_types(200, "The file (JavaScript or CSS).", &["text/javascript", "text/css"])
                    .errors(&[404]),
            )
        });
    if let Some(tenant) = dev_login {
        m.config().app_data(web::Data::new(dev_login::DevTenant(tenant)));
        m.at(&["/dev/token"], |r| {
            r.post(
                dev_login::token,
                op("Sign in as any user of the dev tenant (only with GATEWAY_DEV_LOGIN=1)")
                    .describe(
                        "Registered only when the gateway runs with `GATEWAY_DEV_LOGIN=1` (`make run` sets it); \
                         elsewhere the path is the JSON 404. Returns a user token of the dev tenant.",
                    )
                    .json::<dev_login::DevLogin>()
                    .reply::<dev_login::DevToken>(201, "A user token for the named user.")
                    // 404: the dev tenant does not exist (message-store started without it).
                    .errors(&[400, 404, 503]),
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_load_only_embedded_files() {
        // Every `/app/...` a page names is one of ours: no CDN, nothing missing.
        for page in [INDEX.body, ADMIN.body].iter().chain(FILES.iter().map(|a| &a.body)) {
            assert!(!page.contains("http://") && !page.contains("https://"), "a page loads something remote");
            for (_, rest) in page.match_indices("/app/").map(|(i, _)| page.split_at(i + 5)) {
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
                assert!(FILES.iter().any(|a| a.name == name), "/app/{name} is not embedded");
            }
        }
    }
}
