//! Per-tenant rate limits that hold across gateway replicas, without a Redis round trip
//! per request.
//!
//! Redis keeps one counter per tenant per one-second window (Unix seconds), shared by
//! every gateway. A gateway does not count each request there: it *leases* a chunk of
//! tokens (`INCRBY chunk` and, for a new counter, its expiry, in one script call) and
//! spends them locally. A lease that carries the counter past the limit is valid only
//! for the part below it, so the tokens granted to all gateways together never exceed
//! the limit; a gateway that has seen the counter reach the limit refuses on its own
//! for the rest of the window.
//!
//! Chunks are `limit / 20` (at least 1). A tenant running at its limit then costs each
//! gateway at most ~21 leases per window; a tenant well below it, one per window (the
//! benchmark tenant, 1,000,000/s, leases 50,000 at a time: one call per second). What
//! the limit can lose is what a gateway leased and did not spend before its window
//! ended, at most one chunk per gateway: with two gateways a tenant asking for more
//! than its limit gets at least 90% of it, and never more.
//!
//! One lease is in flight per tenant per gateway: requests that find no tokens while
//! it is out wait for it to land and then spend what it brought. The lease runs in a
//! task of its own, so a request that goes away mid-lease does not lose its chunk.
//! Only the current window is kept per tenant, and tenants idle for a window are
//! swept out as the table grows.
//!
//! When Redis cannot be reached, the request is let through and a warning logged: an
//! outage of the limiter should not become an outage of the chat. The rest of that
//! window is let through too, so an outage costs one failed call per tenant per
//! gateway per second rather than one per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_domain::ids::TenantId;
use chat_redis::Redis;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

/// The chunk a lease asks for is `limit / LEASES_PER_WINDOW`: more leases per window
/// leave less of the limit unspent at a window's end (one chunk per gateway), fewer
/// cost fewer round trips. 20 keeps two gateways within 10% of the limit.
const LEASES_PER_WINDOW: u32 = 20;

/// How long a window's counter outlives its start in Redis: long enough for a lease
/// sent at the end of the second, short enough that counters do not pile up.
const COUNTER_TTL_MS: u64 = 2000;

/// A lease that has not landed by then is given up (and its window let through):
/// the tenant's requests on this gateway are waiting for it.
const LEASE_TIMEOUT: Duration = Duration::from_millis(500);

/// The tenant table is swept of idle tenants when it grows to this size, and after
/// that when it has doubled since the last sweep.
const SWEEP_FLOOR: usize = 1024;

/// Adds `ARGV[1]` tokens to the window's counter `KEYS[1]` and returns its new value;
/// the lease that creates the counter gives it its expiry (`ARGV[2]` ms).
const LEASE_SCRIPT: &str = "local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n";

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests the tenant may still make in this window, as far as this gateway knows.
    pub remaining: u32,
    /// Unix time (seconds) when the current window ends.
    pub reset: u64,
    /// Seconds to wait before retrying, when refused.
    pub retry_after: u64,
}

/// Counts requests per tenant in one-second windows. Cheap to clone: clones share one
/// table of budgets, so every actix worker spends from the same leases.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("prefix", &self.inner.prefix).finish()
    }
}

struct Inner {
    redis: Redis,
    /// The bus prefix: stacks sharing one Redis keep their counters apart.
    prefix: String,
    script: redis::Script,
    tenants: Mutex<Tenants>,
}

/// This gateway's budgets, by tenant.
struct Tenants {
    by_id: HashMap<TenantId, Tenant>,
    /// The size at which the next sweep of idle tenants runs.
    sweep_at: usize,
}

#[derive(Default)]
struct Tenant {
    budget: Budget,
    /// Present while a lease for this tenant is in flight; notified when it lands, so
    /// that requests wait for it instead of each leasing a chunk of their own.
    lease: Option<Arc<Notify>>,
}

/// What a request does next.
enum Next {
    Done(Decision),
    /// Wait for the lease in flight, then look again.
    Wait(OwnedNotified),
    /// Lease a chunk for the window: this request is the one to do it.
    Lease {
        window: u64,
        chunk: u32,
    },
}

impl RateLimiter {
    pub fn new(redis: Redis, prefix: &str) -> Self {
        let inner = Inner {
            redis,
            prefix: prefix.to_owned(),
            script: redis::Script::new(LEASE_SCRIPT),
            tenants: Mutex::new(Tenants { by_id: HashMap::new(), sweep_at: SWEEP_FLOOR }),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Counts one request of `tenant` against `limit` per second: from this gateway's
    /// tokens when it has some, else after leasing more from Redis (or waiting for the
    /// lease already in flight).
    pub async fn check(&self, tenant: &TenantId, limit: u32) -> Decision {
        loop {
            match self.inner.next(tenant, limit) {
                Next::Done(decision) => return decision,
                Next::Wait(landed) => landed.await,
                Next::Lease { window, chunk } => {
                    let in_flight = InFlight { inner: Arc::clone(&self.inner), tenant: tenant.clone() };
                    let lease = tokio::spawn(in_flight.run(window, limit, chunk));
                    return lease.await.unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "rate limit lease failed; letting the request through");
                        Decision { allowed: true, limit, remaining: limit, reset: window + 1, retry_after: 1 }
                    });
                }
            }
        }
    }
}

impl Inner {
    fn tenants(&self) -> MutexGuard<'_, Tenants> {
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next(&self, tenant: &TenantId, limit: u32) -> Next {
        let now = unix_seconds();
        let mut tenants = self.tenants();
        if let Some(t) = tenants.by_id.get_mut(tenant) {
            return t.next(now, limit);
        }
        tenants.get_or_insert(tenant, now).next(now, limit)
    }

    /// One lease call: the counter of `window` after adding `chunk` to it.
    async fn lease(&self, tenant: &TenantId, window: u64, chunk: u32) -> Result<u64, LeaseError> {
        let key = format!("{}:rl:{tenant}:{window}", self.prefix);
        let mut conn = self.redis.clone();
        let mut invocation = self.script.key(&key);
        invocation.arg(chunk).arg(COUNTER_TTL_MS);
        match tokio::time::timeout(LEASE_TIMEOUT, invocation.invoke_async::<u64>(&mut conn)).await {
            Ok(counter) => Ok(counter?),
            Err(_) => Err(LeaseError::Timeout(LEASE_TIMEOUT)),
        }
    }
}

impl Tenants {
    fn get_or_insert(&mut self, tenant: &TenantId, now: u64) -> &mut Tenant {
        if self.by_id.len() >= self.sweep_at {
            // A budget of a past window holds nothing worth keeping; one with a lease
            // in flight is still waited on.
            self.by_id.retain(|_, t| t.budget.window >= now || t.lease.is_some());
            self.sweep_at = (2 * self.by_id.len()).max(SWEEP_FLOOR);
        }
        self.by_id.entry(tenant.clone()).or_default()
    }
}

impl Tenant {
    fn next(&mut self, now: u64, limit: u32) -> Next {
        match self.budget.take(now, limit) {
            Take::Done(decision) => Next::Done(decision),
            Take::Lease { window, chunk } => match &self.lease {
                // Created under the table's lock, so the lease cannot land unnoticed
                // between this look and the wait.
                Some(landed) => Next::Wait(Arc::clone(landed).notified_owned()),
                None => {
                    self.lease = Some(Arc::new(Notify::new()));
                    Next::Lease { window, chunk }
                }
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum LeaseError {
    #[error("lease script failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A tenant's lease in flight. However its task ends (even dropped half-way), the
/// lease is marked landed and its waiters woken, so nobody waits on a lease that will
/// not come.
struct InFlight {
    inner: Arc<Inner>,
    tenant: TenantId,
}

impl InFlight {
    /// Leases a chunk and books it, with the decision for the request that asked.
    async fn run(self, window: u64, limit: u32, chunk: u32) -> Decision {
        let counter = self.inner.lease(&self.tenant, window, chunk).await;
        let decision = {
            let mut tenants = self.inner.tenants();
            let t = tenants.get_or_insert(&self.tenant, window);
            match counter {
                Ok(counter) => t.budget.grant(window, limit, chunk, counter),
                Err(error) => {
                    tracing::warn!(%error, tenant = %self.tenant, "rate limiter unavailable; letting requests through");
                    t.budget.fail_open(window, limit)
                }
            }
        };
        // Landed: the waiters wake to find the chunk booked.
        drop(self);
        decision
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut tenants = self.inner.tenants();
        if let Some(landed) = tenants.by_id.get_mut(&self.tenant).and_then(|t| t.lease.take()) {
            landed.notify_waiters();
        }
    }
}

/// One tenant's budget on this gateway for one window: what its leases brought and
/// what it has spent. Bookkeeping only (no I/O, no clock), so it is tested on its own.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Budget {
    /// The window (Unix second) the rest is about.
    window: u64,
    /// Tokens leased for `window` and not yet spent.
    tokens: u32,
    /// The window's shared counter as the last lease left it: every token leased by
    /// any gateway, including the invalid part of a lease that crossed the limit.
    seen: u64,
    /// Redis failed during `window`: requests are let through until it ends.
    open: bool,
}

/// What a budget can do for a request on its own.
#[derive(Debug, PartialEq, Eq)]
enum Take {
    Done(Decision),
    /// Nothing left here, but the limit is not reached: lease `chunk` for `window`.
    Lease {
        window: u64,
        chunk: u32,
    },
}

impl Budget {
    /// Starts over when `now` is a later window. A clock that steps back keeps
    /// counting in the window it had reached.
    fn roll(&mut self, now: u64) {
        if now > self.window {
            *self = Budget { window: now, ..Budget::default() };
        }
    }

    fn take(&mut self, now: u64, limit: u32) -> Take {
        self.roll(now);
        if self.open || self.tokens > 0 || self.seen >= u64::from(limit) {
            Take::Done(self.spend(limit))
        } else {
            Take::Lease { window: self.window, chunk: chunk(limit) }
        }
    }

    /// Books a lease of `chunk` for `window` that left the shared counter at `counter`,
    /// and spends a token of it on the request that asked for it.
    fn grant(&mut self, window: u64, limit: u32, chunk: u32, counter: u64) -> Decision {
        self.roll(window);
        let granted = granted(limit, chunk, counter);
        if window != self.window {
            // The window ended while the lease was out: the request is counted in it,
            // the rest of the chunk is of no use any more.
            return Budget { window, tokens: granted, seen: counter, open: false }.spend(limit);
        }
        self.seen = self.seen.max(counter);
        self.tokens = self.tokens.saturating_add(granted);
        self.spend(limit)
    }

    /// Lets the request through without a lease, and the rest of `window` too.
    fn fail_open(&mut self, window: u64, limit: u32) -> Decision {
        self.roll(window);
        if window == self.window {
            self.open = true;
        }
        Decision { allowed: true, limit, remaining: limit, reset: window + 1, retry_after: 1 }
    }

    fn spend(&mut self, limit: u32) -> Decision {
        let allowed = if self.open {
            true
        } else if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        };
        Decision { allowed, limit, remaining: self.remaining(limit), reset: self.window + 1, retry_after: 1 }
    }

    /// The limit minus what the window has leased globally (as last seen), plus what
    /// this gateway leased and has not spent: what the tenant may still do, as far as
    /// this gateway knows.
    fn remaining(&self, limit: u32) -> u32 {
        if self.open {
            return limit;
        }
        let unleased = u64::from(limit).saturating_sub(self.seen);
        let left = (unleased + u64::from(self.tokens)).min(u64::from(limit));
        u32::try_from(left).unwrap_or(limit)
    }
}

/// The tokens one lease asks for.
fn chunk(limit: u32) -> u32 {
    (limit / LEASES_PER_WINDOW).max(1)
}

/// The valid part of a lease of `chunk` that left the counter at `counter`: what of
/// it lies below the limit.
fn granted(limit: u32, chunk: u32, counter: u64) -> u32 {
    let before = counter.saturating_sub(u64::from(chunk));
    let valid = u64::from(limit).saturating_sub(before).min(u64::from(chunk));
    u32::try_from(valid).unwrap_or(chunk)
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared Redis counters, in memory: one per window.
    #[derive(Default)]
    struct Counters(HashMap<u64, u64>);

    impl Counters {
        fn lease(&mut self, window: u64, chunk: u32) -> u64 {
            let n = self.0.entry(window).or_default();
            *n += u64::from(chunk);
            *n
        }
    }

    /// One request through `budget` at `now`, leasing from `counters` when it must.
    /// Returns the decision and whether it took a lease.
    fn request(budget: &mut Budget, counters: &mut Counters, now: u64, limit: u32) -> (Decision, bool) {
        match budget.take(now, limit) {
            Take::Done(d) => (d, false),
            Take::Lease { window, chunk } => {
                let counter = counters.lease(window, chunk);
                (budget.grant(window, limit, chunk, counter), true)
            }
        }
    }

    #[test]
    fn chunks_are_a_twentieth_of_the_limit_and_at_least_one() {
        assert_eq!(chunk(1), 1);
        assert_eq!(chunk(19), 1);
        assert_eq!(chunk(50), 2);
        assert_eq!(chunk(100), 5);
        assert_eq!(chunk(1_000_000), 50_000);
    }

    #[test]
    fn a_lease_that_crosses_the_limit_is_valid_below_it() {
        assert_eq!(granted(10, 5, 5), 5);
        assert_eq!(granted(10, 5, 10), 5);
        assert_eq!(granted(10, 5, 12), 3);
        assert_eq!(granted(10, 5, 15), 0);
        assert_eq!(granted(10, 5, 40), 0);
    }

    #[test]
    fn one_gateway_at_its_limit_admits_exactly_the_limit_with_few_leases() {
        for limit in [1, 7, 50, 100, 1000, 1_000_000] {
            let (mut budget, mut counters) = (Budget::default(), Counters::default());
            let (mut allowed, mut leases) = (0, 0);
            for _ in 0..u64::from(limit) * 2 {
                let (d, leased) = request(&mut budget, &mut counters, 7, limit);
                allowed += u32::from(d.allowed);
                leases += u32::from(leased);
                assert_eq!(d.reset, 8);
                if !d.allowed {
                    assert_eq!(d.remaining, 0, "a refusal leaves nothing");
                }
            }
            assert_eq!(allowed, limit, "limit {limit}");
            assert_eq!(leases, limit.div_ceil(chunk(limit)), "limit {limit}: every lease but the last is spent whole");
            assert!(limit < 400 || leases <= LEASES_PER_WINDOW + 1, "limit {limit}: {leases} leases");
        }
    }

    #[test]
    fn a_tenant_with_a_huge_limit_leases_once_per_window() {
        let (mut budget, mut counters) = (Budget::default(), Counters::default());
        for window in 100..103 {
            let leases: u32 =
                (0..20_000).map(|_| u32::from(request(&mut budget, &mut counters, window, 1_000_000).1)).sum();
            assert_eq!(leases, 1, "window {window}");
        }
    }

    #[test]
    fn once_the_limit_is_seen_refusals_are_local() {
        let (mut budget, mut counters) = (Budget::default(), Counters::default());
        while request(&mut budget, &mut counters, 1, 10).0.allowed {}
        for _ in 0..100 {
            assert_eq!(
                budget.take(1, 10),
                Take::Done(Decision { allowed: false, limit: 10, remaining: 0, reset: 2, retry_after: 1 })
            );
        }
        assert_eq!(counters.0[&1], 10, "no lease after the limit was reached");
    }

    #[test]
    fn two_gateways_share_the_limit_and_waste_at_most_a_chunk_each() {
        let limit = 100;
        // Interleavings of two gateways' requests, each gateway asking 3x the limit.
        for pattern in [[1, 1], [1, 3], [7, 2], [1, 29]] {
            let mut counters = Counters::default();
            let mut gateways = [Budget::default(), Budget::default()];
            let mut allowed = 0;
            for _ in 0..limit * 3 {
                for (g, n) in pattern.iter().enumerate() {
                    for _ in 0..*n {
                        allowed += u32::from(request(&mut gateways[g], &mut counters, 5, limit).0.allowed);
                    }
                }
            }
            assert_eq!(allowed, limit, "both busy all window: every granted token is spent ({pattern:?})");
        }
        // The worst case: a gateway leases a chunk, spends one and falls silent.
        let mut counters = Counters::default();
        let mut quiet = Budget::default();
        let mut busy = Budget::default();
        let mut allowed = u32::from(request(&mut quiet, &mut counters, 5, limit).0.allowed);
        for _ in 0..limit * 3 {
            allowed += u32::from(request(&mut busy, &mut counters, 5, limit).0.allowed);
        }
        assert!(allowed <= limit);
        assert!(allowed >= limit - chunk(limit), "{allowed} admitted");
        assert!(allowed * 10 >= limit * 9, "{allowed} admitted");
    }

    #[test]
    fn remaining_counts_other_gateways_leases_and_local_spending() {
        let mut counters = Counters::default();
        let (mut a, mut b) = (Budget::default(), Budget::default());
        // a leases 5 and spends 1: 95 unleased + 4 held.
        assert_eq!(request(&mut a, &mut counters, 1, 100).0.remaining, 99);
        // b leases 5 and spends 1: it sees 90 unleased + its 4.
        assert_eq!(request(&mut b, &mut counters, 1, 100).0.remaining, 94);
        // a spends locally; it has not seen b's lease yet.
        assert_eq!(request(&mut a, &mut counters, 1, 100).0.remaining, 98);
    }

    #[test]
    fn a_new_window_starts_empty() {
        let mut counters = Counters::default();
        let mut budget = Budget::default();
        while request(&mut budget, &mut counters, 1, 10).0.allowed {}
        let (d, leased) = request(&mut budget, &mut counters, 2, 10);
        assert!(d.allowed && leased);
        assert_eq!(d.reset, 3);
        assert_eq!(budget, Budget { window: 2, tokens: 0, seen: 1, open: false });
    }

    #[test]
    fn a_lease_landing_after_its_window_counts_the_request_there_and_keeps_nothing() {
        let mut budget = Budget::default();
        let Take::Lease { window, chunk } = budget.take(1, 100) else { panic!("an empty budget leases") };
        // Meanwhile the clock moved on and another request rolled the budget.
        assert!(matches!(budget.take(2, 100), Take::Lease { window: 2, .. }));
        let d = budget.grant(window, 100, chunk, 5);
        assert!(d.allowed);
        assert_eq!(d.reset, 2);
        assert_eq!(budget, Budget { window: 2, tokens: 0, seen: 0, open: false }, "window 2 owes nothing to window 1");
    }

    #[test]
    fn a_redis_failure_lets_the_rest_of_the_window_through() {
        let mut budget = Budget::default();
        assert!(matches!(budget.take(1, 10), Take::Lease { .. }));
        let d = budget.fail_open(1, 10);
        assert!(d.allowed);
        for _ in 0..50 {
            assert!(matches!(budget.take(1, 10), Take::Done(Decision { allowed: true, remaining: 10, .. })));
        }
        assert!(matches!(budget.take(2, 10), Take::Lease { window: 2, .. }), "the next window asks Redis again");
    }

    #[test]
    fn a_clock_stepping_back_keeps_the_window_it_reached() {
        let mut counters = Counters::default();
        let mut budget = Budget::default();
        request(&mut budget, &mut counters, 9, 100);
        let (d, leased) = request(&mut budget, &mut counters, 8, 100);
        assert!(d.allowed && !leased);
        assert_eq!(d.reset, 10);
    }

    #[test]
    fn idle_tenants_are_swept_as_the_table_grows() {
        let mut tenants = Tenants { by_id: HashMap::new(), sweep_at: SWEEP_FLOOR };
        for i in 0..SWEEP_FLOOR * 3 {
            let t = tenants.get_or_insert(&TenantId::generate(), i as u64);
            t.budget.roll(i as u64);
        }
        assert!(tenants.by_id.len() <= SWEEP_FLOOR * 2, "{} tenants kept", tenants.by_id.len());
    }

    /// Against the Redis of the test environment (`REDIS_URL`): many concurrent
    /// requests on one gateway lease one chunk at a time, not one each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_lease_in_flight() -> anyhow::Result<()> {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let redis = chat_redis::connect(&url, "test").await?;
        let prefix = format!("rltest{}", rand::random::<u64>());
        let limiter = RateLimiter::new(redis.clone(), &prefix);
        let tenant = TenantId::generate();
        let (limit, requests) = (1000, 200);
        let first = unix_seconds();
        let checks = (0..requests).map(|_| {
            let (limiter, tenant) = (limiter.clone(), tenant.clone());
            tokio::spawn(async move { limiter.check(&tenant, limit).await })
        });
        let decisions = futures_util::future::try_join_all(checks).await?;
        let last = unix_seconds();
        assert!(decisions.iter().all(|d| d.allowed));
        let mut conn = redis;
        let mut leased = 0;
        for window in first..=last {
            let n: Option<u64> =
                redis::cmd("GET").arg(format!("{prefix}:rl:{tenant}:{window}")).query_async(&mut conn).await?;
            leased += n.unwrap_or(0);
        }
        // Per window: what was spent, rounded up to a chunk, plus at most one chunk
        // that landed after its window ended. One lease per request would be 200 chunks.
        let windows = last - first + 1;
        let bound = requests + 2 * u64::from(chunk(limit)) * windows;
        assert!(leased <= bound, "{leased} tokens leased for {requests} requests over {windows} windows");
        Ok(())
    }
}
