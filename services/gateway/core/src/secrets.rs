//! The token-signing secret of each tenant (which `POST /tokens` signs with and
//! `crate::tokens::verify` checks against), cached briefly and dropped with the
//! tenant's other cache entries when it changes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chat_bus::Bus;
use chat_domain::ApiError;
use chat_domain::ids::TenantId;
use chat_domain::proto::store::{GetTokenSecret, TenantAuth};

/// Token secrets by tenant, each trusted for `ttl` after it was read.
#[derive(Debug)]
pub struct SecretCache {
    ttl: Duration,
    entries: Mutex<HashMap<TenantId, (TenantAuth, String, Instant)>>,
}

impl SecretCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::default() }
    }

    /// The tenant and its secret, from the cache or from message-store.
    pub async fn get(&self, bus: &Bus, tenant: &TenantId) -> Result<(TenantAuth, String), ApiError> {
        if let Some((auth, secret, at)) = self.entries.lock().ok().and_then(|m| m.get(tenant).cloned())
            && at.elapsed() < self.ttl
        {
            return Ok((auth, secret));
        }
        crate::auth_failures::lookup_allowed(self.entries.lock().is_ok_and(|m| m.contains_key(tenant)))?;
        let got = bus.request(&GetTokenSecret { tenant_id: tenant.clone() }).await?;
        if let Ok(mut m) = self.entries.lock() {
            m.insert(tenant.clone(), (got.tenant.clone(), got.secret.clone(), Instant::now()));
        }
        Ok((got.tenant, got.secret))
    }

    pub fn forget(&self, tenant: &TenantId) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(tenant);
        }
    }
}
