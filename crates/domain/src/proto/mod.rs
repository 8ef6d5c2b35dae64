//! What crosses the bus: commands (request/reply), their replies, and events.
//!
//! A command type knows its verb and its reply type ([`Command`]); one that belongs
//! to a single service also knows that service ([`ServiceCommand`]). The bus crate
//! turns these into subjects; `proto-schemas/` holds the JSON Schema of each type,
//! checked against these definitions by the bus crate's schema test.

pub mod blocks;
pub mod chat;
pub mod events;
pub mod health;
pub mod moderation;
pub mod notify;
pub mod presence;
pub mod reactions;
pub mod search;
pub mod store;
pub mod sync;
pub mod threads;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The services behind the gateway (and the gateway itself), by their bus names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Gateway,
    MessageStore,
    Presence,
    Notification,
}

impl Service {
    /// The name used in subjects and as the NATS queue group.
    pub fn name(self) -> &'static str {
        match self {
            Service::Gateway => "gateway",
            Service::MessageStore => "message-store",
            Service::Presence => "presence",
            Service::Notification => "notification",
        }
    }

    /// The services the gateway depends on (asked by `GET /health`).
    pub const BACKENDS: [Service; 3] = [Service::MessageStore, Service::Presence, Service::Notification];
}

/// A request/reply command on `<prefix>.cmd.<service>.<verb>`.
pub trait Command: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The last subject token; one verb per command type.
    const VERB: &'static str;
    /// What a successful reply carries in `data`.
    type Reply: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;
}

/// A command that only one service answers.
pub trait ServiceCommand: Command {
    const SERVICE: Service;
}

/// An empty successful reply (`"data": {}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, JsonSchema)]
pub struct Done {}
