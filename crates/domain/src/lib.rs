//! The chat domain: everything the services agree on, with no I/O in it.
//!
//! - [`ids`]: validated, subject-safe identifiers (`TenantId`, `RoomId`, `UserId`, ...).
//! - [`error`]: the stable error codes and the error body every API and bus reply uses.
//! - [`model`]: validated values (room types, roles, message bodies) and the records
//!   that cross the bus (`Room`, `Member`, `Message`, `Tenant`).
//! - [`proto`]: the commands each service answers, their replies, and the events on the bus.
//! - [`emoji`]: what a reaction may be, and the limits on reactions.
//! - [`time`]: the one timestamp format of the public APIs.
//! - [`json`]: how deep JSON may nest wherever it enters the system.
//! - [`keys`]: API key generation and hashing.
//! - [`settings`]: a tenant's settings (JWT issuers, edit window, upload limits).

pub mod emoji;
pub mod error;
pub mod ids;
pub mod json;
pub mod keys;
pub mod model;
pub mod proto;
pub mod settings;
pub mod time;

pub use error::{ApiError, ErrorCode};
pub use ids::{EventId, MessageId, RoomId, TenantId, UserId};
