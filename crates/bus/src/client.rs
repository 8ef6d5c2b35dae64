//! [`Bus`]: a NATS client with the subject builder and typed request/reply.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::{HeaderMap, RequestErrorKind};
use chat_domain::ApiError;
use chat_domain::proto::{Command, Service, ServiceCommand};

use crate::envelope;
use crate::metrics::register;
use crate::subjects::Subjects;
use crate::trace;

/// Round trip of a command as its caller sees it (bus, queueing, handling, reply):
/// by the service asked and the command's verb. Both labels are static strings, so
/// observing costs no allocation.
static REQUEST_SECONDS: LazyLock<prometheus::HistogramVec> = LazyLock::new(|| {
    register(prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new(
            "chat_bus_request_seconds",
            "Bus request latency seen by the caller (send to reply), by service asked and command verb",
        )
        .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]),
        &["service", "verb"],
    ))
});

/// Requests that got no reply at all, by service, verb and why: `timeout`,
/// `no_responders` (nobody subscribed: the service is down) or `other`.
static REQUEST_FAILURES: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    register(prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "chat_bus_request_failures_total",
            "Bus requests that got no reply, by service asked, command verb and reason (timeout, no_responders, other)",
        ),
        &["service", "verb", "reason"],
    ))
});

/// How long a caller waits for a command's reply by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait between two attempts to reconnect to NATS.
///
/// async-nats backs off up to 4 s by default, so after NATS restarted each service
/// came back at its own moment, up to 4 s after the server did; meanwhile a gateway
/// that was back got "no responders" for the commands of a service that was not
/// (the chaos suite measured sends failing for 7–8 s after a 5 s NATS outage). An
/// attempt against a server that is down costs one refused TCP connection, so
/// retrying twice a second costs nothing and bounds that wait to half a second.
pub const RECONNECT_DELAY_MAX: Duration = Duration::from_millis(500);

/// The wait before reconnect attempt `attempts` (1 = the first): none, then 50 ms
/// doubling up to [`RECONNECT_DELAY_MAX`].
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    Duration::from_millis(50u64 << doublings).min(RECONNECT_DELAY_MAX)
}

/// Connects to NATS, naming the connection after the service (visible in NATS
/// monitoring). Fails if the server cannot be reached within a few seconds; once
/// connected, the client reconnects by itself forever (see [`reconnect_delay`]),
/// re-subscribing everything, and logs each disconnect and reconnect.
pub async fn connect(url: &str, name: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(DEFAULT_REQUEST_TIMEOUT))
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("NATS connection (re)established"),
                async_nats::Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
                // One per failed attempt while the server is away: not worth a warning each.
                async_nats::Event::ClientError(e) => tracing::debug!(error = %e, "NATS client error"),
                other => tracing::warn!(event = %other, "NATS connection event"),
            }
        })
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

/// A handle on the bus: cheap to clone, shared by every task of a service.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    subjects: Subjects,
    timeout: Duration,
}

impl Bus {
    pub fn new(client: async_nats::Client, subjects: Subjects) -> Self {
        Self { client, subjects, timeout: DEFAULT_REQUEST_TIMEOUT }
    }

    /// The same bus with another request timeout (health checks use a short one).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self { timeout, ..self.clone() }
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Sends a command to the service that owns it and decodes the reply.
    pub async fn request<C: ServiceCommand>(&self, cmd: &C) -> Result<C::Reply, ApiError> {
        self.request_to(C::SERVICE, cmd).await
    }

    /// Sends a command that several services answer (such as `health`) to one of them.
    pub async fn request_to<C: Command>(&self, service: Service, cmd: &C) -> Result<C::Reply, ApiError> {
        let subject = self.subjects.command(service, C::VERB);
        let payload = serde_json::to_vec(cmd).map_err(|e| {
            tracing::error!(error = %e, verb = C::VERB, "could not serialize a command");
            ApiError::internal()
        })?;
        let mut headers = HeaderMap::new();
        trace::inject(&mut headers);
        let request = async_nats::Request::new().payload(payload.into()).headers(headers).timeout(Some(self.timeout));
        let started = Instant::now();
        let reply = self.client.send_request(subject, request).await;
        REQUEST_SECONDS.with_label_values(&[service.name(), C::VERB]).observe(started.elapsed().as_secs_f64());
        match reply {
            Ok(reply) => envelope::decode(&reply.payload),
            Err(e) => {
                let (what, reason) = match e.kind() {
                    RequestErrorKind::TimedOut => ("did not answer in time", "timeout"),
                    RequestErrorKind::NoResponders => ("is not running", "no_responders"),
                    _ => ("could not be reached", "other"),
                };
                REQUEST_FAILURES.with_label_values(&[service.name(), C::VERB, reason]).inc();
                tracing::warn!(service = service.name(), verb = C::VERB, error = %e, "command failed");
                Err(ApiError::unavailable(format!("{} {what}", service.name())))
            }
        }
    }

    /// Publishes a core NATS message (no persistence), with trace context.
    pub async fn publish(&self, subject: String, payload: bytes::Bytes) -> anyhow::Result<()> {
        let mut headers = HeaderMap::new();
        trace::inject(&mut headers);
        self.client.publish_with_headers(subject, headers, payload).await.context("publishing to NATS")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_at_once_then_at_most_every_half_second() {
        let delays: Vec<u64> = (1..=8).map(|a| reconnect_delay(a).as_millis() as u64).collect();
        assert_eq!(delays, vec![0, 50, 100, 200, 400, 500, 500, 500]);
        assert_eq!(reconnect_delay(usize::MAX), RECONNECT_DELAY_MAX);
    }
}
