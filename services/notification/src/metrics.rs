//! notification's Prometheus metrics (default registry, served on `OPS_ADDR`), next
//! to the bus's per-command ones.
//!
//! - `chat_notification_webhook_attempts_total{outcome}`: webhook attempts that were
//!   `delivered`, failed and will be retried (`retry`), or failed for the last time
//!   (`dead`).
//! - `chat_notification_dead_letters_total{kind}` and
//!   `chat_notification_dead_letter_replays_total`: deliveries that became dead
//!   letters (`message` or `notification`), and dead letters replayed by an operator.
//! - `chat_notification_offline_caught_up_timestamp_seconds`: the moment up to which
//!   the offline pass has read message-store's log (Unix time; 0 on a replica that
//!   is standing by). `time() - max(...)` is the pass's lag.
//! - `chat_notification_offline_windows_total{outcome}`: room windows the offline pass
//!   closed, by what it found (`notified`, `seen`, `unknown`, `gone`).
//! - `chat_notification_mentions_notified_total`: offline members notified of a mention
//!   at once.
//!
//! The metrics are counted by `deliveries`, `dead_letters` and `offline`, and this
//! module imports none of them.
//!
//! Every series with a known label set is created at start (at zero), so a ratio or
//! an `increase()` in an alert rule has a series to work on before the first event.

use std::sync::LazyLock;

use prometheus::{Gauge, IntCounter, IntCounterVec};

fn register<M: prometheus::core::Collector + Clone + 'static>(m: Result<M, prometheus::Error>) -> M {
    match m {
        Ok(m) => {
            // A second instance in the same process (tests) reuses the first registration.
            let _ = prometheus::register(Box::new(m.clone()));
            m
        }
        Err(e) => panic!("metric definition is invalid: {e}"),
    }
}

pub static WEBHOOK_ATTEMPTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(IntCounterVec::new(
        prometheus::Opts::new(
            "chat_notification_webhook_attempts_total",
            "Webhook delivery attempts by outcome: delivered (2xx), retry (failed, tried again later), dead (failed for the last time: a dead letter)",
        ),
        &["outcome"],
    ))
});

pub static DEAD_LETTERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(IntCounterVec::new(
        prometheus::Opts::new(
            "chat_notification_dead_letters_total",
            "Webhook deliveries that ran out of attempts and became dead letters, by kind (message, notification)",
        ),
        &["kind"],
    ))
});

pub static REPLAYS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new(
        "chat_notification_dead_letter_replays_total",
        "Dead letters replayed (retry_dead_letter: the admin API or chatctl)",
    ))
});

pub static OFFLINE_CAUGHT_UP: LazyLock<Gauge> = LazyLock::new(|| {
    register(Gauge::new(
        "chat_notification_offline_caught_up_timestamp_seconds",
        "Unix time up to which the offline pass has read the message log (0 on a replica standing by); time() minus this is the pass's lag",
    ))
});

/// Room windows closed by the offline pass, by outcome.
pub static OFFLINE_WINDOWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(IntCounterVec::new(
        prometheus::Opts::new(
            "chat_notification_offline_windows_total",
            "Room windows closed by the offline pass: notified (someone missed something), seen (nobody did), \
             unknown (presence history no longer covers it), gone (the room no longer exists)",
        ),
        &["outcome"],
    ))
});

/// Members notified of a mention at once (one inbox entry each, and a webhook when the
/// tenant has one).
pub static MENTIONS_NOTIFIED: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new(
        "chat_notification_mentions_notified_total",
        "Offline members notified of a mention at once (never coalesced)",
    ))
});

/// Registers every metric with its known label values at zero.
pub fn init() {
    for outcome in ["delivered", "retry", "dead"] {
        let _ = WEBHOOK_ATTEMPTS.with_label_values(&[outcome]);
    }
    LazyLock::force(&MENTIONS_NOTIFIED);
    for kind in ["message", "notification", "mention"] {
        let _ = DEAD_LETTERS.with_label_values(&[kind]);
    }
    LazyLock::force(&REPLAYS);
    LazyLock::force(&OFFLINE_CAUGHT_UP);
    for outcome in ["notified", "seen", "unknown", "gone"] {
        let _ = OFFLINE_WINDOWS.with_label_values(&[outcome]);
    }
}
