//! Mounting routes with their documentation: [`Mount::at`] registers one actix
//! resource (every method of a path) and records each method's [`Op`] in the OpenAPI
//! document, so a route cannot be served without being documented. Each dialect
//! mounts its routes through a [`Mount`] ([`crate::Dialect::mount`]); the app mounts
//! every dialect once per HTTP worker, and once more for `/openapi.json`.

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, Responder, web};

use crate::openapi::{Api, ErrorShape, Op};

/// The answer of a path's unserved methods (the dialect's JSON `404`).
pub type Fallback = fn() -> actix_web::Route;

/// Where routes go, and the document they are recorded in.
pub struct Mount<'a> {
    cfg: &'a mut web::ServiceConfig,
    api: &'a mut Api,
    /// The scope's path (`""`, `"/v1"`, `"/api/chat"`), for the document.
    prefix: String,
    /// How the routes mounted here answer errors (for the document).
    shape: ErrorShape,
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
        shape: ErrorShape,
        tag: &'static str,
        fallback: Fallback,
    ) -> Self {
        Self { cfg, api, prefix: prefix.to_owned(), shape, tag, fixed_tag: None, fallback }
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
                    Some(tag) => self.api.add(method, &full, &self.shape, tag, &op.clone().tag(tag)),
                    None => self.api.add(method, &full, &self.shape, self.tag, op),
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
        shape: ErrorShape,
        tag: &'static str,
        fallback: Fallback,
        mount: impl FnOnce(&mut Mount),
    ) -> &mut Self {
        let api = &mut *self.api;
        let full = format!("{}{prefix}", self.prefix);
        let scope = web::scope(prefix)
            .configure(|cfg| mount(&mut Mount::new(cfg, api, &full, shape, tag, fallback)))
            .default_service(fallback());
        self.cfg.service(scope);
        self
    }

    /// Like [`Mount::scope`], with every operation inside listed under `tag` (a
    /// second copy of routes documented elsewhere, such as `/v1`).
    pub fn scope_tagged(
        &mut self,
        prefix: &'static str,
        shape: ErrorShape,
        tag: &'static str,
        fallback: Fallback,
        mount: impl FnOnce(&mut Mount),
    ) -> &mut Self {
        self.scope(prefix, shape, tag, fallback, |m| {
            m.fixed_tag = Some(tag);
            mount(m)
        })
    }
}

/// Documents an operation: `op("Send a message")` (see [`Op`]).
pub use crate::openapi::op;
