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

/// Requests asked again because no server had a subscriber for them ("no
/// responders"), by service and verb. Each retry waits [`NO_RESPONDERS_PAUSE_MIN`]
/// doubling to [`NO_RESPONDERS_PAUSE_MAX`], within the request's timeout.
static REQUEST_RETRIES: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    register(prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "chat_bus_request_retries_total",
            "Bus requests asked again after no responders (nobody received them), by service asked and command verb",
        ),
        &["service", "verb"],
    ))
});

/// First pause before asking again after "no responders"; then doubling.
pub const NO_RESPONDERS_PAUSE_MIN: Duration = Duration::from_millis(20);
/// Longest pause between two attempts after "no responders".
pub const NO_RESPONDERS_PAUSE_MAX: Duration = Duration::from_millis(250);
/// How long a request keeps asking again after "no responders" (within its timeout).
/// A replica whose NATS node went away is back on another within a second (it
/// reconnects at once and the cluster propagates its interest in milliseconds), and
/// a restarted replica within `make run`'s first restart delay of 1 s; a service
/// that is really down is still reported after this long, not after the whole
/// request timeout.
pub const NO_RESPONDERS_RETRY_FOR: Duration = Duration::from_secs(2);

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

/// The servers of a NATS URL setting: one URL, or several separated by commas
/// (`nats://n1:4222,nats://n2:4222,nats://n3:4222`, the form `NATS_URL` takes for a
/// cluster). Each entry is what the NATS clients accept: `nats://host:port` (also
/// `tls://`, `ws://`, `wss://`, with credentials if any), or `host:port`, which means
/// `nats://host:port`. An empty entry or one that is not such a URL is an error that
/// names it.
pub fn servers(list: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if entry.is_empty() {
            anyhow::bail!(
                "NATS server list {list:?}: entry {} is empty (separate server URLs with single commas)",
                i + 1
            );
        }
        let addr: async_nats::ServerAddr = entry
            .parse()
            .map_err(|e| anyhow::anyhow!("NATS server list {list:?}: entry {} ({entry:?}): {e}", i + 1))?;
        if addr.host().is_empty() {
            anyhow::bail!("NATS server list {list:?}: entry {} ({entry:?}) names no host", i + 1);
        }
        out.push(addr);
    }
    Ok(out)
}

/// Connects to NATS, naming the connection after the service (visible in NATS
/// monitoring). `url` is one server or a comma-separated list of the servers of a
/// cluster (see [`servers`]); the client connects to any one that answers and learns
/// the rest of the cluster from it. Fails if no server can be reached within a few
/// seconds; once connected, the client reconnects by itself forever (see
/// [`reconnect_delay`]) to whichever server of the cluster answers, re-subscribing
/// everything (the cluster then routes the interest to every node), and logs each
/// disconnect and reconnect.
pub async fn connect(url: &str, name: &str) -> anyhow::Result<async_nats::Client> {
    let servers = servers(url)?;
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
        .connect(servers)
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

    /// Sends a command to the service that owns it and decodes the reply's data as `R`
    /// instead of the command's reply type: a caller that passes the data on as it came
    /// reads it as `serde_json::value::RawValue`s and does not build what it never
    /// looks at.
    pub async fn request_as<C: ServiceCommand, R: serde::de::DeserializeOwned>(&self, cmd: &C) -> Result<R, ApiError> {
        self.exchange(C::SERVICE, cmd).await
    }

    /// Sends a command that several services answer (such as `health`) to one of them.
    pub async fn request_to<C: Command>(&self, service: Service, cmd: &C) -> Result<C::Reply, ApiError> {
        self.exchange(service, cmd).await
    }

    /// Sends `cmd` to `service` and decodes the reply's data as `R`.
    async fn exchange<C: Command, R: serde::de::DeserializeOwned>(
        &self,
        service: Service,
        cmd: &C,
    ) -> Result<R, ApiError> {
        let subject = self.subjects.command(service, C::VERB);
        let payload = serde_json::to_vec(cmd).map_err(|e| {
            tracing::error!(error = %e, verb = C::VERB, "could not serialize a command");
            ApiError::internal()
        })?;
        let payload = bytes::Bytes::from(payload);
        let mut headers = HeaderMap::new();
        trace::inject(&mut headers);
        let started = Instant::now();
        let deadline = started + self.timeout;
        let retry_until = started + NO_RESPONDERS_RETRY_FOR.min(self.timeout);
        let mut pause = NO_RESPONDERS_PAUSE_MIN;
        let reply = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let request =
                async_nats::Request::new().payload(payload.clone()).headers(headers.clone()).timeout(Some(left));
            match self.client.send_request(subject.clone(), request).await {
                // Nobody received the request, so asking again is safe for any command:
                // while a replica's connection moves to another node of a NATS cluster
                // (or the service restarts), its interest is briefly unknown.
                Err(e)
                    if e.kind() == RequestErrorKind::NoResponders
                        && retry_until.saturating_duration_since(Instant::now()) > pause =>
                {
                    REQUEST_RETRIES.with_label_values(&[service.name(), C::VERB]).inc();
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(NO_RESPONDERS_PAUSE_MAX);
                }
                other => break other,
            }
        };
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

    #[test]
    fn server_lists_name_every_server_of_a_cluster() -> anyhow::Result<()> {
        let one = servers("nats://127.0.0.1:4222")?;
        assert_eq!(one.len(), 1);
        let three = servers("nats://n1:4222, nats://n2:4223,n3:4224")?;
        let hosts: Vec<(&str, u16)> = three.iter().map(|s| (s.host(), s.port())).collect();
        assert_eq!(hosts, vec![("n1", 4222), ("n2", 4223), ("n3", 4224)]);
        Ok(())
    }

    #[test]
    fn bad_server_lists_say_which_entry_is_wrong() {
        for (list, says) in [
            ("", "entry 1 is empty"),
            ("nats://n1:4222,,nats://n2:4222", "entry 2 is empty"),
            ("nats://n1:4222,", "entry 2 is empty"),
            ("nats://n1:4222,http://n2:4222", "entry 2 (\"http://n2:4222\")"),
            ("nats://n1:99999", "entry 1"),
        ] {
            let err = match servers(list) {
                Ok(s) => panic!("{list:?} was accepted as {s:?}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(says), "{list:?}: {err}");
        }
    }
}
