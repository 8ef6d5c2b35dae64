//! Mounting routes with their documentation: [`Mount::at`] registers one actix
//! resource (every method of a path) and records each method's [`Op`] in the OpenAPI
//! document, so a route cannot be served without being documented. [`all`] mounts
//! every route of the gateway; [`Gateway::run`](crate::Gateway::run) calls it for the
//! server and once more for `/openapi.json`.

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, Responder, web};

use crate::openapi::{Api, Dialect, Op};

/// The answer of a path's unserved methods (the dialect's JSON `404`).
pub type Fallback = fn() -> actix_web::Route;

/// Where routes go, and the document they are recorded in.
pub struct Mount<'a> {
    cfg: &'a mut web::ServiceConfig,
    api: &'a mut Api,
    /// The scope's path (`""`, `"/v1"`, `"/api/chat"`), for the document.
    prefix: String,
    dialect: Dialect,
    tag: &'static str,
    /// Set for a scope whose every operation is listed under one tag (`/v1`).
    fixed_tag: Option<&'static str>,
    fallback: Fallback,
}

/// One path (and its aliases) with its methods, being built.
pub struct Resource {
    resource: actix_web::Resource,
    ops: Vec<(Method, Op)>,
}

impl Resource {
    fn on<F, Args>(mut self, method: Method, handler: F, op: Op) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.resource = self.resource.route(web::method(method.clone()).to(handler));
        self.ops.push((method, op));
        self
    }
}

/// `get`, `post`, ...: one method of the path, served by `handler`, documented by `op`.
macro_rules! methods {
    ($($name:ident => $method:ident),* $(,)?) => {
        impl Resource {
            $(
                pub fn $name<F, Args>(self, handler: F, op: Op) -> Self
                where
                    F: Handler<Args>,
                    Args: FromRequest + 'static,
                    F::Output: Responder + 'static,
                {
                    self.on(Method::$method, handler, op)
                }
            )*
        }
    };
}

methods!(get => GET, post => POST, put => PUT, patch => PATCH, delete => DELETE);

impl<'a> Mount<'a> {
    pub fn new(
        cfg: &'a mut web::ServiceConfig,
        api: &'a mut Api,
        prefix: &str,
        dialect: Dialect,
        tag: &'static str,
        fallback: Fallback,
    ) -> Self {
        Self { cfg, api, prefix: prefix.to_owned(), dialect, tag, fixed_tag: None, fallback }
    }

    /// The same mount under another default tag.
    pub fn tagged(&mut self, tag: &'static str) -> &mut Self {
        self.tag = tag;
        self
    }

    /// The service config, for `app_data`.
    pub fn config(&mut self) -> &mut web::ServiceConfig {
        self.cfg
    }

    /// Mounts one path (or one path under several spellings, such as with and without a
    /// trailing slash) with the methods `build` adds; other methods get the fallback.
    pub fn at(&mut self, paths: &[&str], build: impl FnOnce(Resource) -> Resource) -> &mut Self {
        let resource = web::resource(paths.to_vec()).default_service((self.fallback)());
        let Resource { resource, ops } = build(Resource { resource, ops: Vec::new() });
        for path in paths {
            let full = format!("{}{path}", self.prefix);
            for (method, op) in &ops {
                match self.fixed_tag {
                    Some(tag) => self.api.add(method, &full, self.dialect, tag, &op.clone().tag(tag)),
                    None => self.api.add(method, &full, self.dialect, self.tag, op),
                }
            }
        }
        self.cfg.service(resource);
        self
    }

    /// A nested scope (its routes recorded under `prefix`), with the fallback as the
    /// scope's default too.
    pub fn scope(
        &mut self,
        prefix: &'static str,
        dialect: Dialect,
        tag: &'static str,
        fallback: Fallback,
        mount: impl FnOnce(&mut Mount),
    ) -> &mut Self {
        let api = &mut *self.api;
        let full = format!("{}{prefix}", self.prefix);
        let scope = web::scope(prefix)
            .configure(|cfg| mount(&mut Mount::new(cfg, api, &full, dialect, tag, fallback)))
            .default_service(fallback());
        self.cfg.service(scope);
        self
    }

    /// Like [`Mount::scope`], with every operation inside listed under `tag` (a
    /// second copy of routes documented elsewhere, such as `/v1`).
    pub fn scope_tagged(
        &mut self,
        prefix: &'static str,
        dialect: Dialect,
        tag: &'static str,
        fallback: Fallback,
        mount: impl FnOnce(&mut Mount),
    ) -> &mut Self {
        self.scope(prefix, dialect, tag, fallback, |m| {
            m.fixed_tag = Some(tag);
            mount(m)
        })
    }
}

/// Documents an operation: `op("Send a message")` (see [`Op`]).
pub use crate::openapi::op;

/// What decides which optional routes exist.
#[derive(Clone)]
pub struct Options {
    /// `GATEWAY_STATIC_DIR`: `/static/{file}`.
    pub statics: Option<web::Data<crate::static_files::StaticDir>>,
    /// `GATEWAY_DEV_LOGIN=1`: `POST /dev/token` for this tenant.
    pub dev_login: Option<chat_domain::ids::TenantId>,
    /// `/readyz`.
    pub check: chat_telemetry::ops::ReadinessCheck,
}

/// Every route of the gateway, in the order actix tries them (the REST APIs first:
/// their busiest routes are tried before anything else).
pub fn all(cfg: &mut web::ServiceConfig, api: &mut Api, options: &Options) {
    use crate::openapi::Auth;
    use crate::{conversations, openapi, rest, rest_chat, socketio, static_files, webapp, ws_rooms};

    let rooms_404: Fallback = || web::to(crate::error::no_route);
    let chat_404: Fallback = || web::to(rest_chat::error::no_route);
    let mut m = Mount::new(cfg, api, "", Dialect::Rooms, "Rooms", rooms_404);
    m.scope("/api/chat", Dialect::Chat, "Chats", chat_404, rest_chat::routes);
    rest::routes(&mut m);

    m.config().app_data(web::Data::new(options.check.clone()));
    m.tagged("Operations")
        .at(&["/healthz"], |r| {
            r.get(
                chat_telemetry::ops::healthz,
                op("Liveness: the process answers").raw().reply_raw(
                    200,
                    "`{\"status\":\"ok\"}`",
                    Some("application/json"),
                ),
            )
        })
        .at(&["/readyz"], |r| {
            r.get(
                chat_telemetry::ops::readyz,
                op("Readiness: NATS is connected, so the gateway should get traffic")
                    .raw()
                    .reply_raw(200, "`{\"status\":\"ready\"}`", Some("application/json"))
                    .errors(&[503]),
            )
        })
        .at(&["/metrics"], |r| {
            r.get(
                chat_telemetry::ops::metrics,
                op("Prometheus metrics").raw().reply_raw(200, "The text exposition format 0.0.4.", Some("text/plain")),
            )
        });

    let upgrade = "Switched to the WebSocket protocol.";
    m.tagged("Real time")
        .at(&["/ws/{room_id}"], |r| {
            r.get(
                ws_rooms::connect,
                op("WebSocket of ws-rooms.md (one room)")
                    .describe("Frames: docs/asyncapi-ws.json. Refusals are close codes (4001 bad token, 4003 not a member, 4004 no such room, 4029 rate limited).")
                    .auth(Auth::Socket)
                    .path_id::<chat_domain::ids::RoomId>("room_id", "The room to join.")
                    .param::<String>("user_id", "query", "The user, when `token` is the tenant's API key.")
                    .param::<u64>("last_seq", "query", "Resume after this sequence number.")
                    .raw()
                    .reply_raw(101, upgrade, None)
                    .errors(&[400]),
            )
        })
        .at(&["/conversations/{id}", "/conversations/{id}/"], |r| {
            r.get(
                conversations::connect,
                op("WebSocket of ws-conversations.md (one conversation)")
                    .describe("Frames: docs/asyncapi-ws.json.")
                    .auth(Auth::Socket)
                    .path_id::<chat_domain::ids::RoomId>("id", "The conversation (a room's id).")
                    .param::<String>("user_id", "query", "The user, when `token` is the tenant's API key.")
                    .raw()
                    .reply_raw(101, upgrade, None)
                    .errors(&[400]),
            )
        });
    socketio::routes(&mut m);

    if let Some(dir) = options.statics.clone() {
        m.config().app_data(dir);
        m.tagged("Pages").at(&["/static/{file}"], |r| {
            r.get(
                static_files::serve,
                op("A file of GATEWAY_STATIC_DIR")
                    .raw()
                    .reply_raw(200, "The file.", Some("application/octet-stream"))
                    .errors(&[404]),
            )
        });
    }
    webapp::routes(&mut m, options.dev_login.clone());
    m.tagged("Pages")
        .at(&["/openapi.json"], |r| {
            r.get(
                openapi::openapi_json,
                op("This document").raw().reply_raw(200, "OpenAPI 3.1.", Some("application/json")),
            )
        })
        .at(&["/docs"], |r| {
            r.get(
                openapi::render_page,
                op("This document, rendered (Redoc)").raw().reply_raw(200, "The page.", Some("text/html")),
            )
        })
        .at(&["/docs/redoc.standalone.js"], |r| {
            r.get(
                openapi::redoc_js,
                op("Redoc, for /docs").raw().reply_raw(200, "The script.", Some("text/javascript")),
            )
        });

    m.scope_tagged("/v1", Dialect::Rooms, "Under /v1", rooms_404, rest::routes);
}

/// The OpenAPI document of what [`all`] mounts with `options`.
pub fn document(options: &Options) -> serde_json::Value {
    let mut api = Api::new();
    let _ = actix_web::App::new().configure(|cfg| all(cfg, &mut api, options));
    api.document()
}

/// Every `(method, path)` [`all`] mounts with `options`.
pub fn table(options: &Options) -> Vec<(Method, String)> {
    let mut api = Api::new();
    let _ = actix_web::App::new().configure(|cfg| all(cfg, &mut api, options));
    api.routes().to_vec()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;

    /// Every optional route switched on.
    fn everything() -> anyhow::Result<Options> {
        Ok(Options {
            statics: Some(web::Data::new(crate::static_files::StaticDir(".".into()))),
            dev_login: Some(chat_domain::ids::TenantId::parse("dev")?),
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
        let plain = Options { statics: None, dev_login: None, ..options };
        let listed = documented(&document(&plain));
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

    /// Routes are only mounted here (through [`Mount`], so each is documented): any
    /// other `route`, `resource`, `scope` or `service` call in the gateway would serve
    /// a path the document does not list.
    #[test]
    fn nothing_mounts_routes_elsewhere() -> anyhow::Result<()> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![src];
        let mut offenders = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("routes.rs") {
                    let text = std::fs::read_to_string(&path)?;
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
