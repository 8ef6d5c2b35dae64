//! Per-tenant rate limits that hold across gateway replicas: one Redis counter per
//! tenant per second (`INCR` + expiry in one script, one round trip per request).

use chat_domain::ids::TenantId;
use redis::aio::ConnectionManager;

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Unix time (seconds) when the current window ends.
    pub reset: u64,
    /// Seconds to wait before retrying, when refused.
    pub retry_after: u64,
}

/// Counts requests per tenant in one-second windows.
#[derive(Clone)]
pub struct RateLimiter {
    redis: ConnectionManager,
    prefix: String,
    script: redis::Script,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("prefix", &self.prefix).finish()
    }
}

impl RateLimiter {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        let script = redis::Script::new(
            "local n = redis.call('INCR', KEYS[1])
             if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
             return n",
        );
        Self { redis, prefix: prefix.to_owned(), script }
    }

    /// Counts one request of `tenant` against `limit` per second. When Redis cannot
    /// be reached the request is let through (and logged): an outage of the limiter
    /// should not become an outage of the chat.
    pub async fn check(&self, tenant: &TenantId, limit: u32) -> Decision {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let window = now.as_secs();
        let key = format!("{}:rl:{}:{window}", self.prefix, tenant);
        let mut conn = self.redis.clone();
        let count: Result<u64, _> = self.script.key(&key).arg(2000).invoke_async(&mut conn).await;
        let count = match count {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; letting the request through");
                0
            }
        };
        let allowed = count <= u64::from(limit);
        let remaining = u64::from(limit).saturating_sub(count) as u32;
        Decision { allowed, limit, remaining, reset: window + 1, retry_after: 1 }
    }
}
