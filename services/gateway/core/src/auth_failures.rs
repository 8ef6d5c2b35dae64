//! Failed credentials are cheap: an unknown API key, operator key, JWT issuer or token
//! tenant is remembered for [`FAILED_TTL`] (the same one again costs no bus request and
//! no database lookup), and each client address may fail at most
//! [`MAX_FAILURES_PER_ADDRESS`] times per [`ADDRESS_WINDOW`] in a way that cost a
//! lookup (a forged token of a known tenant is refused from the cache and does not
//! count). Past that, until the window ends, its requests get no lookups for
//! credentials this gateway has not seen succeed: a key or token verified before still
//! works (its expired cache entry may be looked up again), any other is refused without
//! asking anyone (`429 RATE_LIMIT_EXCEEDED` on REST; a socket gets its dialect's
//! rate-limit close). So an address guessing keys costs nothing, and a client behind
//! the same address with a good key is not locked out.
//!
//! What is remembered is a hash of the credential (never the credential), and both
//! tables are bounded: past [`MAX_ENTRIES`] they are cleared. A tenant change
//! (`tenant.changed`: a key rotated, an issuer registered) clears the failures, so a
//! key or issuer that has just come to exist works at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chat_domain::{ApiError, ErrorCode};

/// How long a failed credential is answered from memory.
pub const FAILED_TTL: Duration = Duration::from_secs(5);
/// Failed authentications one client address may make per [`ADDRESS_WINDOW`].
pub const MAX_FAILURES_PER_ADDRESS: u32 = 20;
/// The window of [`MAX_FAILURES_PER_ADDRESS`].
pub const ADDRESS_WINDOW: Duration = Duration::from_secs(60);
/// Most entries per table; past it the table is cleared.
const MAX_ENTRIES: usize = 100_000;

/// Failed credentials and failures per address.
#[derive(Debug, Default)]
pub struct AuthFailures {
    /// Credential hash → when it failed, and the error it got (answered again as is).
    credentials: Mutex<HashMap<String, (Instant, ApiError)>>,
    addresses: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthFailures {
    /// The error `credential` (a key, `iss:<issuer>`, `tid:<tenant>`) got, when it
    /// failed within [`FAILED_TTL`].
    pub fn known_bad(&self, credential: &str) -> Option<ApiError> {
        let hash = chat_domain::keys::hash(credential);
        let m = self.credentials.lock().ok()?;
        m.get(&hash).filter(|(at, _)| at.elapsed() < FAILED_TTL).map(|(_, e)| e.clone())
    }

    /// Remembers that `credential` failed with `error`, when `error` says the
    /// credential is bad (see [`is_failure`]); passes `error` on.
    pub fn remember_bad(&self, credential: &str, error: ApiError) -> ApiError {
        if !is_failure(&error) {
            return error;
        }
        let hash = chat_domain::keys::hash(credential);
        if let Ok(mut m) = self.credentials.lock() {
            if m.len() >= MAX_ENTRIES {
                m.retain(|_, (at, _)| at.elapsed() < FAILED_TTL);
                if m.len() >= MAX_ENTRIES {
                    m.clear();
                }
            }
            m.insert(hash, (Instant::now(), error.clone()));
        }
        error
    }

    /// Forgets every failed credential (a tenant changed).
    pub fn clear_credentials(&self) {
        if let Ok(mut m) = self.credentials.lock() {
            m.clear();
        }
    }

    /// Seconds until `addr` may try again, when it has used up its failures.
    pub fn blocked(&self, addr: Option<IpAddr>) -> Option<u64> {
        let addr = addr?;
        let m = self.addresses.lock().ok()?;
        let (start, n) = m.get(&addr).copied()?;
        let elapsed = start.elapsed();
        (n >= MAX_FAILURES_PER_ADDRESS && elapsed < ADDRESS_WINDOW).then(|| (ADDRESS_WINDOW - elapsed).as_secs().max(1))
    }

    /// Counts a failed authentication from `addr`.
    pub fn failed_from(&self, addr: Option<IpAddr>) {
        let Some(addr) = addr else { return };
        if let Ok(mut m) = self.addresses.lock() {
            if m.len() >= MAX_ENTRIES {
                m.retain(|_, (start, _)| start.elapsed() < ADDRESS_WINDOW);
                if m.len() >= MAX_ENTRIES {
                    m.clear();
                }
            }
            let entry = m.entry(addr).or_insert((Instant::now(), 0));
            if entry.0.elapsed() >= ADDRESS_WINDOW {
                *entry = (Instant::now(), 0);
            }
            entry.1 = entry.1.saturating_add(1);
        }
    }
}

tokio::task_local! {
    /// Set while a request from an address over its failures runs: lookups are refused
    /// (the value is the seconds until the address may look up again).
    static CACHED_ONLY: u64;
    /// Set while a credential check is counted: whether it looked anything up.
    static LOOKED_UP: std::cell::Cell<bool>;
}

/// Runs `f` (a credential check), telling whether it made a lookup: only failures that
/// cost one count against the address (a forged token of a known tenant is refused
/// from the cache and costs nothing).
pub async fn counting_lookups<F: std::future::Future>(f: F) -> (F::Output, bool) {
    LOOKED_UP
        .scope(std::cell::Cell::new(false), async {
            let out = f.await;
            (out, LOOKED_UP.with(std::cell::Cell::get))
        })
        .await
}

/// Runs `f` (a credential check) with lookups refused, answering from caches only.
pub async fn cached_only<F: std::future::Future>(retry_after: u64, f: F) -> F::Output {
    CACHED_ONLY.scope(retry_after, f).await
}

/// `Ok` when the running request may look a credential up (ask message-store): always,
/// except inside [`cached_only`], where only a credential `verified_before` (one this
/// gateway has seen succeed, whose cache entry merely expired) may be looked up again;
/// otherwise the `429` of [`too_many_failures`].
pub fn lookup_allowed(verified_before: bool) -> Result<(), ApiError> {
    match CACHED_ONLY.try_with(|s| *s) {
        Ok(retry_after) if !verified_before => Err(too_many_failures(retry_after)),
        _ => {
            let _ = LOOKED_UP.try_with(|l| l.set(true));
            Ok(())
        }
    }
}

/// The `429` of an address that has failed too often.
pub fn too_many_failures(retry_after: u64) -> ApiError {
    ApiError::new(
        ErrorCode::RateLimitExceeded,
        format!("Too many failed authentications from this address. Try again in {retry_after} seconds"),
    )
}

/// Whether `e` says the credential itself is bad (as opposed to the services being
/// unavailable, which is not the caller's failure).
pub fn is_failure(e: &ApiError) -> bool {
    matches!(e.code, ErrorCode::AuthenticationError | ErrorCode::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_remembered_and_addresses_bounded() {
        let f = AuthFailures::default();
        assert!(f.known_bad("sk_nope").is_none());
        f.remember_bad("sk_nope", ApiError::authentication("Invalid API key"));
        assert_eq!(f.known_bad("sk_nope").map(|e| e.message), Some("Invalid API key".to_owned()));
        assert!(f.known_bad("sk_other").is_none());
        f.remember_bad("sk_down", ApiError::new(ErrorCode::ServiceUnavailable, "down"));
        assert!(f.known_bad("sk_down").is_none(), "an outage is no failure of the key");
        f.clear_credentials();
        assert!(f.known_bad("sk_nope").is_none());
        let addr: Option<IpAddr> = "192.0.2.7".parse().ok();
        for _ in 0..MAX_FAILURES_PER_ADDRESS - 1 {
            f.failed_from(addr);
        }
        assert_eq!(f.blocked(addr), None);
        f.failed_from(addr);
        assert!(f.blocked(addr).is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(f.blocked("192.0.2.8".parse().ok()), None, "other addresses are not affected");
        assert_eq!(f.blocked(None), None);
    }

    #[tokio::test]
    async fn lookups_are_refused_only_inside_cached_only() {
        assert!(lookup_allowed(false).is_ok());
        let refused = cached_only(7, async { lookup_allowed(false) }).await;
        assert_eq!(refused.map_err(|e| e.code), Err(ErrorCode::RateLimitExceeded));
        assert!(cached_only(7, async { lookup_allowed(true) }).await.is_ok(), "a key seen good is looked up again");
        assert!(lookup_allowed(false).is_ok(), "only inside the scope");
        let ((), looked) = counting_lookups(async {}).await;
        assert!(!looked);
        let (_, looked) = counting_lookups(async { lookup_allowed(false) }).await;
        assert!(looked);
    }
}
