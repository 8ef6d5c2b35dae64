//! The gateway's Prometheus metrics (default registry, served at `/metrics`).

use std::sync::LazyLock;

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge};

fn register<M: prometheus::core::Collector + Clone + 'static>(m: Result<M, prometheus::Error>) -> M {
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

pub static SOCKETIO_SESSIONS: LazyLock<IntGauge> =
    LazyLock::new(|| register(IntGauge::new("chat_gateway_socketio_sessions", "Open Socket.IO (Engine.IO) sessions")));

pub static SLOW_KICKS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new(
        "chat_gateway_slow_consumer_closes_total",
        "Sockets closed because they could not keep up",
    ))
});
