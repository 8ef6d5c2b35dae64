//! `rest-chat.md`'s Socket.IO endpoint driven by the stock `socket.io-client` v4 from
//! npm, in Node (`tests/socketio-client/client.js`, which prints one JSON line per
//! thing it sees): the default transports (long-polling, then the upgrade to
//! WebSocket) and WebSocket only; joins refused to non-participants; every server event
//! from REST actions and from the other dialects; typing across two gateways; a bad
//! token refused with a reason; a client that keeps receiving after its gateway
//! restarts. Also the Engine.IO refusals, spoken by hand. Needs Node.js and
//! `npm ci` in tests/socketio-client (run here through `scripts/ensure-deps.sh
//! socketio-client`), and the machine's PostgreSQL, Redis and NATS.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, anyhow, bail, ensure};
use chat_test_support::{Response, TestStack, TestTenant, WsClient, bounded};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("socketio-client")
}

/// Installs socket.io-client once per test process (the script is idempotent and
/// takes a lock, so parallel test processes do not run `npm ci` at the same time).
fn ensure_client() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let lock = client_dir().join(".install.lock");
        let status = Command::new("flock")
            .arg(&lock)
            .arg(root.join("scripts/ensure-deps.sh"))
            .arg("socketio-client")
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("running scripts/ensure-deps.sh socketio-client: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("scripts/ensure-deps.sh socketio-client: {status}")) }
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// One `socket.io-client` in a Node process.
pub(crate) struct Node {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Everything read so far, in order.
    pub(crate) seen: Vec<Value>,
    next_id: u64,
}

impl Node {
    /// Starts a client with `options` (see client.js: url, auth, query, transports,
    /// rejoin).
    pub(crate) fn start(options: Value) -> anyhow::Result<Self> {
        ensure_client()?;
        let mut child = Command::new("node")
            .arg(client_dir().join("client.js"))
            .arg(options.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node (is Node.js installed?)")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line).unwrap_or_else(|_| json!({"type": "raw", "line": line}));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, stdin, lines, seen: Vec::new(), next_id: 1 })
    }

    /// The next line that `pred` accepts (earlier ones are kept in `seen`).
    pub(crate) async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        bounded(what, async {
            loop {
                let line = self.lines.recv().await.ok_or_else(|| anyhow!("node exited; saw {:?}", self.seen))?;
                self.seen.push(line.clone());
                if pred(&line) {
                    return Ok(line);
                }
            }
        })
        .await?
    }

    /// The next server event named `event` whose payload `pred` accepts; its payload.
    pub(crate) async fn event(&mut self, event: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let line = self.until(event, |l| l["type"] == "event" && l["event"] == event && pred(&l["data"])).await?;
        Ok(line["data"].clone())
    }

    fn write(&mut self, cmd: &Value) -> anyhow::Result<()> {
        writeln!(self.stdin, "{cmd}")?;
        Ok(self.stdin.flush()?)
    }

    /// Emits `event` with `args` and waits for the server's ack.
    pub(crate) async fn call(&mut self, event: &str, args: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.write(&json!({"op": "emit", "id": id, "event": event, "args": args, "ack": true}))?;
        let line = self.until(event, |l| l["type"] == "ack" && l["id"] == id).await?;
        Ok(line["response"].clone())
    }

    /// Emits `event` without asking for an ack.
    pub(crate) async fn emit(&mut self, event: &str, args: Value) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        self.write(&json!({"op": "emit", "id": id, "event": event, "args": args, "ack": false}))?;
        self.until(event, |l| l["type"] == "sent" && l["id"] == id).await.map(drop)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn token(t: &TestTenant, user: &str) -> anyhow::Result<String> {
    let res = t.user(user).post("/tokens", json!({})).await?.expect(StatusCode::CREATED)?;
    Ok(res.str("token")?.to_owned())
}

/// A tenant whose rate limit no test here reaches.
async fn tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": chat_test_support::unique("sio-"), "rate_limit_per_sec": 100_000})).await
}

pub(crate) async fn connected(node: &mut Node) -> anyhow::Result<Value> {
    node.until("connect", |l| l["type"] == "connect" || l["type"] == "connect_error").await.and_then(|l| {
        ensure!(l["type"] == "connect", "refused: {l}");
        Ok(l)
    })
}

async fn request(t: &TestTenant, user: &str, method: Method, path: &str, body: Value) -> anyhow::Result<Response> {
    Response::from(t.user(user).request(method, path).json(&body).send().await?).await
}

#[tokio::test(flavor = "multi_thread")]
async fn default_transports_upgrade_and_every_event_arrives() -> anyhow::Result<()> {
    // Pings ten minutes apart: nothing here may wait for one to move (a polling read
    // that missed the upgrade used to end only with the next ping).
    let stack = TestStack::builder().gateway_config(slow_pings).start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice", "carol"]).await?;
    let mut alice = Node::start(json!({"url": stack.base_url(0), "auth": {"token": token(&t, "alice").await?}}))?;
    let open = alice.until("the Engine.IO session", |l| l["type"] == "open").await?;
    assert_eq!(open["transport"], "polling", "socket.io-client starts with long-polling");
    connected(&mut alice).await?;
    // The upgrade may come before or after the namespace connects.
    let upgrade = match alice.seen.iter().find(|l| l["type"] == "upgrade") {
        Some(seen) => seen.clone(),
        None => alice.until("the upgrade to WebSocket", |l| l["type"] == "upgrade").await?,
    };
    assert_eq!(upgrade["transport"], "websocket");
    assert_eq!(alice.call("join-chat-room", json!([room])).await?, json!({"ok": true}));

    // REST actions of rest-chat.md (`/api/chat`), acting as bob.
    let bob = t.user("bob");
    let api = |path: &str| format!("/api/chat/{room}{path}");
    let sent = request(&t, "bob", Method::POST, &api("/messages"), json!({"content": "hello alice"})).await?;
    let sent = sent.expect(StatusCode::CREATED)?.body["data"]["message"].clone();
    let id = sent["_id"].as_str().ok_or_else(|| anyhow!("no _id in {sent}"))?.to_owned();
    let m = alice.event("new-message", |m| m["_id"] == id.as_str()).await?;
    assert_eq!(m, sent, "new-message carries the message exactly as the REST response does");
    assert_eq!((m["chatId"].as_str(), m["sender"].as_str()), (Some(room.as_str()), Some("bob")));
    assert_eq!(
        (m["content"].as_str(), m["type"].as_str(), m["seq"].as_i64()),
        (Some("hello alice"), Some("text"), Some(1))
    );
    let path = api(&format!("/messages/{id}"));
    let res =
        request(&t, "bob", Method::PUT, &path, json!({"content": "hello again"})).await?.expect(StatusCode::OK)?;
    let edited = alice.event("message-edited", |m| m["_id"] == id.as_str()).await?;
    assert_eq!(edited, res.body["data"]["message"], "message-edited carries the edited message");
    assert_eq!(edited["content"], "hello again");
    ensure!(edited["editedAt"].is_string(), "{edited}");
    let res = request(&t, "bob", Method::DELETE, &path, json!({})).await?.expect(StatusCode::OK)?;
    let deleted = alice.event("message-deleted", |m| m["_id"] == id.as_str()).await?;
    assert_eq!(deleted, res.body["data"]["message"], "message-deleted carries the deleted message");
    ensure!(deleted["deletedAt"].is_string() && deleted["content"] == "", "{deleted}");
    // rest-rooms.md's REST API is another way in.
    bob.send(&room, "read me").await?;
    alice.event("new-message", |m| m["content"] == "read me").await?;
    request(&t, "carol", Method::PATCH, &api("/messages/read"), json!({})).await?.expect(StatusCode::OK)?;
    let read = alice.event("messages-read", |r| r["userId"] == "carol").await?;
    assert_eq!((read["chatId"].as_str(), read["seq"].as_i64()), (Some(room.as_str()), Some(2)));
    // Participants are added from the tenant's user directory.
    request(&t, "bob", Method::PUT, "/users/dave", json!({"name": "Dave"})).await?.expect(StatusCode::CREATED)?;
    request(&t, "bob", Method::POST, &api("/participants"), json!({"userId": "dave"}))
        .await?
        .expect(StatusCode::CREATED)?;
    let added = alice.event("participants-added", |_| true).await?;
    assert_eq!(added, json!({"chatId": room, "participants": ["dave"]}));
    request(&t, "bob", Method::DELETE, &api("/participants/dave"), json!({})).await?.expect(StatusCode::OK)?;
    let removed = alice.event("participant-removed", |_| true).await?;
    assert_eq!((removed["chatId"].as_str(), removed["participantId"].as_str()), (Some(room.as_str()), Some("dave")));
    // A removed participant who is connected hears it too, and is out of the chat.
    request(&t, "bob", Method::PUT, "/users/carol", json!({"name": "Carol"})).await?;
    let mut carol = Node::start(json!({"url": stack.base_url(0), "auth": {"token": token(&t, "carol").await?}}))?;
    connected(&mut carol).await?;
    assert_eq!(carol.call("join-chat-room", json!([room])).await?, json!({"ok": true}));
    request(&t, "bob", Method::DELETE, &api("/participants/carol"), json!({})).await?.expect(StatusCode::OK)?;
    let gone = carol.event("participant-removed", |_| true).await?;
    assert_eq!(gone, json!({"chatId": room, "participantId": "carol"}));
    let refused = carol.call("typing-start", json!([room])).await?;
    assert_eq!(refused["code"], "FORBIDDEN", "the chat was left: {refused}");
    assert_eq!(carol.call("join-chat-room", json!([room])).await?["code"], "FORBIDDEN");
    drop(carol);

    // The same events from rest-rooms.md's REST API.
    let m = bob.send(&room, "via /rooms").await?;
    let id = m["message_id"].as_str().ok_or_else(|| anyhow!("no message_id"))?.to_owned();
    alice.event("new-message", |m| m["_id"] == id.as_str()).await?;
    let path = format!("/rooms/{room}/messages/{id}");
    request(&t, "bob", Method::PATCH, &path, json!({"content": "edited via /rooms"})).await?.expect(StatusCode::OK)?;
    let edited = alice.event("message-edited", |m| m["_id"] == id.as_str()).await?;
    assert_eq!((edited["content"].as_str(), edited["sender"].as_str()), (Some("edited via /rooms"), Some("bob")));
    request(&t, "bob", Method::DELETE, &path, json!({})).await?.expect(StatusCode::OK)?;
    alice.event("message-deleted", |m| m["_id"] == id.as_str() && m["deletedAt"].is_string()).await?;
    bob.post(&format!("/rooms/{room}/members"), json!({"user_id": "erin"})).await?.expect(StatusCode::CREATED)?;
    alice.event("participants-added", |e| e["participants"] == json!(["erin"])).await?;
    bob.delete(&format!("/rooms/{room}/members/erin")).await?.expect(StatusCode::OK)?;
    alice.event("participant-removed", |e| e["participantId"] == "erin").await?;

    // Another dialect: bob on /ws sends and types; alice's typing reaches him there.
    let ws_url = format!("{}/ws/{room}?token={}&user_id=bob", stack.ws_url(0), t.api_key);
    let mut bob_ws = WsClient::connect(&ws_url).await?;
    bob_ws.expect("connection_status").await?;
    bob_ws.send(json!({"type": "send_message", "data": {"content": "from the websocket"}})).await?;
    let m = alice.event("new-message", |m| m["content"] == "from the websocket").await?;
    assert_eq!(m["sender"], "bob");
    bob_ws.send(json!({"type": "typing", "data": {"is_typing": true}})).await?;
    let typing = alice.event("user-typing", |e| e["userId"] == "bob").await?;
    assert_eq!(typing, json!({"chatId": room, "userId": "bob", "isTyping": true}));
    alice.emit("typing-start", json!([room])).await?;
    let seen = bob_ws.expect_where("typing", |f| f["data"]["user_id"] == "alice").await?;
    assert_eq!(seen["data"]["is_typing"], true);
    alice.emit("typing-stop", json!([{"chatId": room}])).await?;
    bob_ws.expect_where("typing", |f| f["data"]["user_id"] == "alice" && f["data"]["is_typing"] == false).await?;

    // Leaving: nothing more from the chat until joined again (a message stored while
    // away is never pushed: a join starts after the chat's newest message).
    assert_eq!(alice.call("leave-chat-room", json!([room])).await?, json!({"ok": true}));
    let after = alice.call("typing-start", json!([room])).await?;
    assert_eq!(after["ok"], false, "typing needs the chat joined: {after}");
    bob.send(&room, "after leaving").await?;
    assert_eq!(alice.call("join-chat-room", json!([room])).await?, json!({"ok": true}));
    bob.send(&room, "marker").await?;
    alice.event("new-message", |m| m["content"] == "marker").await?;
    ensure!(alice.seen.iter().all(|l| l["data"]["content"] != "after leaving"), "a message after leaving arrived");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_only_joins_participants_only_and_refuses_bad_tokens() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice"]).await?;
    let other = t.user("bob").create_room("group", &["carol"]).await?;
    let mut alice = Node::start(json!({
        "url": stack.base_url(0),
        "transports": ["websocket"],
        "query": {"token": token(&t, "alice").await?},
    }))?;
    let hello = connected(&mut alice).await?;
    assert_eq!(hello["transport"], "websocket");
    let refused = alice.call("join-chat-room", json!([other])).await?;
    assert_eq!((refused["ok"].as_bool(), refused["code"].as_str()), (Some(false), Some("FORBIDDEN")), "{refused}");
    ensure!(refused["error"].is_string(), "{refused}");
    let missing = alice.call("join-chat-room", json!(["room_doesnotexist"])).await?;
    assert_eq!(missing["code"], "NOT_FOUND", "{missing}");
    let bad = alice.call("join-chat-room", json!([{"nope": 1}])).await?;
    assert_eq!(bad["code"], "VALIDATION_ERROR", "{bad}");
    let unknown = alice.call("no-such-event", json!([])).await?;
    assert_eq!(unknown["ok"], false);
    // Still connected and working after all that.
    assert_eq!(alice.call("join-chat-room", json!([{"chatId": room}])).await?, json!({"ok": true}));
    // A join counts as being online in the chat (presence), as a socket of any dialect.
    let online = t.user("bob").get(&format!("/api/v1/rooms/{room}/online")).await?.expect(StatusCode::OK)?;
    ensure!(online.body["data"]["online_users"].as_array().is_some_and(|u| u.contains(&json!("alice"))), "{online:?}");
    t.user("bob").send(&other, "not for alice").await?;
    t.user("bob").send(&room, "for alice").await?;
    alice.event("new-message", |m| m["content"] == "for alice").await?;
    ensure!(alice.seen.iter().all(|l| l["data"]["content"] != "not for alice"), "another chat's message arrived");

    for transports in [json!(["websocket"]), json!(["polling", "websocket"])] {
        let mut mallory =
            Node::start(json!({"url": stack.base_url(0), "transports": transports, "auth": {"token": "not-a-token"}}))?;
        let err = mallory.until("connect_error", |l| l["type"] == "connect_error" || l["type"] == "connect").await?;
        assert_eq!(err["type"], "connect_error", "{err}");
        let message = err["message"].as_str().unwrap_or_default();
        ensure!(!message.is_empty() && message != "xhr poll error" && message != "websocket error", "{err}");
    }
    let mut nobody = Node::start(json!({"url": stack.base_url(0)}))?;
    let err = nobody.until("connect_error", |l| l["type"] == "connect_error" || l["type"] == "connect").await?;
    assert_eq!(err, json!({"type": "connect_error", "message": "token is required"}));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn typing_crosses_gateways() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let mut alice = Node::start(json!({"url": stack.base_url(0), "auth": {"token": token(&t, "alice").await?}}))?;
    let mut bob = Node::start(json!({
        "url": stack.base_url(1), "transports": ["websocket"], "auth": {"token": token(&t, "bob").await?},
    }))?;
    connected(&mut alice).await?;
    connected(&mut bob).await?;
    assert_eq!(alice.call("join-chat-room", json!([room])).await?, json!({"ok": true}));
    assert_eq!(bob.call("join-chat-room", json!([room])).await?, json!({"ok": true}));
    alice.emit("typing-start", json!([room])).await?;
    let on = bob.event("user-typing", |e| e["userId"] == "alice").await?;
    assert_eq!(on, json!({"chatId": room, "userId": "alice", "isTyping": true}));
    alice.emit("typing-stop", json!([room])).await?;
    bob.event("user-typing", |e| e["userId"] == "alice" && e["isTyping"] == false).await?;
    bob.emit("typing-start", json!([room])).await?;
    alice.event("user-typing", |e| e["userId"] == "bob" && e["isTyping"] == true).await?;
    // Nobody sees their own typing.
    ensure!(alice.seen.iter().all(|l| l["data"]["userId"] != "alice"), "alice saw her own typing");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_keeps_receiving_after_its_gateway_restarts() -> anyhow::Result<()> {
    let mut stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice"]).await?;
    let mut alice = Node::start(json!({
        "url": stack.base_url(0), "auth": {"token": token(&t, "alice").await?}, "rejoin": [room],
    }))?;
    connected(&mut alice).await?;
    alice.until("the join", |l| l["type"] == "joined").await?;
    t.user("bob").send(&room, "before").await?;
    alice.event("new-message", |m| m["content"] == "before").await?;

    stack.restart_gateway(0).await?;
    let gone = alice.until("disconnect", |l| l["type"] == "disconnect").await?;
    ensure!(gone["reason"] != "io server disconnect", "the client must reconnect by itself: {gone}");
    // Attempts while the gateway is down fail (`xhr poll error`); one then succeeds.
    alice.until("the reconnect", |l| l["type"] == "connect").await?;
    let joined = alice.until("the join again", |l| l["type"] == "joined").await?;
    assert_eq!(joined["response"], json!({"ok": true}));
    t.user("bob").send(&room, "after").await?;
    alice.event("new-message", |m| m["content"] == "after").await?;
    stack.stop().await
}

/// Engine.IO spoken by hand: what the stock client never sends.
#[tokio::test(flavor = "multi_thread")]
async fn engine_io_refuses_what_it_cannot_read() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let http = &stack.http;
    let base = format!("{}/socket.io/", stack.base_url(0));
    let get = |query: &'static str| http.get(format!("{base}?{query}")).send();
    let refusal = |res: reqwest::Response| async move {
        let status = res.status();
        let body: Value = res.json().await?;
        anyhow::Ok((status.as_u16(), body["code"].as_i64().unwrap_or(-1)))
    };
    assert_eq!(refusal(get("EIO=3&transport=polling").await?).await?, (400, 5));
    assert_eq!(refusal(get("EIO=4&transport=carrier-pigeon").await?).await?, (400, 0));
    assert_eq!(refusal(get("EIO=4&transport=polling&sid=nope").await?).await?, (400, 1));
    assert_eq!(refusal(get("EIO=4&transport=websocket").await?).await?, (400, 3), "not a WebSocket handshake");

    // Only the namespace `/` exists.
    let (sid, _) = handshake(&stack).await?;
    write(&stack, &sid, &["40/admin,"]).await?;
    let answer = poll(&stack, &sid).await?.unwrap_or_default();
    assert_eq!(answer, vec![r#"44/admin,{"message":"Invalid namespace"}"#.to_owned()]);

    // A handshake, then garbage: the session is closed, never a panic or a 500.
    for garbage in
        [&b"\xff\xfe\x1e\x00"[..], b"4", b"42[", b"9", b"451-[\"x\",{\"_placeholder\":true,\"num\":0}]", b"b!!"]
    {
        let open = get("EIO=4&transport=polling").await?.text().await?;
        let handshake: Value = serde_json::from_str(open.strip_prefix('0').unwrap_or_default())?;
        let sid = handshake["sid"].as_str().ok_or_else(|| anyhow!("no sid in {open}"))?.to_owned();
        assert_eq!(handshake["upgrades"], json!(["websocket"]));
        let post = http.post(format!("{base}?EIO=4&transport=polling&sid={sid}")).body(garbage.to_vec()).send().await?;
        ensure!(post.status() != StatusCode::INTERNAL_SERVER_ERROR, "{garbage:?}: {}", post.status());
        // The session ends: its next read says close, or it is already gone.
        let url = format!("{base}?EIO=4&transport=polling&sid={sid}");
        let read = http.get(&url).send().await?;
        match read.status() {
            StatusCode::OK => {
                let body = read.text().await?;
                ensure!(body.split('\u{1e}').any(|p| p == "1"), "{garbage:?}: the session went on: {body:?}");
            }
            StatusCode::BAD_REQUEST => {}
            other => bail!("{garbage:?}: {other}"),
        }
    }
    stack.stop().await
}

/// Engine.IO pings far apart.
fn slow_pings(cfg: &mut gateway::Config) {
    cfg.socketio.ping_interval = std::time::Duration::from_secs(600);
    cfg.socketio.ping_timeout = std::time::Duration::from_secs(600);
}

/// Short Engine.IO pings, so that a test sees several (the handshake announces them).
fn quick_pings(cfg: &mut gateway::Config) {
    cfg.socketio.ping_interval = std::time::Duration::from_millis(200);
    cfg.socketio.ping_timeout = std::time::Duration::from_millis(1500);
}

/// Each joined chat's queue holds 2 events.
fn tiny_queues(cfg: &mut gateway::Config) {
    cfg.ws.queue = 2;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_bounded_per_gateway() -> anyhow::Result<()> {
    // Sessions are anonymous until their namespace connects: one client address may
    // hold `SOCKETIO_ANON_PER_ADDRESS` of them (authenticated ones are bounded apart,
    // see socket_security.rs).
    let stack = TestStack::builder().gateway_config(|c| c.socketio.anon_per_address = 1).start().await?;
    let (sid, _) = handshake(&stack).await?;
    let url = format!("{}/socket.io/?EIO=4&transport=polling", stack.base_url(0));
    let res = stack.http.get(&url).send().await?;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "a second anonymous session of one address");
    // The session that ends makes room.
    write(&stack, &sid, &["1"]).await?;
    chat_test_support::eventually("room for a session", || async {
        Ok(stack.http.get(&url).send().await?.status() == StatusCode::OK)
    })
    .await?;
    stack.stop().await
}

/// A raw long-polling session: its sid, after the handshake.
async fn handshake(stack: &TestStack) -> anyhow::Result<(String, Value)> {
    let url = format!("{}/socket.io/?EIO=4&transport=polling", stack.base_url(0));
    let open = stack.http.get(url).send().await?.text().await?;
    let hello: Value =
        serde_json::from_str(open.strip_prefix('0').ok_or_else(|| anyhow!("not an open packet: {open}"))?)?;
    let sid = hello["sid"].as_str().ok_or_else(|| anyhow!("no sid in {open}"))?.to_owned();
    Ok((sid, hello))
}

/// One polling read: the packets, or `None` when the session is unknown.
async fn poll(stack: &TestStack, sid: &str) -> anyhow::Result<Option<Vec<String>>> {
    let url = format!("{}/socket.io/?EIO=4&transport=polling&sid={sid}", stack.base_url(0));
    let res = bounded("a polling read", stack.http.get(url).send()).await??;
    if res.status() == StatusCode::BAD_REQUEST {
        return Ok(None);
    }
    ensure!(res.status() == StatusCode::OK, "polling read: {}", res.status());
    Ok(Some(res.text().await?.split('\u{1e}').map(str::to_owned).collect()))
}

async fn write(stack: &TestStack, sid: &str, packets: &[&str]) -> anyhow::Result<()> {
    let url = format!("{}/socket.io/?EIO=4&transport=polling&sid={sid}", stack.base_url(0));
    let res = stack.http.post(url).body(packets.join("\u{1e}")).send().await?;
    ensure!(res.status() == StatusCode::OK, "polling write: {}", res.status());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pings_keep_sessions_alive_and_silence_ends_them() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateway_config(quick_pings).start().await?;
    let t = tenant(&stack).await?;
    // The stock client answers pings, over polling and then over WebSocket.
    let mut alice = Node::start(json!({"url": stack.base_url(0), "auth": {"token": token(&t, "alice").await?}}))?;
    connected(&mut alice).await?;
    for _ in 0..3 {
        alice.until("a ping over WebSocket", |l| l["type"] == "ping" && l["transport"] == "websocket").await?;
    }
    let mut polling = Node::start(json!({
        "url": stack.base_url(0), "transports": ["polling"], "auth": {"token": token(&t, "bob").await?},
    }))?;
    connected(&mut polling).await?;
    for _ in 0..3 {
        polling.until("a ping over polling", |l| l["type"] == "ping" && l["transport"] == "polling").await?;
    }
    ensure!(alice.seen.iter().chain(&polling.seen).all(|l| l["type"] != "disconnect"), "a client was disconnected");

    // A session that reads its pings but never answers them is closed.
    let (sid, hello) = handshake(&stack).await?;
    assert_eq!((hello["pingInterval"].as_i64(), hello["pingTimeout"].as_i64()), (Some(200), Some(1500)));
    let mut packets = Vec::new();
    while let Some(read) = poll(&stack, &sid).await? {
        packets.extend(read);
        if packets.last().is_some_and(|p| p == "1") {
            break;
        }
    }
    ensure!(packets.iter().any(|p| p == "2"), "no ping before the close: {packets:?}");
    ensure!(poll(&stack, &sid).await?.is_none(), "the session is gone");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_that_does_not_read_is_cut_off() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateway_config(tiny_queues).start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice"]).await?;
    let (sid, _) = handshake(&stack).await?;
    write(&stack, &sid, &[&format!("40{}", json!({"token": token(&t, "alice").await?}))]).await?;
    let connect = poll(&stack, &sid).await?.unwrap_or_default();
    ensure!(connect.iter().any(|p| p.starts_with("40{")), "{connect:?}");
    write(&stack, &sid, &[&format!("421{}", json!(["join-chat-room", room]))]).await?;
    let mut read = Vec::new();
    while !read.iter().any(|p: &String| p.starts_with("431")) {
        read.extend(poll(&stack, &sid).await?.unwrap_or_default());
    }
    ensure!(read.iter().any(|p| p == r#"431[{"ok":true}]"#), "{read:?}");
    // Alice stops reading (and answering pings); bob sends more than her queue holds.
    for i in 0..20 {
        t.user("bob").send(&room, &format!("flood {i}")).await?;
    }
    // The session is closed: a read gets what was queued and the close packet, or (once
    // it is gone) `Session ID unknown`.
    let mut after = Vec::new();
    while let Some(packets) = poll(&stack, &sid).await? {
        after.extend(packets);
        if after.last().is_some_and(|p| p == "1") {
            break;
        }
    }
    let delivered = after.iter().filter(|p| p.contains("new-message")).count();
    ensure!(delivered < 20, "all 20 messages were queued for a client that did not read");
    let metrics = stack
        .http
        .get(format!("{}/metrics", stack.base_url(0)))
        .header("X-API-Key", &stack.admin_key)
        .send()
        .await?
        .text()
        .await?;
    let kicks = metrics
        .lines()
        .find_map(|l| l.strip_prefix("chat_gateway_slow_consumer_closes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    ensure!(kicks.is_some_and(|k| k >= 1.0), "not closed as a slow consumer: {kicks:?}");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attachment_arrives_with_a_signed_link_that_opens() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateway_config(slow_pings).start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice"]).await?;
    let alice_token = token(&t, "alice").await?;
    let mut alice = Node::start(json!({"url": stack.base_url(0), "auth": {"token": alice_token}}))?;
    connected(&mut alice).await?;
    assert_eq!(alice.call("join-chat-room", json!([room])).await?, json!({"ok": true}));

    // bob uploads a PNG (its signature is what the gateway sniffs).
    let png: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    let boundary = chat_test_support::unique("b");
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dot.png\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(png);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let res = stack
        .http
        .post(format!("{}/api/chat/{room}/messages/file", stack.base_url(0)))
        .bearer_auth(token(&t, "bob").await?)
        .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await?;
    ensure!(res.status() == StatusCode::CREATED, "upload: {}", res.status());
    let sent: Value = res.json().await?;
    let id = sent["data"]["message"]["_id"].as_str().ok_or_else(|| anyhow!("no _id in {sent}"))?.to_owned();

    let m = alice.event("new-message", |m| m["_id"] == id.as_str()).await?;
    let file = &m["attachments"][0];
    assert_eq!((file["filename"].as_str(), file["mimeType"].as_str()), (Some("dot.png"), Some("image/png")));
    // The link is signed by this gateway's key: alice (a participant) opens it.
    let url = file["url"].as_str().ok_or_else(|| anyhow!("no url in {m}"))?;
    ensure!(url.contains(&format!("/api/chat/{room}/files/")), "{url}");
    let got = stack.http.get(format!("{}{url}", stack.base_url(0))).bearer_auth(&alice_token).send().await?;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("image/png"));
    assert_eq!(&got.bytes().await?[..], png);
    Ok(())
}
