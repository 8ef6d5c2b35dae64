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
    /// Advanced by every [`Self::forget`]: a secret read across a change is not cached.
    forgotten: crate::cache_epoch::Epoch,
}

impl SecretCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::default(), forgotten: Default::default() }
    }

    /// The tenant and its secret, from the cache or from message-store.
    pub async fn get(&self, bus: &Bus, tenant: &TenantId) -> Result<(TenantAuth, String), ApiError> {
        if let Some((auth, secret, at)) = self.entries.lock().ok().and_then(|m| m.get(tenant).cloned())
            && at.elapsed() < self.ttl
        {
            return Ok((auth, secret));
        }
        crate::auth_failures::lookup_allowed(self.entries.lock().is_ok_and(|m| m.contains_key(tenant)))?;
        let asked_at = self.forgotten.now();
        let got = bus.request(&GetTokenSecret { tenant_id: tenant.clone() }).await?;
        if let Ok(mut m) = self.entries.lock()
            && self.forgotten.unchanged_since(asked_at)
        {
            m.insert(tenant.clone(), (got.tenant.clone(), got.secret.clone(), Instant::now()));
        }
        Ok((got.tenant, got.secret))
    }

    pub fn forget(&self, tenant: &TenantId) {
        if let Ok(mut m) = self.entries.lock() {
            self.forgotten.advance();
            m.remove(tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chat_domain::proto::store::TokenSecret;

    use super::*;
    use crate::cache_epoch::held::HeldStore;

    /// A secret read before the tenant changed, whose answer arrives after the change was
    /// announced (and the cache forgotten), must not be cached: the next token would be
    /// checked against the old secret for a whole TTL, admitting tokens the rotation revoked.
    #[tokio::test]
    async fn a_secret_read_across_a_change_is_not_kept() -> anyhow::Result<()> {
        let store = HeldStore::start("secrets").await?;
        let bus = store.bus.clone();
        let tenant = TenantId::parse("t1")?;
        let answer = |secret: &str| TokenSecret {
            tenant: TenantAuth {
                tenant_id: tenant.clone(),
                name: "t1".into(),
                rate_limit_per_sec: 10,
                settings: Default::default(),
            },
            secret: secret.into(),
        };
        let cache = std::sync::Arc::new(SecretCache::new(Duration::from_secs(600)));
        let read = || {
            let (cache, bus, tenant) = (cache.clone(), bus.clone(), tenant.clone());
            tokio::spawn(async move { cache.get(&bus, &tenant).await.map(|(_, secret)| secret) })
        };

        store.lookup_across_a_forget(read, || cache.forget(&tenant), answer).await
    }
}
