//! Every route of the gateway: each dialect's (in the order of [`crate::dialects`]),
//! then the app's own — the probes and `/metrics`, `/static/{file}`, the OpenAPI
//! document and `/docs` — then `/v1`, where the dialects that have one mount their
//! versioned routes again. The same function mounts the server (once per HTTP worker)
//! and writes `/openapi.json`, so what is routed is what is documented.

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::web;
use gateway_core::Dialect;
use gateway_core::openapi::{Api, Info};
use gateway_core::routes::{Fallback, Mount, op};
use schemars::JsonSchema;

use crate::static_files;

/// What a gateway mounts.
#[derive(Clone)]
pub struct Routes {
    /// The dialects, in the order their routes are tried.
    pub dialects: Arc<[Box<dyn Dialect>]>,
    /// `GATEWAY_STATIC_DIR`: `/static/{file}`.
    pub statics: Option<web::Data<static_files::StaticDir>>,
    /// `/readyz`.
    pub check: chat_telemetry::ops::ReadinessCheck,
}

/// Every route of the gateway, in the order actix tries them (the dialects first: the
/// REST APIs' busiest routes are tried before anything else).
pub fn all(cfg: &mut web::ServiceConfig, api: &mut Api, routes: &Routes) {
    let rooms_404: Fallback = || web::to(gateway_core::error::no_route);
    let mut m = Mount::new(cfg, api, "", gateway_core::error::SHAPE, "Rooms", rooms_404);
    for dialect in routes.dialects.iter() {
        dialect.mount(&mut m);
    }

    m.tagged("Operations")
        .at(&["/healthz"], |r| {
            r.get(
                chat_telemetry::ops::healthz,
                op("Liveness: the process answers").reply_plain::<Liveness>(200, "Alive."),
            )
        })
        .at(&["/readyz"], |r| {
            r.get(
                chat_telemetry::ops::readyz,
                op("Readiness: NATS is connected, so the gateway should get traffic")
                    .reply_plain::<Readiness>(200, "Ready.")
                    .errors(&[503]),
            )
        })
        .at(&["/metrics"], |r| {
            r.get(
                crate::metrics_route::metrics,
                op("Prometheus metrics (the operator key)")
                    .describe(
                        "For the operator only: the series name tenants. The operator key goes in `X-API-Key` \
                         (the admin console) or as `Authorization: Bearer` (a Prometheus scrape config's \
                         `authorization`). `GATEWAY_OPS_ADDR` serves `/metrics` without a key on a port of its own, \
                         for a Prometheus that scrapes by pod annotation.",
                    )
                    .operator()
                    .raw()
                    .reply_raw(200, "The text exposition format 0.0.4.", Some("text/plain"))
                    .errors(&[401, 503]),
            )
        });
    m.config().app_data(web::Data::new(routes.check.clone()));

    if let Some(dir) = routes.statics.clone() {
        m.config().app_data(dir);
        m.tagged("Pages").at(&["/static/{file}"], |r| {
            r.get(
                static_files::serve,
                op("A file of GATEWAY_STATIC_DIR")
                    .raw()
                    .reply_types(200, "The file, typed by its extension.", &static_files::CONTENT_TYPES)
                    .errors(&[404]),
            )
        });
    }
    m.tagged("Pages")
        .at(&["/openapi.json"], |r| {
            r.get(
                gateway_core::openapi::openapi_json,
                op("This document").reply_plain::<serde_json::Map<String, serde_json::Value>>(200, "OpenAPI 3.1."),
            )
        })
        .at(&["/docs"], |r| {
            r.get(
                gateway_core::openapi::render_page,
                op("This document, rendered (Redoc)").raw().reply_raw(200, "The page.", Some("text/html")),
            )
        })
        .at(&["/docs/redoc.standalone.js"], |r| {
            r.get(
                gateway_core::openapi::redoc_js,
                op("Redoc, for /docs").raw().reply_raw(200, "The script.", Some("text/javascript")),
            )
        });

    m.scope_tagged("/v1", gateway_core::error::SHAPE, "Under /v1", rooms_404, |m| {
        for dialect in routes.dialects.iter() {
            dialect.mount_v1(m);
        }
    });
}

/// `GET /healthz`'s answer.
#[derive(JsonSchema)]
#[allow(dead_code)] // only its schema is used
struct Liveness {
    #[schemars(extend("const" = "ok"))]
    status: String,
}

/// `GET /readyz`'s answer when ready (a `503` in the error shape when not).
#[derive(JsonSchema)]
#[allow(dead_code)] // only its schema is used
struct Readiness {
    #[schemars(extend("const" = "ready"))]
    status: String,
}

/// The OpenAPI document of what [`all`] mounts with `routes`.
pub fn document(routes: &Routes) -> serde_json::Value {
    let mut api = Api::new();
    let _ = actix_web::App::new().configure(|cfg| all(cfg, &mut api, routes));
    api.document(&INFO)
}

/// Every `(method, path)` [`all`] mounts with `routes`.
pub fn table(routes: &Routes) -> Vec<(Method, String)> {
    let mut api = Api::new();
    let _ = actix_web::App::new().configure(|cfg| all(cfg, &mut api, routes));
    api.routes().to_vec()
}

/// The document's introduction.
const INFO: Info = Info {
    title: "chat-backend gateway",
    version: env!("CARGO_PKG_VERSION"),
    summary: "Every HTTP route of the gateway: the canonical REST API (rest-rooms.md, also under /v1), the /api/v1 helpers of ws-rooms.md, rest-chat.md under /api/chat, notifications, tokens, users, settings, the operator's /admin routes, the WebSocket and Socket.IO handshakes, and the pages.",
    description: INFO_DESCRIPTION,
    tags: TAGS,
};

/// The groups of operations, in the order Redoc lists them.
const TAGS: &[(&str, &str)] = &[
    ("Rooms", "`rest-rooms.md`: rooms, members, messages, read cursors (also under `/v1`)."),
    ("Reactions", "Reactions and pinned messages of `rest-rooms.md` (also under `/v1`); `/api/chat` has its own."),
    ("ws-rooms helpers", "The REST helpers of `ws-rooms.md` under `/api/v1`."),
    ("Chats", "`rest-chat.md` under `/api/chat`: chats, participants, messages, files."),
    ("Notifications", "Topics, subscriptions, the inbox, and webhook dead letters."),
    ("Users and tokens", "The tenant's user directory and short-lived user tokens."),
    ("Settings", "The tenant's own settings: JWT issuers, uploads, the edit window."),
    ("Admin", "The operator: tenants, keys, limits, webhooks."),
    ("Real time", "WebSocket and Socket.IO handshakes (the frames are in docs/asyncapi-ws.json)."),
    ("Pages", "The web chat app, the admin console, this reference."),
    ("Operations", "Liveness, readiness, Prometheus metrics."),
    (
        "Under /v1",
        "The canonical API, the `/api/v1` helpers, notifications, tokens, users, settings and `/admin` again, each under `/v1` as at `/`.",
    ),
];

const INFO_DESCRIPTION: &str = "\
Every route answers errors in its dialect's shape: `{\"success\": false, \"error\": {\"code\", \"message\", \"field\"}}` \
outside `/api/chat`, `{\"success\": false, \"message\", \"code\", \"field\"}` under it; the codes and their statuses \
are the same (`VALIDATION_ERROR` 400, `AUTHENTICATION_ERROR` 401, `FORBIDDEN` 403, `NOT_FOUND` 404, `CONFLICT` 409, \
`PAYLOAD_TOO_LARGE` 413, `UNSUPPORTED_MEDIA_TYPE` 415, `RATE_LIMIT_EXCEEDED` 429, `INTERNAL_ERROR` 500, \
`SERVICE_UNAVAILABLE` 503). A path no route serves, or a method a path does not serve, is the dialect's 404.\n\n\
Every request made for a tenant (API key or user token) counts against the tenant's rate limit and its response \
carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`; over the limit it is a 429 with \
`Retry-After`.\n\n\
A path with a trailing slash (`/api/chat/`, `/api/v1/rooms/{room_id}/messages/`, `/conversations/{id}/`, \
`/socket.io/`) is listed with and without it where both are served.";

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;

    /// Every optional route switched on.
    fn everything() -> anyhow::Result<Routes> {
        let config = crate::Config { dev_login: Some(chat_domain::ids::TenantId::parse("dev")?), ..Default::default() };
        Ok(Routes {
            dialects: crate::dialects(&config, &gateway_core::attachments::Attachments::open(&config.attachments)?)
                .into(),
            statics: Some(web::Data::new(crate::static_files::StaticDir(".".into()))),
            check: Arc::new(|| Box::pin(async { true })),
        })
    }

    /// Every optional route switched off.
    fn plain() -> anyhow::Result<Routes> {
        let config = crate::Config::default();
        Ok(Routes {
            dialects: crate::dialects(&config, &gateway_core::attachments::Attachments::open(&config.attachments)?)
                .into(),
            statics: None,
            check: Arc::new(|| Box::pin(async { true })),
        })
    }

    /// What the document lists: `(METHOD, path)`.
    fn documented(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn every_mounted_route_is_documented_and_nothing_else() -> anyhow::Result<()> {
        let options = everything()?;
        let mounted: BTreeSet<(String, String)> =
            table(&options).into_iter().map(|(m, p)| (m.as_str().to_owned(), p)).collect();
        let doc = document(&options);
        let listed = documented(&doc);
        let missing: Vec<_> = mounted.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&mounted).collect();
        assert!(missing.is_empty(), "mounted but not documented: {missing:?}");
        assert!(extra.is_empty(), "documented but not mounted: {extra:?}");
        // The surface the issue names is there, in every dialect.
        for (method, path) in [
            ("POST", "/rooms/{room_id}/messages"),
            ("POST", "/v1/rooms/{room_id}/messages"),
            ("GET", "/api/v1/rooms/{room_id}/messages"),
            ("POST", "/api/chat/{id}/messages/file"),
            ("POST", "/notify"),
            ("POST", "/tokens"),
            ("PUT", "/users/{user_id}"),
            ("PATCH", "/settings"),
            ("POST", "/admin/tenants"),
            ("GET", "/ws/{room_id}"),
            ("GET", "/socket.io/"),
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
            ("POST", "/dev/token"),
        ] {
            assert!(listed.contains(&(method.to_owned(), path.to_owned())), "{method} {path} is not documented");
        }
        // Switched off, the optional routes are neither mounted nor documented.
        let listed = documented(&document(&plain()?));
        assert!(!listed.iter().any(|(_, p)| p == "/dev/token" || p.starts_with("/static/")));
        Ok(())
    }

    #[test]
    fn operation_ids_are_unique_and_every_ref_resolves() -> anyhow::Result<()> {
        let doc = document(&everything()?);
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().into_iter().flatten().map(|(_, i)| i) {
            for (_, operation) in item.as_object().into_iter().flatten() {
                let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
                assert!(ids.insert(id.clone()), "operationId {id} twice");
            }
        }
        // Every operation says what it answers when it works, and who may call it.
        let mut silent = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let responses = operation["responses"].as_object().cloned().unwrap_or_default();
                if !responses.keys().any(|s| s.starts_with('2') || s == "101") {
                    silent.push(format!("{method} {path}"));
                }
            }
        }
        assert!(silent.is_empty(), "no success reply documented: {silent:?}");
        // Id path parameters say the id's format (the domain type's schema).
        let mut untyped = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                for p in operation["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path") {
                    let name = p["name"].as_str().unwrap_or_default();
                    let is_id = name.ends_with("_id")
                        || name.ends_with("Id")
                        || (name == "id" && (path.starts_with("/api/chat/") || path.starts_with("/conversations/")));
                    if is_id && p["schema"]["$ref"].is_null() {
                        untyped.push(format!("{method} {path} {name}"));
                    }
                }
            }
        }
        assert!(untyped.is_empty(), "id parameters without their type: {untyped:?}");
        // Two types of one name get `Name2` from schemars: rename one (`#[schemars(rename)]`).
        let clashes: Vec<&String> = doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, _)| name)
            .filter(|name| name.ends_with(|c: char| c.is_ascii_digit()))
            .collect();
        assert!(clashes.is_empty(), "schema names that clashed: {clashes:?}");
        let text = serde_json::to_string(&doc)?;
        for reference in text.split("\"$ref\":\"").skip(1).filter_map(|s| s.split('"').next()) {
            let pointer = reference.strip_prefix('#').unwrap_or(reference);
            assert!(doc.pointer(pointer).is_some(), "{reference} does not resolve");
        }
        Ok(())
    }

    /// Routes are only mounted through [`Mount`] (`gateway-core`'s `routes.rs`), so each
    /// is documented: any other `route`, `resource`, `scope` or `service` call in a crate
    /// of the gateway would serve a path the document does not list.
    #[test]
    fn nothing_mounts_routes_elsewhere() -> anyhow::Result<()> {
        let gateway = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mount = gateway.join("core/src/routes.rs").canonicalize()?;
        let mut stack = Vec::new();
        for entry in std::fs::read_dir(&gateway)? {
            let src = entry?.path().join("src");
            if src.is_dir() {
                stack.push(src);
            }
        }
        assert!(stack.len() >= 7, "the gateway's crates are found: {stack:?}");
        let mut offenders = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && path.canonicalize()? != mount {
                    let text = std::fs::read_to_string(&path)?;
                    // Tests (this one names the calls) serve nothing.
                    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
                    for needle in [".route(", "web::resource(", "web::scope(", ".service("] {
                        if text.contains(needle) {
                            offenders.push(format!("{} uses {needle}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:?}");
        Ok(())
    }
}
