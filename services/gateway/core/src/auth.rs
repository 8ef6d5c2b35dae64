//! Authentication at the gateway: tenant API keys and operator keys, resolved by
//! message-store over the bus and cached here for a few seconds. A tenant's cache
//! entries are dropped when message-store announces a change to it (key rotation,
//! new limits), so a revoked key stops working on every replica at once. Failed keys
//! are remembered briefly too (`crate::auth_failures`), so a wrong key costs one lookup,
//! not one per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chat_bus::Bus;
use chat_domain::ApiError;
use chat_domain::ids::TenantId;
use chat_domain::keys;
use chat_domain::proto::events::TenantChanged;
use chat_domain::proto::store::{Authenticate, AuthenticateAdmin, TenantAuth};
use futures_util::StreamExt as _;

/// Most cached keys; past it the cache is cleared (keys are re-resolved on demand).
const MAX_ENTRIES: usize = 100_000;

/// Resolved keys, by key hash.
#[derive(Debug)]
pub struct AuthCache {
    ttl: Duration,
    tenants: Mutex<HashMap<String, (TenantAuth, Instant)>>,
    admins: Mutex<HashMap<String, Instant>>,
    /// Advanced by every [`Self::forget`]: a key resolved across a change is not cached.
    forgotten: crate::cache_epoch::Epoch,
    /// Failed credentials and failures per client address.
    pub failures: crate::auth_failures::AuthFailures,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            tenants: Mutex::default(),
            admins: Mutex::default(),
            forgotten: Default::default(),
            failures: Default::default(),
        }
    }

    /// The tenant a key belongs to, or `AUTHENTICATION_ERROR`.
    pub async fn tenant(&self, bus: &Bus, api_key: &str) -> Result<TenantAuth, ApiError> {
        let hash = keys::hash(api_key);
        if let Some((auth, at)) = self.tenants.lock().ok().and_then(|m| m.get(&hash).cloned())
            && at.elapsed() < self.ttl
        {
            return Ok(auth);
        }
        if let Some(e) = self.failures.known_bad(api_key) {
            return Err(e);
        }
        crate::auth_failures::lookup_allowed(self.tenants.lock().is_ok_and(|m| m.contains_key(&hash)))?;
        let asked_at = self.forgotten.now();
        let auth = bus
            .request(&Authenticate { api_key: api_key.to_owned() })
            .await
            .map_err(|e| self.failures.remember_bad(api_key, e))?;
        if let Ok(mut m) = self.tenants.lock()
            && self.forgotten.unchanged_since(asked_at)
        {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(hash, (auth.clone(), Instant::now()));
        }
        Ok(auth)
    }

    /// Checks an operator key, or `AUTHENTICATION_ERROR`.
    pub async fn admin(&self, bus: &Bus, api_key: &str) -> Result<(), ApiError> {
        let hash = keys::hash(api_key);
        if let Some(at) = self.admins.lock().ok().and_then(|m| m.get(&hash).copied())
            && at.elapsed() < self.ttl
        {
            return Ok(());
        }
        let as_admin = format!("admin:{api_key}");
        if let Some(e) = self.failures.known_bad(&as_admin) {
            return Err(e);
        }
        crate::auth_failures::lookup_allowed(self.admins.lock().is_ok_and(|m| m.contains_key(&hash)))?;
        bus.request(&AuthenticateAdmin { api_key: api_key.to_owned() })
            .await
            .map_err(|e| self.failures.remember_bad(&as_admin, e))?;
        if let Ok(mut m) = self.admins.lock() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(hash, Instant::now());
        }
        Ok(())
    }

    /// Forgets every cached key of `tenant`.
    pub fn forget(&self, tenant: &TenantId) {
        if let Ok(mut m) = self.tenants.lock() {
            self.forgotten.advance();
            m.retain(|_, (auth, _)| &auth.tenant_id != tenant);
        }
        // A key, issuer or tenant that failed may exist now.
        self.failures.clear_credentials();
    }

    /// Follows `tenant.changed` announcements until the subscription ends.
    pub async fn follow_changes(&self, bus: &Bus, also: impl Fn(&TenantId)) -> anyhow::Result<()> {
        let mut sub = bus.client().subscribe(bus.subjects().tenant_changed()).await?;
        while let Some(msg) = sub.next().await {
            match serde_json::from_slice::<TenantChanged>(&msg.payload) {
                Ok(c) => {
                    self.forget(&c.tenant_id);
                    also(&c.tenant_id);
                }
                Err(e) => tracing::warn!(error = %e, "malformed tenant.changed event"),
            }
        }
        Ok(())
    }
}
