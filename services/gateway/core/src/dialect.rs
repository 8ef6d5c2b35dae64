//! What a dialect crate exports to the app: a value that mounts its routes (each with
//! its documentation) and registers the state its handlers take. The app builds each
//! dialect once, from the [`crate::Core`] and the dialect's own settings, and lists
//! them; nothing in the core names one.
//!
//! State a dialect needs beyond the core (its codec, its sessions, its settings) is
//! its own type, created when the dialect is built and handed to actix in
//! [`Dialect::mount`] (`m.config().app_data(...)`), so every HTTP worker shares it.

use crate::routes::Mount;

/// One client document the gateway serves.
pub trait Dialect: Send + Sync {
    /// The dialect's name, for logs.
    fn name(&self) -> &'static str;

    /// Mounts the dialect's routes at the root and registers their state. Called once
    /// per HTTP worker, and once more to write the OpenAPI document.
    fn mount(&self, m: &mut Mount);

    /// Mounts the routes the dialect also serves under `/v1` (the canonical API's
    /// versioned prefix); none by default.
    fn mount_v1(&self, _m: &mut Mount) {}
}

/// The OpenAPI document of `dialect`'s routes alone, mounted at the root: for a
/// dialect's own tests of its documentation (the app's document has every dialect).
pub fn document(dialect: &dyn Dialect) -> serde_json::Value {
    use actix_web::web;

    use crate::openapi::{Api, Info};
    let mut api = Api::new();
    let _ = actix_web::App::new().configure(|cfg| {
        let fallback: crate::routes::Fallback = || web::to(crate::error::no_route);
        let mut m = Mount::new(cfg, &mut api, "", crate::error::SHAPE, "", fallback);
        dialect.mount(&mut m);
    });
    api.document(&Info { title: dialect.name(), version: "", summary: "", description: "", tags: &[] })
}
