//! Generated hostile input (proptest) against the real services, in-process: REST
//! requests to every route (bodies, query strings, headers, path ids), raw HTTP request
//! heads, WebSocket frames of both dialects (`/ws`, `/conversations`) as JSON and at the
//! frame level (opcodes, reserved bits, masking, fragments), and bus payloads for every
//! command of every service. Every answer must be documented: no `5xx`, no
//! `INTERNAL_ERROR`, errors in the `{"success":false,"error":...}` shape (WebSocket:
//! the dialect's error frame, or a documented close code), no dropped connection without
//! a close frame, no hang (every read is bounded), and the stack healthy at the end.
//!
//! `FUZZ_CASES` is the total number of cases across targets (10,000 by default, which
//! `make test` runs, seeded so it is the same every time); `FUZZ_SEED` picks another
//! seed. `make fuzz` runs 1,000,000 with a fresh seed. A failure prints the shrunk case
//! and the seed. Needs the machine's PostgreSQL, Redis and NATS.

mod cases;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chat_test_support::raw::{self, FIN, RawWs, op};
use chat_test_support::{TestStack, TestTenant};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use cases::{BusCase, FrameCase, HttpCase, RestCase, Seg, WsCase};

/// Cases in the seeded run of `make test`.
const DEFAULT_CASES: u64 = 10_000;
const DEFAULT_SEED: u64 = 0x5eed_c4a7;

/// The error codes of the documents.
const CODES: [&str; 11] = [
    "VALIDATION_ERROR",
    "AUTHENTICATION_ERROR",
    "FORBIDDEN",
    "NOT_FOUND",
    "CONFLICT",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "RATE_LIMIT_EXCEEDED",
    "REQUEST_TIMEOUT",
    "SERVICE_UNAVAILABLE",
    "INTERNAL_ERROR",
];

/// What every case runs against.
struct Target {
    stack: TestStack,
    /// The tenant REST and WebSocket cases act for.
    tenant: TestTenant,
    /// A tenant only the admin and bus cases touch (they may rotate its key).
    victim: TestTenant,
    /// A room of the victim tenant, for bus cases to reach past membership checks.
    victim_room: String,
    room: String,
    message_id: String,
    token: String,
    http: reqwest::Client,
    /// `(method, path template)` of every route REST cases pick from: [`cases::ROUTES`]
    /// and every operation of the gateway's `/openapi.json` ([`documented_routes`]), so a
    /// route added to the gateway is fuzzed without being listed here.
    routes: Vec<(String, String)>,
    /// A live socket per dialect, fed one hostile frame per case.
    ws: Mutex<Option<RawWs>>,
    conv: Mutex<Option<RawWs>>,
}

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// A documented error body, with a status that goes with its code.
fn check_error_body(status: u16, body: &Value) -> Result<(), TestCaseError> {
    // The rest-chat.md dialect's errors are flat: {success: false, message, code}.
    let error = if body.get("error").is_none() && body.get("code").is_some() { body } else { &body["error"] };
    let code = error["code"].as_str().unwrap_or_default();
    if body["success"] != false || !CODES.contains(&code) || !error["message"].is_string() {
        return Err(fail(format!("{status} without the documented error body: {body}")));
    }
    let expected = match code {
        "VALIDATION_ERROR" => &[400][..],
        "REQUEST_TIMEOUT" => &[408],
        "UNSUPPORTED_MEDIA_TYPE" => &[415],
        "AUTHENTICATION_ERROR" => &[401],
        "FORBIDDEN" => &[403],
        "NOT_FOUND" => &[404],
        "CONFLICT" => &[409],
        "PAYLOAD_TOO_LARGE" => &[413, 431],
        "RATE_LIMIT_EXCEEDED" => &[429],
        _ => &[],
    };
    if !expected.contains(&status) {
        return Err(fail(format!("status {status} with code {code}: {body}")));
    }
    Ok(())
}

/// A REST answer: never `5xx`; an error has the documented body.
fn check_http(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    if status >= 500 {
        return Err(fail(format!("{status}: {}", String::from_utf8_lossy(body))));
    }
    if status >= 400 {
        let v: Value = serde_json::from_slice(body)
            .map_err(|_| fail(format!("{status} with a body that is not JSON: {:?}", String::from_utf8_lossy(body))))?;
        check_error_body(status, &v)?;
    }
    Ok(())
}

/// A server frame of a dialect: JSON with a `type`; errors with a documented code that
/// is not the server's fault.
fn check_frame(frame: &Value) -> Result<(), TestCaseError> {
    let kind = frame["type"].as_str().ok_or_else(|| fail(format!("a frame without a type: {frame}")))?;
    let code = match kind {
        // `/ws`: {"type":"error","data":{"code","message"}}; `/conversations`: flat.
        "error" | "message.failed" => frame["data"]["code"].as_str().or_else(|| frame["code"].as_str()),
        _ => return Ok(()),
    };
    match code {
        Some(c) if CODES.contains(&c) && c != "INTERNAL_ERROR" && c != "SERVICE_UNAVAILABLE" => Ok(()),
        _ => Err(fail(format!("an error frame without a documented client error: {frame}"))),
    }
}

impl Target {
    fn path(&self, template: &str, segs: &[Seg]) -> String {
        let mut out = String::new();
        let mut segs = segs.iter();
        for part in template.split('/').skip(1) {
            out.push('/');
            let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
                out.push_str(part);
                continue;
            };
            match segs.next() {
                Some(Seg::Text(t)) => out.push_str(&cases::percent(t.as_bytes())),
                _ => out.push_str(match name {
                    "room_id" => &self.room,
                    "message_id" => &self.message_id,
                    "user_id" => "bob",
                    "topic" => "news",
                    "tenant_id" => &self.victim.id,
                    // The document's names for the same ids (`/api/chat/{id}`, `/conversations/{id}`).
                    "id" if template.starts_with("/api/chat/") || template.starts_with("/conversations/") => &self.room,
                    "participantId" | "userId" => "bob",
                    "messageId" => &self.message_id,
                    // 👍, percent-encoded.
                    "emoji" => "%F0%9F%91%8D",
                    _ => "dlv_none",
                }),
            }
        }
        out
    }

    async fn rest(&self, case: RestCase) -> Result<(), TestCaseError> {
        let (method, template) = &self.routes[case.route % self.routes.len()];
        let (method, template) = (method.as_str(), template.as_str());
        let mut url = format!("{}{}", self.stack.base_url(0), self.path(template, &case.segs));
        if !case.query.is_empty() {
            url.push('?');
            url.push_str(&case.query);
        }
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(fail)?;
        let mut req = self.http.request(method, &url);
        let key = match case.key {
            0 => Some(self.tenant.api_key.clone()),
            1 => Some(self.stack.admin_key.clone()),
            2 => Some(self.token.clone()),
            3 => Some(case.key_text.clone()),
            _ => None,
        };
        if let Some(key) = key.and_then(|k| reqwest::header::HeaderValue::from_str(&k).ok()) {
            req = req.header("X-API-Key", key);
        }
        for (name, value) in &case.headers {
            if let Ok(value) = reqwest::header::HeaderValue::from_bytes(value) {
                req = req.header(*name, value);
            }
        }
        if let Some(body) = case.body.bytes() {
            req = req.header("Content-Type", "application/json").body(body);
        }
        let res = req.send().await.map_err(|e| fail(format!("{url}: no answer: {e}")))?;
        let status = res.status().as_u16();
        let body = res.bytes().await.map_err(|e| fail(format!("{url}: body: {e}")))?;
        check_http(status, &body).map_err(|e| fail(format!("{} {url}: {e}", template)))
    }

    async fn http(&self, case: HttpCase) -> Result<(), TestCaseError> {
        let request = case.bytes();
        let res = raw::raw_http(self.stack.gateway_ports[0], &request, None)
            .await
            .map_err(|e| fail(format!("no answer to {:?}: {e}", String::from_utf8_lossy(&request))))?;
        check_http(res.status, &res.body).map_err(|e| fail(format!("{:?}: {e}", String::from_utf8_lossy(&request))))
    }

    fn ws_url(&self, dialect: usize) -> String {
        let base = self.stack.ws_url(0);
        let (room, key) = (&self.room, &self.tenant.api_key);
        match dialect {
            0 => format!("{base}/ws/{room}?token={key}&user_id=alice"),
            _ => format!("{base}/conversations/{room}/?token={key}&user_id=alice"),
        }
    }

    /// One hostile frame on a dialect's live socket, then a frame every dialect answers:
    /// every frame in between is documented, and the socket is still there.
    async fn ws(&self, dialect: usize, case: WsCase) -> Result<(), TestCaseError> {
        let slot = if dialect == 0 { &self.ws } else { &self.conv };
        let mut slot = slot.lock().await;
        if slot.is_none() {
            *slot = Some(RawWs::connect(&self.ws_url(dialect)).await.map_err(fail)?);
        }
        let Some(ws) = slot.as_mut() else { return Err(fail("no socket")) };
        let (sync, answer) = if dialect == 0 {
            (json!({"type": "ping", "data": {}}), "pong")
        } else {
            (json!({"action": "fetch_messages", "limit": 1}), "messages_fetched")
        };
        match case.frame(dialect) {
            cases::Outgoing::Text(text) => ws.send_text(&text).await,
            cases::Outgoing::Binary(bytes) => ws.send_frame(FIN | op::BINARY, true, &bytes).await,
        }
        .map_err(fail)?;
        ws.send_text(&sync.to_string()).await.map_err(fail)?;
        loop {
            match ws.next_json().await.map_err(fail)? {
                Ok(frame) => {
                    check_frame(&frame).map_err(|e| fail(format!("{e} (after {case:?})")))?;
                    if frame["type"] == answer {
                        return Ok(());
                    }
                    // Every socket action spends from the user's budget (issue 25): a
                    // refused one (this sync, or the case) is asked again shortly, as a
                    // client would. A late extra answer only ends a later case's wait.
                    let code = frame.get("data").map_or(&frame["code"], |d| &d["code"]);
                    if frame["type"] == "error" && code == "RATE_LIMIT_EXCEEDED" {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        ws.send_text(&sync.to_string()).await.map_err(fail)?;
                    }
                }
                Err(end) => {
                    *slot = None;
                    return Err(fail(format!("the socket ended ({end:?}) after {case:?}")));
                }
            }
        }
    }

    /// Frames bit by bit on a fresh socket, then a ping: the socket answers it, or it
    /// was closed with a documented code.
    async fn frames(&self, case: FrameCase) -> Result<(), TestCaseError> {
        let mut ws = RawWs::connect(&self.ws_url(case.dialect)).await.map_err(fail)?;
        for f in &case.frames {
            ws.send_raw(&raw::frame_bytes(f.first, f.masked, &f.payload)).await.map_err(fail)?;
        }
        // The connection may already be closed for reading; the answer tells.
        let _ = ws.send_frame(FIN | op::PING, true, b"sync").await;
        loop {
            match ws.next_frame().await.map_err(fail)? {
                Some(raw::Frame { opcode: op::PONG, payload }) if payload == b"sync" => return Ok(()),
                Some(raw::Frame { opcode: op::TEXT, payload }) => {
                    let frame: Value = serde_json::from_slice(&payload).map_err(|e| fail(format!("not JSON: {e}")))?;
                    check_frame(&frame)?;
                }
                Some(raw::Frame { opcode: op::CLOSE, payload }) => {
                    let code = match payload[..] {
                        [hi, lo, ..] => u16::from_be_bytes([hi, lo]),
                        _ => 1005,
                    };
                    return if [1002, 1003, 1005, 1007, 1008, 1009].contains(&code) {
                        Ok(())
                    } else {
                        Err(fail(format!("closed with {code} after {case:?}")))
                    };
                }
                Some(_) => {}
                None => return Err(fail(format!("dropped without a close frame after {case:?}"))),
            }
        }
    }

    async fn bus(&self, case: BusCase) -> Result<(), TestCaseError> {
        let (service, verb) = cases::verb(case.verb);
        let subject = self.stack.bus.subjects().command(service, verb);
        let payload = case.payload(&self.victim.id, &self.victim_room);
        let reply = self
            .stack
            .bus
            .client()
            .request(subject, payload.clone().into())
            .await
            .map_err(|e| fail(format!("{verb}: no reply: {e}")))?;
        let reply: Value = serde_json::from_slice(&reply.payload).map_err(|e| fail(format!("{verb}: reply: {e}")))?;
        let ok = reply["ok"] == true && reply.get("data").is_some();
        let code = reply["error"]["code"].as_str().unwrap_or_default();
        let documented = reply["ok"] == false
            && CODES.contains(&code)
            && code != "INTERNAL_ERROR"
            && reply["error"]["message"].is_string();
        if ok || documented {
            Ok(())
        } else {
            Err(fail(format!("{verb} {:?}: {reply}", String::from_utf8_lossy(&payload))))
        }
    }
}

/// Runs `cases` of one target; the shrunk failure and the seed when one fails.
fn run<S>(
    target: &Arc<Target>,
    name: &str,
    cases: u64,
    seed: u64,
    strategy: S,
    test: impl Fn(Arc<Target>, S::Value) -> futures_util::future::LocalBoxFuture<'static, Result<(), TestCaseError>>,
) -> anyhow::Result<()>
where
    S: proptest::strategy::Strategy,
{
    if cases == 0 {
        return Ok(());
    }
    let config = Config {
        cases: u32::try_from(cases)?,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 256,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let handle = tokio::runtime::Handle::current();
    let started = Instant::now();
    let result = runner.run(&strategy, |value| handle.block_on(test(target.clone(), value)));
    eprintln!("fuzz {name}: {cases} cases in {:.1} s (seed {seed})", started.elapsed().as_secs_f64());
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(why, value)) => Err(anyhow!("fuzz {name} (seed {seed}) failed: {why}\n  case: {value:?}")),
        Err(TestError::Abort(why)) => Err(anyhow!("fuzz {name} (seed {seed}) aborted: {why}")),
    }
}

/// The routes REST cases are made for: [`cases::ROUTES`] (with their `{room_id}`-style
/// names) and every operation `/openapi.json` lists, but `/socket.io` (Engine.IO answers
/// its own `{"code": n}` errors; the Socket.IO tests and the contract test cover it).
async fn documented_routes(stack: &TestStack, http: &reqwest::Client) -> anyhow::Result<Vec<(String, String)>> {
    let doc: Value = http.get(stack.url("/openapi.json")).send().await?.json().await?;
    let mut routes: Vec<(String, String)> =
        cases::ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        if path.starts_with("/socket.io") {
            continue;
        }
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m.to_ascii_uppercase()) {
            if !routes.iter().any(|(m, p)| *m == method && p == path) {
                routes.push((method, path.clone()));
            }
        }
    }
    anyhow::ensure!(routes.len() > cases::ROUTES.len() + 40, "only {} routes from /openapi.json", routes.len());
    Ok(routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_documented_answers() -> anyhow::Result<()> {
    let total: u64 = std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_SEED);
    let stack = TestStack::start().await?;
    let tenant = stack.tenant_with(json!({"name": "fuzz", "rate_limit_per_sec": 1_000_000})).await?;
    let victim = stack.tenant_with(json!({"name": "fuzz victim", "rate_limit_per_sec": 1_000_000})).await?;
    let alice = tenant.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let message_id = alice.send(&room, "first").await?["message_id"].as_str().unwrap_or_default().to_owned();
    let token = alice.post("/tokens", json!({"user_id": "alice"})).await?.str("token")?.to_owned();
    let victim_room = victim.user("alice").create_room("group", &["bob"]).await?;
    victim.user("alice").send(&victim_room, "first").await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let routes = documented_routes(&stack, &http).await?;
    let target = Arc::new(Target {
        stack,
        tenant,
        victim,
        victim_room,
        room,
        message_id,
        token,
        http,
        routes,
        ws: Mutex::new(None),
        conv: Mutex::new(None),
    });

    // Shares of the total: REST 40%, WebSocket JSON 15% per dialect, frames 10%, bus
    // 15%, raw HTTP 5%.
    let share = |percent: u64| total * percent / 100;
    // proptest's runner is synchronous: it runs on this thread, taken out of the async
    // workers, and blocks on each case while the services run on the others.
    let t = target.clone();
    tokio::task::block_in_place(move || -> anyhow::Result<()> {
        run(&t, "rest", share(40), seed, cases::rest(), |t, c| Box::pin(async move { t.rest(c).await }))?;
        run(&t, "ws", share(15), seed ^ 1, cases::ws(), |t, c| Box::pin(async move { t.ws(0, c).await }))?;
        run(&t, "conversations", share(15), seed ^ 2, cases::ws(), |t, c| Box::pin(async move { t.ws(1, c).await }))?;
        run(&t, "frames", share(10), seed ^ 3, cases::frames(), |t, c| Box::pin(async move { t.frames(c).await }))?;
        run(&t, "bus", share(15), seed ^ 4, cases::bus(), |t, c| Box::pin(async move { t.bus(c).await }))?;
        run(&t, "http", share(5), seed ^ 5, cases::http(), |t, c| Box::pin(async move { t.http(c).await }))?;
        Ok(())
    })?;

    // Still healthy, and the room still reads.
    let alice = target.tenant.user("alice");
    alice.get("/health").await?.expect(reqwest::StatusCode::OK)?;
    alice.get(&format!("/rooms/{}/messages?limit=100", target.room)).await?.expect(reqwest::StatusCode::OK)?;
    // The frames target's sockets may still be closing (a close handshake the fuzz case
    // left unanswered): while they hold alice's places under the per-user cap, a new
    // socket is refused with the cap's 4004, as any client's would be. They are all given
    // back within the close handshake's timeout.
    let url = format!("{}&last_seq=0", target.ws_url(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ws = loop {
        let mut ws = RawWs::connect(&url).await?;
        match ws.next_json().await? {
            Ok(frame) if frame["type"] == "connection_status" => break ws,
            Err(chat_test_support::Ended::Closed(4004)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return Err(anyhow!("alice's socket after the fuzz cases: {other:?}")),
        }
    };
    ws.ping_pong().await?;
    match Arc::try_unwrap(target) {
        Ok(target) => target.stack.stop().await,
        Err(_) => Err(anyhow!("the fuzz target is still shared")),
    }
}
