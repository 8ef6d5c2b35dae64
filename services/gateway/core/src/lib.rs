//! The gateway's protocol-neutral core: everything the four client documents share,
//! and nothing that belongs to one of them. Dialect crates (`gateway-rest`,
//! `gateway-ws-rooms`, `gateway-conversations`, `gateway-chat`, `gateway-webapp`)
//! depend on this crate; it depends on none of them. The `gateway` app crate builds a
//! [`Core`], hands it to each dialect and mounts what they export ([`Dialect`]).
//!
//! - [`Core`] (`state`): what every handler and socket of every dialect shares (the
//!   bus, the caches, the limiter, the socket registry, the send batcher, settings),
//!   built from a [`CoreConfig`] (`config`, with the sockets' [`WsConfig`]).
//! - `admit`: one admission (key or token -> tenant + user, rate limit) for every
//!   endpoint; `caller`: the REST callers built on it; `auth`: key resolution with a
//!   short cache; `tokens`: verifying (and minting) short-lived user tokens, whose
//!   signing secrets `secrets` caches per tenant; `jwt`: the
//!   tenants' own JWT issuers; `ratelimit`: the tenant limiter (Redis).
//! - `extract`: reading a REST request part by part, in order (`Rest<P>`), with the
//!   id parsers every dialect uses; `body`: bodies and queries with the documented
//!   errors; `error`: the default error shape (`{"success":false,"error":{...}}`);
//!   `http_errors`: the errors actix-http answers by itself, given that body too.
//! - `messages`: what the REST dialects read of a send (its client id) and of a
//!   history page.
//! - `sends`: every send of the gateway, batched into requests to message-store.
//! - `session/`: the WebSocket session core (each dialect is a codec), and the
//!   membership every socket of every dialect (Socket.IO included) joins a room with.
//! - `fanout/`: the socket registry, per-room ordering and fan-out, user events,
//!   delivered receipts.
//! - `search`: what the REST dialects read alike of a message search (query text,
//!   time bounds, page size, the opaque cursor).
//! - `render`: frames two dialects render alike (an inbox item's fields); `members`: a
//!   room member as the REST APIs show them (the owner as `admin` with `owner: true`).
//! - `attachments/`: the object store, signed links, type sniffing.
//! - `routes`: mounting a route with its OpenAPI operation; `dialect`: what a dialect
//!   exports to the app; `openapi/`: the document's builder and the `/docs` page.
//! - `metrics`: Prometheus.

pub mod admit;
pub mod attachments;
pub mod auth;
pub mod auth_failures;
pub mod body;
pub mod cache_epoch;
pub mod caller;
mod config;
pub mod dialect;
pub mod error;
pub mod extract;
pub mod fanout;
pub mod http_errors;
pub mod jwt;
pub mod members;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod render;
pub mod routes;
pub mod search;
pub mod secrets;
pub mod sends;
pub mod session;
mod state;
pub mod tokens;

pub use config::{CoreConfig, WsConfig};
pub use dialect::Dialect;
pub use ratelimit::Decision;
pub use state::Core;
