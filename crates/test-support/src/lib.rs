//! Test support: start any set of the services in-process, on port 0, against the
//! real PostgreSQL, Redis and NATS of the machine, isolated from every other test by
//! a fresh bus prefix (subjects, queue groups, streams, Redis keys) and fresh tenants.
//!
//! - `env`: the machine's services ([`nats_url`], [`redis_url`], [`database_url`]),
//!   or others a test started ([`Endpoints`]), [`ensure_database`], [`unique`] names,
//!   [`init_tracing`].
//! - `stack`: [`TestStack`] / [`StackBuilder`], the running services and their stop
//!   and restart handles.
//! - `tenant` and `http`: [`TestTenant`], a tenant made through the admin API, and
//!   [`Client`], an HTTP client acting as one of its users, with typed helpers that
//!   return readable errors ([`Response`]).
//! - `wait`: [`eventually`] polls a condition with a bound, for things that happen in
//!   the background, and [`bounded`] bounds a future (no timing assertions: the bounds
//!   are generous and only guard hangs).
//! - `ws`: [`WsClient`], a WebSocket client for the gateway's dialects.
//! - `webhook`: [`WebhookReceiver`], a server that records the webhooks it gets.
//! - [`browser`]: a headless Chromium driven over the DevTools protocol.
//! - [`raw`]: clients that write WebSocket frames and HTTP requests byte by byte.
//! - [`cluster`]: engines past one machine started for one test (a NATS cluster, a
//!   PostgreSQL primary and standby, Redis with Sentinels), for [`StackBuilder::on`].

pub mod browser;
pub mod cluster;
mod env;
mod http;
pub mod raw;
mod stack;
mod tenant;
mod wait;
mod webhook;
mod ws;

pub use env::{Endpoints, database_url, ensure_database, init_tracing, nats_url, redis_url, unique};
pub use http::{Client, Response};
pub use stack::{StackBuilder, TestStack, tenant_prefix};
pub use tenant::TestTenant;
pub use wait::{bounded, eventually, eventually_within};
pub use webhook::{Received, WebhookReceiver};
pub use ws::{Ended, WsClient};
