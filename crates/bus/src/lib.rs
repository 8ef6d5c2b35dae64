//! The bus: the only crate that knows NATS subjects, headers, queue groups and streams.
//!
//! - [`subjects`]: every subject and stream name, built from validated ids.
//! - [`envelope`]: the reply envelope `{"ok":true,"data":..}` / `{"ok":false,"error":..}`.
//! - [`client`]: [`Bus`], typed request/reply for callers.
//! - [`server`]: [`server::Router`], which answers a service's commands in its queue group
//!   and never leaves a request unanswered.
//! - [`events`]: JetStream helpers (pull consumers, `Nats-Msg-Id`, the legacy events stream).
//! - [`trace`]: W3C `traceparent` in NATS headers.
//! - `metrics`: registering the request and command metrics that `client` and `server`
//!   keep (a helper below both, so neither imports the other for it).

pub mod client;
pub mod envelope;
pub mod events;
mod metrics;
pub mod server;
pub mod subjects;
pub mod trace;

pub use client::{Bus, connect};
pub use subjects::Subjects;
