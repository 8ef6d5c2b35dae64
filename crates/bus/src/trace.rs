//! Trace context in NATS headers (W3C `traceparent`/`tracestate`), so a trace started
//! at the gateway continues in the service that answers.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes the current span's trace context into `headers` (nothing when no trace is active).
pub fn inject(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Writes `span`'s trace context into `headers`: for work done outside the span's own
/// task on its behalf (message-store publishes a batch's messages from its writer
/// task, each with the context of the command that sent it).
pub fn inject_from(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace context carried in `headers`, if any.
pub fn continue_from(headers: Option<&HeaderMap>, span: &tracing::Span) {
    if let Some(h) = headers {
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(h));
        let _ = span.set_parent(cx);
    }
}

/// The trace id of the current span as 32 hex digits, when a trace is active.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Makes `span` a child of a W3C `traceparent` (and optional `tracestate`) received
/// from outside the bus, such as an HTTP request's headers.
pub fn continue_from_w3c(traceparent: Option<&str>, tracestate: Option<&str>, span: &tracing::Span) {
    let Some(tp) = traceparent else { return };
    let mut headers = HeaderMap::new();
    headers.insert(TRACEPARENT, tp);
    if let Some(ts) = tracestate {
        headers.insert("tracestate", ts);
    }
    continue_from(Some(&headers), span);
}
