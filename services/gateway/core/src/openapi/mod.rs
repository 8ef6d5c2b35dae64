//! The OpenAPI 3.1 document of every HTTP route the gateway serves, served at
//! `/openapi.json` and rendered at `/docs` (Redoc, built into the binary).
//!
//! The document is made while the routes are mounted ([`crate::routes::Mount`]): a
//! route cannot be registered without its [`Op`], so what is documented is what is
//! routed. An [`Op`] names the handler's types — the body it reads, the reply it
//! sends (usually the bus command's `Reply`) — and their JSON Schemas come from the
//! same `schemars` derivations as `proto-schemas/` (OpenAPI 3.1 schemas are JSON
//! Schema 2020-12, so they are used as they are, under `#/components/schemas`).
//!
//! - `op`: [`Op`], one operation's documentation, and [`Auth`], who may call it.
//! - `shape`: [`ErrorShape`], how a dialect answers errors and wraps its replies
//!   (each dialect exports its own).
//! - `document`: [`Api`], the document being made, and its [`Info`].
//! - `docs`: `/openapi.json`, the `/docs` page and Redoc's script.
//!
//! Every operation a tenant's caller makes is rate limited, so it gets the
//! `X-RateLimit-*` headers and the `429` in `document`, in one place, rather than in
//! each operation.

mod docs;
mod document;
mod op;
mod shape;

pub use docs::{DocsPage, openapi_json, redoc_js, redoc_licence, render_page};
pub use document::{Api, Info};
pub use op::{Auth, Nullable, Op, SchemaFn, op};
pub use shape::ErrorShape;
