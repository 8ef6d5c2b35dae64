//! The gateway's Prometheus metrics (default registry, served at `/metrics`): those of
//! the core; a dialect defines its own with [`register`].

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// Registers a metric in the default registry (a dialect registers its own metrics
/// with it too). A second gateway in the same process reuses the first registration.
pub fn register<M: prometheus::core::Collector + Clone + 'static>(m: Result<M, prometheus::Error>) -> M {
    match m {
        Ok(m) => {
            // A second gateway in the same process (tests) reuses the first registration.
            let _ = prometheus::register(Box::new(m.clone()));
            m
        }
        Err(e) => panic!("metric definition is invalid: {e}"),
    }
}

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(IntCounterVec::new(
        prometheus::Opts::new("chat_gateway_http_requests_total", "HTTP requests by route and status"),
        &["method", "route", "status"],
    ))
});

pub static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(HistogramVec::new(
        prometheus::HistogramOpts::new("chat_gateway_http_seconds", "HTTP request latency by route")
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]),
        &["method", "route"],
    ))
});

pub static SOCKETS: LazyLock<IntGauge> =
    LazyLock::new(|| register(IntGauge::new("chat_gateway_websockets", "Open WebSocket connections")));

/// Open sockets by dialect and tenant. A tenant's series stays (at 0) once its last
/// socket closed: removing it could race with a socket opening at that moment.
pub static CONNECTIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(IntGaugeVec::new(
        prometheus::Opts::new("chat_gateway_connections", "Open WebSocket connections by dialect and tenant"),
        &["dialect", "tenant"],
    ))
});

/// Messages this gateway stored per tenant (REST and every socket dialect; resends
/// that stored nothing are not counted): the admin console (`/admin`) reads it from
/// this gateway's `/metrics` for each tenant's message rate. (message-store's
/// `chat_store_messages_stored_total{tenant}` counts the same across all gateways, on
/// its own ops port, which a browser on the gateway's origin cannot read.)
pub static TENANT_MESSAGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(IntCounterVec::new(
        prometheus::Opts::new("chat_gateway_tenant_messages_total", "Messages stored through this gateway, by tenant"),
        &["tenant"],
    ))
});

/// Buckets of the send and fan-out latencies: a send commits in milliseconds; the
/// top buckets are for a stalled database or a message-store replica failing over.
const SEND_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// From a send's acceptance (a REST request or a socket's `send_message`, through the
/// gateway's send batcher) to message-store's answer that it is stored, by outcome.
pub static SEND_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(HistogramVec::new(
        prometheus::HistogramOpts::new(
            "chat_gateway_send_seconds",
            "Send latency, accepted by the gateway (REST or WebSocket) to stored by message-store, by outcome \
             (stored, duplicate: an idempotent resend, refused: an error answer, unavailable: no answer)",
        )
        .buckets(SEND_BUCKETS.to_vec()),
        &["outcome"],
    ))
});

/// From a message's `created_at` (message-store's clock) to this gateway offering it
/// to the room's sockets.
pub static FANOUT_DELAY: LazyLock<Histogram> = LazyLock::new(|| {
    register(Histogram::with_opts(
        prometheus::HistogramOpts::new(
            "chat_gateway_fanout_delay_seconds",
            "Time from a message being stored (its created_at) to the gateway offering it to the room's sockets",
        )
        .buckets(SEND_BUCKETS.to_vec()),
    ))
});

/// Registers every metric of the gateway, so each is exported (at zero) before its
/// first use: dashboards and alert rules see the series from the start.
pub fn init() {
    LazyLock::force(&REQUESTS);
    LazyLock::force(&LATENCY);
    LazyLock::force(&SOCKETS);
    LazyLock::force(&SLOW_KICKS);
    LazyLock::force(&CONNECTIONS);
    LazyLock::force(&TENANT_MESSAGES);
    for outcome in ["stored", "duplicate", "refused", "unavailable"] {
        let _ = SEND_SECONDS.with_label_values(&[outcome]);
    }
    LazyLock::force(&FANOUT_DELAY);
    LazyLock::force(&PRESENCE_COALESCED);
}

/// Arrivals and departures that cancelled each other within a room's presence window
/// (each pair counts two), so no socket was sent either.
pub static PRESENCE_COALESCED: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new(
        "chat_gateway_presence_coalesced_total",
        "Presence changes (arrivals and departures) that cancelled each other within a room's presence window",
    ))
});

pub static SLOW_KICKS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new(
        "chat_gateway_slow_consumer_closes_total",
        "Sockets closed because they could not keep up",
    ))
});
