//! What the offline pass is told: [`Settings`], from notification's configuration. It
//! has a module of its own so that the pass's parts (`feed`, `close`) read it from
//! below rather than from the module that runs them.

use std::time::Duration;

/// What the pass needs to know besides [`State`](crate::State).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Names this deployment's cursor, windows and lock: the bus prefix.
    pub follower: String,
    /// For the lock's own connection.
    pub database_url: String,
    pub window: Duration,
    pub grace: Duration,
    /// Only tenants whose id starts with this (`None`: all).
    pub tenant_prefix: Option<String>,
}

impl Settings {
    pub(super) fn follows(&self, tenant: &chat_domain::ids::TenantId) -> bool {
        self.tenant_prefix.as_deref().is_none_or(|p| tenant.as_str().starts_with(p))
    }

    pub(super) fn grace_delta(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.grace).unwrap_or(chrono::TimeDelta::MAX)
    }
}
