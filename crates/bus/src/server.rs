//! Answering commands. A [`Router`] maps verbs to handlers and serves them in the
//! service's queue group, so any number of replicas share the work.
//!
//! Every request gets a reply: a bad payload (malformed, or nested deeper than
//! `chat_domain::json` allows) or unknown verb is a `VALIDATION_ERROR` envelope, a
//! handler error its own envelope, a panicking handler `INTERNAL_ERROR`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use anyhow::Context as _;
use bytes::Bytes;
use chat_domain::ApiError;
use chat_domain::proto::{Command, Service};
use futures_util::StreamExt;
use prometheus::{HistogramVec, IntCounterVec};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::client::Bus;
use crate::metrics::register;
use crate::{envelope, trace};

/// Most commands one instance handles at once; more wait in NATS, which keeps a slow
/// database from turning into unbounded memory here.
pub const MAX_IN_FLIGHT: usize = 512;

type Reply = Pin<Box<dyn Future<Output = Bytes> + Send>>;
type Handler<S> = Arc<dyn Fn(S, Bytes) -> Reply + Send + Sync>;

static COMMANDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        prometheus::Opts::new("chat_bus_commands_total", "Commands answered, by service, verb and outcome"),
        &["service", "verb", "outcome"],
    );
    register(c)
});

static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    let h = HistogramVec::new(
        prometheus::HistogramOpts::new("chat_bus_command_seconds", "Time to answer a command")
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]),
        &["service", "verb"],
    );
    register(h)
});

/// Verb → handler, with the state every handler receives.
pub struct Router<S> {
    state: S,
    routes: HashMap<&'static str, Handler<S>>,
}

impl<S: Clone + Send + Sync + 'static> Router<S> {
    pub fn new(state: S) -> Self {
        Self { state, routes: HashMap::new() }
    }

    /// Adds the handler of command `C`.
    pub fn route<C, F, Fut>(mut self, handler: F) -> Self
    where
        C: Command,
        F: Fn(S, C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C::Reply, ApiError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler<S> = Arc::new(move |state: S, payload: Bytes| {
            let handler = handler.clone();
            Box::pin(async move {
                // Refused before parsing: nothing nested past what any reply can wrap
                // and still read back is ever handled, let alone stored.
                let max = chat_domain::json::MAX_DEPTH + chat_domain::json::COMMAND_ENVELOPE_DEPTH;
                if chat_domain::json::nests_deeper_than(&payload, max) {
                    return envelope::err(&ApiError::validation(
                        "body",
                        format!("invalid {} command: JSON nested deeper than {max} levels", C::VERB),
                    ));
                }
                match serde_json::from_slice::<C>(&payload) {
                    Ok(cmd) => match handler(state, cmd).await {
                        Ok(reply) => envelope::ok(&reply),
                        Err(e) => envelope::err(&e),
                    },
                    Err(e) => envelope::err(&ApiError::new(
                        chat_domain::ErrorCode::ValidationError,
                        format!("invalid {} command: {e}", C::VERB),
                    )),
                }
            })
        });
        self.routes.insert(C::VERB, erased);
        self
    }

    /// Subscribes in `service`'s queue group and answers until `shutdown` completes,
    /// then stops taking requests and waits for the ones in flight.
    pub async fn serve(self, bus: Bus, service: Service, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let subject = bus.subjects().commands_of(service);
        let mut sub = bus
            .client()
            .queue_subscribe(subject.clone(), service.name().to_owned())
            .await
            .with_context(|| format!("subscribing to {subject}"))?;
        // The subscription is registered on the server once a flush round-trips, so a
        // caller that saw `serve` start can send straight away.
        bus.client().flush().await.context("flushing the command subscription")?;
        tracing::info!(%subject, queue = service.name(), "answering commands");

        let routes = Arc::new(self.routes);
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        tokio::pin!(shutdown);
        loop {
            let msg = tokio::select! {
                _ = &mut shutdown => break,
                msg = sub.next() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
            };
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let (routes, state, client) = (routes.clone(), self.state.clone(), bus.client().clone());
            tokio::spawn(async move {
                answer(service, &routes, state, client, msg).await;
                drop(permit);
            });
        }
        let _ = sub.unsubscribe().await;
        // Wait (bounded) for in-flight commands so their callers get replies.
        let drain = permits.acquire_many(MAX_IN_FLIGHT as u32);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
        Ok(())
    }
}

async fn answer<S: Clone + Send + Sync + 'static>(
    service: Service,
    routes: &HashMap<&'static str, Handler<S>>,
    state: S,
    client: async_nats::Client,
    msg: async_nats::Message,
) {
    let verb = msg.subject.rsplit('.').next().unwrap_or_default().to_owned();
    let span = tracing::info_span!("command", service = service.name(), verb = %verb);
    trace::continue_from(msg.headers.as_ref(), &span);
    let started = std::time::Instant::now();
    let (reply, outcome) = match routes.get(verb.as_str()) {
        Some(handler) => {
            // A panic becomes an error reply, not silence (caught here rather than by
            // running the handler in a task of its own: one task per command).
            let fut = std::panic::AssertUnwindSafe(handler(state, msg.payload.clone()).instrument(span.clone()));
            match futures_util::FutureExt::catch_unwind(fut).await {
                Ok(reply) => {
                    let outcome = if reply.starts_with(br#"{"ok":true"#) { "ok" } else { "error" };
                    (reply, outcome)
                }
                Err(_) => {
                    tracing::error!(parent: &span, "command handler panicked");
                    (envelope::err(&ApiError::internal()), "panic")
                }
            }
        }
        None => (
            envelope::err(&ApiError::new(
                chat_domain::ErrorCode::ValidationError,
                format!("{} has no command {verb:?}", service.name()),
            )),
            "unknown",
        ),
    };
    let verb_label = if outcome == "unknown" { "unknown" } else { verb.as_str() };
    COMMANDS.with_label_values(&[service.name(), verb_label, outcome]).inc();
    LATENCY.with_label_values(&[service.name(), verb_label]).observe(started.elapsed().as_secs_f64());
    match msg.reply {
        Some(to) => {
            if let Err(e) = client.publish(to, reply).await {
                tracing::warn!(parent: &span, error = %e, "could not send a reply");
            }
        }
        None => tracing::warn!(parent: &span, "command without a reply subject"),
    }
}
