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

    use chat_bus::{Subjects, envelope};
    use chat_domain::ids::MessageId;
    use chat_domain::proto::Service;
    use chat_domain::proto::store::TokenSecret;
    use futures_util::StreamExt as _;

    use super::*;

    /// A secret read before the tenant changed, whose answer arrives after the change was
    /// announced (and the cache forgotten), must not be cached: the next token would be
    /// checked against the old secret for a whole TTL, admitting tokens the rotation revoked.
    #[tokio::test]
    async fn a_secret_read_across_a_change_is_not_kept() -> anyhow::Result<()> {
        let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
        let client = chat_bus::client::connect(&url, "secrets-test").await?;
        let id = MessageId::generate();
        let subjects = Subjects::new(&format!("secrets-{}", &id.as_str()[id.as_str().len() - 20..]))?;
        let bus = Bus::new(client.clone(), subjects.clone()).with_timeout(Duration::from_secs(30));
        let mut requests = client.subscribe(subjects.commands_of(Service::MessageStore)).await?;
        client.flush().await?;
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

        let first = tokio::spawn({
            let (cache, bus, tenant) = (cache.clone(), bus.clone(), tenant.clone());
            async move { cache.get(&bus, &tenant).await }
        });
        // The first read is on its way; the key is rotated and announced meanwhile.
        let held = tokio::time::timeout(Duration::from_secs(30), requests.next()).await?;
        let held = held.ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
        cache.forget(&tenant);
        client
            .publish(held.reply.ok_or_else(|| anyhow::anyhow!("no reply subject"))?, envelope::ok(&answer("old")))
            .await?;
        assert_eq!(first.await??.1, "old", "the read in flight answers with what it read");

        // The next read asks again (before the fix it answered at once from the cache).
        let mut second = tokio::spawn({
            let (cache, bus, tenant) = (cache.clone(), bus.clone(), tenant.clone());
            async move { cache.get(&bus, &tenant).await }
        });
        let asked = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::select! {
                r = requests.next() => Ok(r),
                done = &mut second => Err(done),
            }
        })
        .await?;
        let asked = match asked {
            Ok(r) => r.ok_or_else(|| anyhow::anyhow!("subscription ended"))?,
            Err(served) => anyhow::bail!("served from the cache without asking: {:?}", served??.1),
        };
        client
            .publish(asked.reply.ok_or_else(|| anyhow::anyhow!("no reply subject"))?, envelope::ok(&answer("new")))
            .await?;
        assert_eq!(second.await??.1, "new");
        // And that one is cached.
        assert_eq!(cache.get(&bus, &tenant).await?.1, "new");
        Ok(())
    }
}
