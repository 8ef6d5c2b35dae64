//! The health command every service answers, so the gateway's `GET /health` can
//! report each service behind it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Command;

/// Ask a service how it is. Any instance of the service answers (queue group).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Health {}

/// A service's answer to [`Health`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceHealth {
    /// The service's bus name, e.g. `message-store`.
    pub service: String,
    /// Which replica answered (host name and process id).
    pub instance: String,
    /// `ok` when every check passed, else `degraded`.
    pub status: String,
    pub uptime_secs: u64,
    /// Named checks, e.g. `db_writable` for message-store, `redis` for presence.
    pub checks: BTreeMap<String, bool>,
}

impl ServiceHealth {
    pub fn new(service: &str, instance: &str, uptime_secs: u64, checks: BTreeMap<String, bool>) -> Self {
        let ok = checks.values().all(|v| *v);
        Self {
            service: service.to_owned(),
            instance: instance.to_owned(),
            status: if ok { "ok" } else { "degraded" }.to_owned(),
            uptime_secs,
            checks,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

impl Command for Health {
    const VERB: &'static str = "health";
    type Reply = ServiceHealth;
}
