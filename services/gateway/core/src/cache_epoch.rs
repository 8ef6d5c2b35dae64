//! [`Epoch`]: what keeps a cache from keeping an answer read across a change.
//!
//! A cache's lookup goes over the bus; a change to what it caches (a rotated key, a new
//! token secret) may be announced — and the cache told to forget — while that lookup's
//! answer is still on its way. Stored then, the answer read before the change would be
//! trusted for a whole TTL after it. Each forget advances the cache's epoch; an answer
//! is stored only if the epoch did not move while it was being read (it is still used
//! once, by the caller that asked).

use std::sync::atomic::{AtomicU64, Ordering};

/// A count of a cache's forgets.
#[derive(Debug, Default)]
pub struct Epoch(AtomicU64);

impl Epoch {
    /// Where the epoch stands: taken before a lookup.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// A forget happened (call it under the cache's lock, with the forget).
    pub fn advance(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether no forget happened since `at` (check it under the cache's lock, before storing).
    pub fn unchanged_since(&self, at: u64) -> bool {
        self.now() == at
    }
}
