//! One message, one trace: a send (REST, or a socket's `send_message`), message-store
//! storing it, and the gateway fanning it out to a socket are spans of a single
//! OpenTelemetry trace, exported
//! over OTLP/HTTP to a real receiver — an HTTP server here that decodes the protobuf
//! `ExportTraceServiceRequest`s the services send (`opentelemetry-proto`).
//!
//! Its own test binary: the tracer provider is installed once per process, and this
//! test needs it pointed at its receiver before anything else starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_test_support::{TestStack, WsClient};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    name: String,
    attributes: HashMap<String, String>,
}

/// An OTLP/HTTP trace receiver on 127.0.0.1:0: `POST /v1/traces` with a protobuf body.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1/traces", listener.local_addr()?);
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let (log, bell) = (spans.clone(), arrived.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, log.clone(), bell.clone()));
            }
        });
        Ok(Self { url, spans, arrived, task })
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Answers the requests of one connection (the exporter keeps it alive).
async fn serve(mut sock: tokio::net::TcpStream, log: Arc<Mutex<Vec<Received>>>, arrived: Arc<Notify>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // The head, then Content-Length bytes of body.
        let (head_end, len, path) = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let len = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                break (i + 4, len, path);
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        while buf.len() < head_end + len {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
        let status = match ExportTraceServiceRequest::decode(body.as_slice()) {
            Ok(req) if path == "/v1/traces" => {
                if let Ok(mut log) = log.lock() {
                    log.extend(spans_of(req));
                }
                arrived.notify_waiters();
                "200 OK"
            }
            _ => "400 Bad Request",
        };
        // An empty ExportTraceServiceResponse is zero bytes of protobuf.
        let reply = format!("HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
        if sock.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn spans_of(req: ExportTraceServiceRequest) -> Vec<Received> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            for s in ss.spans {
                let attributes = s
                    .attributes
                    .into_iter()
                    .filter_map(|kv| {
                        let value = match kv.value?.value? {
                            any_value::Value::StringValue(v) => v,
                            any_value::Value::IntValue(v) => v.to_string(),
                            any_value::Value::BoolValue(v) => v.to_string(),
                            other => format!("{other:?}"),
                        };
                        Some((kv.key, value))
                    })
                    .collect();
                out.push(Received {
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent_span_id: hex::encode(&s.parent_span_id),
                    name: s.name,
                    attributes,
                });
            }
        }
    }
    out
}

/// The three hops of one send, once all have been exported.
struct Hops {
    request: Received,
    store: Received,
    fanout: Received,
}

/// The hops of the send whose first span `starts` picks.
fn find_hops(spans: &[Received], room: &str, starts: impl Fn(&Received) -> bool) -> Option<Hops> {
    let attr = |s: &Received, k: &str| s.attributes.get(k).cloned().unwrap_or_default();
    let request = spans.iter().find(|s| starts(s))?;
    let store = spans.iter().find(|s| {
        s.name == "command"
            && attr(s, "service") == "message-store"
            && attr(s, "verb") == "send_message"
            && s.trace_id == request.trace_id
    })?;
    let fanout = spans.iter().find(|s| {
        s.name == "fanout"
            && attr(s, "room") == room
            && attr(s, "kind") == "message.created"
            && s.trace_id == request.trace_id
    })?;
    Some(Hops { request: request.clone(), store: store.clone(), fanout: fanout.clone() })
}

/// Flushes until the three spans of a send are in (the fan-out span ends just after
/// the frame is queued for the socket); each round waits for the receiver, never a
/// fixed sleep.
async fn exported(receiver: &Receiver, room: &str, starts: impl Fn(&Received) -> bool) -> anyhow::Result<Hops> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let arrived = receiver.arrived.notified();
        tokio::task::spawn_blocking(chat_telemetry::force_flush).await??;
        if let Some(hops) = find_hops(&receiver.spans(), room, &starts) {
            return Ok(hops);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the send's spans were not all exported within 30 s; got {:#?}",
            receiver.spans().iter().map(|s| (&s.name, &s.attributes)).collect::<Vec<_>>()
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), arrived).await;
    }
}

/// The send's first span is a root, message-store's handling its child, the fan-out
/// the child of that: one trace.
fn check_chain(hops: &Hops, room: &str) {
    let Hops { request, store, fanout } = hops;
    assert_eq!(request.trace_id.len(), 32, "{request:?}");
    assert_eq!(request.parent_span_id, "", "the send starts the trace: {request:?}");
    assert_eq!(store.trace_id, request.trace_id);
    assert_eq!(store.parent_span_id, request.span_id, "message-store's handling is a child of the send");
    assert_eq!(fanout.trace_id, request.trace_id);
    assert_eq!(fanout.parent_span_id, store.span_id, "the fan-out is a child of message-store's handling");
    assert_eq!(fanout.attributes.get("room").map(String::as_str), Some(room));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_message_is_one_trace_from_send_to_fan_out() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    chat_telemetry::init_for_tests_exporting(&receiver.url)?;
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let mut bob = WsClient::connect(&format!("{}/ws/{room}?token={}&user_id=bob", stack.ws_url(0), t.api_key)).await?;
    bob.expect("connection_status").await?;

    // A REST send.
    let sent = t.user("alice").send(&room, "follow me").await?;
    let frame = bob.expect("message").await?;
    assert_eq!(frame["data"]["id"], sent["message_id"]);
    let rest = |s: &Received| {
        s.name == "http"
            && s.attributes.get("method").is_some_and(|m| m == "POST")
            && s.attributes.get("route").is_some_and(|r| r == "/rooms/{room_id}/messages")
    };
    let hops = exported(&receiver, &room, rest).await?;
    check_chain(&hops, &room);

    // A socket's send: its `ws_send` span starts the trace.
    bob.send(serde_json::json!({"type": "send_message", "data": {"content": "and me", "local_id": "l-1"}})).await?;
    let sent = bob.expect("message_sent").await?;
    assert_eq!(sent["data"]["local_id"], "l-1");
    let ws = |s: &Received| s.name == "ws_send" && s.attributes.get("room").is_some_and(|r| *r == room);
    let hops = exported(&receiver, &room, ws).await?;
    check_chain(&hops, &room);
    assert_eq!(hops.request.attributes.get("dialect").map(String::as_str), Some("ws-rooms"));

    bob.close().await?;
    stack.stop().await?;
    Ok(())
}
