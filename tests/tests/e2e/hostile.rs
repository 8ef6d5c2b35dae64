//! Hostile input gets a documented error and disturbs nothing: JSON nested too deep is
//! refused on every path that takes JSON (REST bodies, frames of every WebSocket
//! dialect, message-store's commands) and whatever is accepted reads back on every path;
//! fragmented WebSocket messages are reassembled; protocol violations close with their
//! RFC 6455 codes; ids with control bytes, malformed HTTP and non-WebSocket requests to
//! WebSocket paths get the `{"success":false,"error":...}` body; credentials get the
//! status they earn. Needs the machine's PostgreSQL, Redis and NATS.

use chat_domain::proto::Service;
use chat_test_support::raw::{FIN, RawWs, frame_bytes, op, raw_http, raw_http_all};
use chat_test_support::{Ended, TestStack, TestTenant, WsClient, bounded, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn busy_tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": "hostile", "rate_limit_per_sec": 100_000})).await
}

/// `levels` objects, one inside the other: `{"a":{"a":...1...}}`.
fn nested(levels: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels))
}

fn rooms_ws(stack: &TestStack, room: &str, t: &TestTenant, user: &str, extra: &str) -> String {
    format!("{}/ws/{room}?token={}&user_id={user}{extra}", stack.ws_url(0), t.api_key)
}

fn conv_ws(stack: &TestStack, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/conversations/{room}/?token={}&user_id={user}", stack.ws_url(0), t.api_key)
}

/// A conversations socket once its session answers (so room events reach it).
async fn conv_open(url: &str) -> anyhow::Result<WsClient> {
    let mut c = WsClient::connect(url).await?;
    c.send(json!({"action": "fetch_messages", "limit": 1})).await?;
    c.expect("messages_fetched").await?;
    Ok(c)
}

fn seqs(page: &Value) -> Vec<i64> {
    page.as_array().into_iter().flatten().filter_map(|m| m["seq"].as_i64()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_nested_too_deep_never_breaks_a_room() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let path = format!("/rooms/{room}/messages");
    // Sockets of both dialects that see everything live.
    let mut live = WsClient::connect(&rooms_ws(&stack, &room, &t, "bob", "")).await?;
    live.expect("connection_status").await?;
    let mut conv = conv_open(&conv_ws(&stack, &room, &t, "bob")).await?;

    // The body of the issue: `meta` 126 objects deep. Refused, nothing stored.
    let deep = format!(r#"{{"content":"deep","meta":{}}}"#, nested(126));
    alice.post_raw(&path, deep).await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("body"))?;
    // 33 levels in all is one too many; 32 is the most.
    let over = format!(r#"{{"content":"over","meta":{}}}"#, nested(32));
    alice.post_raw(&path, over).await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("body"))?;
    let deepest = format!(r#"{{"content":"deepest allowed","meta":{}}}"#, nested(31));
    let first = alice.post_raw(&path, deepest).await?.expect(StatusCode::CREATED)?;
    assert_eq!(first.body["seq"], 1);
    let meta_31: Value = serde_json::from_str(&nested(31))?;
    assert_eq!(first.body["meta"], meta_31);
    // The document's REST helper, likewise.
    let api = format!(
        r#"{{"sender_id":"alice","sender_name":"A","content":"x","message_type":"text","meta":{}}}"#,
        nested(126)
    );
    alice.post_raw(&format!("/api/v1/rooms/{room}/messages"), api).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("body"),
    )?;

    // Over `/ws`: an error frame, the socket goes on.
    let mut ws = WsClient::connect(&rooms_ws(&stack, &room, &t, "alice", "")).await?;
    ws.expect("connection_status").await?;
    ws.send_text(format!(
        r#"{{"type":"send_message","data":{{"content":"x","local_id":"d1","meta":{}}}}}"#,
        nested(126)
    ))
    .await?;
    let refused = ws.expect("error").await?;
    assert_eq!(refused["data"]["code"], "VALIDATION_ERROR");
    assert!(refused["data"]["message"].as_str().is_some_and(|m| m.contains("32 levels")), "{refused}");
    // {"type","data":{"meta":...}}: 29 levels of meta make 31 in all.
    ws.send_text(format!(
        r#"{{"type":"send_message","data":{{"content":"ok","local_id":"d2","meta":{}}}}}"#,
        nested(29)
    ))
    .await?;
    let sent = ws.expect("message_sent").await?;
    assert_eq!(sent["data"]["seq"], 2);
    // Over `/conversations`: an error frame, the socket goes on.
    conv.send_text(format!(r#"{{"action":"send_message","content":"x","local_id":"d3","x":{}}}"#, nested(126))).await?;
    let refused = conv.expect("error").await?;
    assert_eq!(refused["code"], "VALIDATION_ERROR");
    assert_eq!(refused["field"], "frame");

    // Straight to message-store over the bus: refused there too.
    let subject = stack.bus.subjects().command(Service::MessageStore, "send_message");
    for (levels, field) in [(33, "meta"), (126, "body")] {
        let cmd = format!(
            r#"{{"actor":{{"tenant_id":"{}","user_id":"alice"}},"room_id":"{room}","content":"bus","sender_name":null,"meta":{},"client_msg_id":null}}"#,
            t.id,
            nested(levels)
        );
        let reply = bounded("send_message", stack.bus.client().request(subject.clone(), cmd.into())).await??;
        let reply: Value = serde_json::from_slice(&reply.payload)?;
        assert_eq!(reply["ok"], false, "{levels} levels: {reply}");
        assert_eq!(reply["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(reply["error"]["field"], field);
    }

    // Everything accepted reads back on every path.
    let page = alice.get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(seqs(&page.body), vec![1, 2]);
    assert_eq!(page.body[0]["meta"], meta_31);
    let api = alice.get(&format!("/api/v1/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
    assert_eq!(seqs(&api.body["data"]["messages"]), vec![1, 2]);
    let mut resumed = WsClient::connect(&rooms_ws(&stack, &room, &t, "bob", "&last_seq=0")).await?;
    for seq in [1, 2] {
        let m = resumed.expect("message").await?;
        assert_eq!(m["data"]["seq"], seq);
    }
    for seq in [1, 2] {
        let m = live.expect("message").await?;
        assert_eq!(m["data"]["seq"], seq, "live sockets skip nothing");
        conv.take_where("chat_message", |c| c["message"]["seq"] == seq).await?;
    }
    conv.send(json!({"action": "fetch_messages"})).await?;
    let fetched = conv.expect("messages_fetched").await?;
    assert_eq!(fetched["messages"].as_array().map(Vec::len), Some(2));

    // Notifications: a payload as deep as a body allows is delivered and listed; one
    // deeper is refused.
    let notify =
        |levels: usize| format!(r#"{{"topic":"deep","payload":{},"targets":{{"user_ids":["bob"]}}}}"#, nested(levels));
    alice.post_raw("/notify", notify(40)).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("body"),
    )?;
    alice.post_raw("/notify", notify(30)).await?.expect(StatusCode::ACCEPTED)?;
    let bob = t.user("bob");
    eventually("the deep notification in bob's inbox", || async {
        let inbox = bob.get("/notifications").await?.expect(StatusCode::OK)?;
        Ok(inbox.body.to_string().contains(r#""a":{"a":"#))
    })
    .await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn fragmented_messages_are_reassembled() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;

    // `/ws`: a send in three fragments, with a ping between two of them.
    let mut ws = RawWs::connect(&rooms_ws(&stack, &room, &t, "alice", "")).await?;
    ws.expect("connection_status").await?;
    let frame = json!({"type": "send_message", "data": {"content": "in pieces", "local_id": "f1"}}).to_string();
    let (a, rest) = frame.as_bytes().split_at(10);
    let (b, c) = rest.split_at(15);
    ws.send_frame(op::TEXT, true, a).await?;
    ws.send_frame(op::CONTINUATION, true, b).await?;
    ws.send_frame(FIN | op::PING, true, b"between").await?;
    ws.send_frame(FIN | op::CONTINUATION, true, c).await?;
    let sent = ws.expect("message_sent").await?;
    assert_eq!(sent["data"]["content"], "in pieces");
    assert_eq!(sent["data"]["seq"], 1);

    // A character split across fragments is still one character.
    let text = json!({"type": "send_message", "data": {"content": "é€", "local_id": "f2"}}).to_string();
    let split = text.find('€').map(|i| i + 1).unwrap_or(0);
    ws.send_frame(op::TEXT, true, &text.as_bytes()[..split]).await?;
    ws.send_frame(FIN | op::CONTINUATION, true, &text.as_bytes()[split..]).await?;
    assert_eq!(ws.expect("message_sent").await?["data"]["content"], "é€");

    // Over the frame limit once reassembled (64 KiB by default): the oversized error,
    // and the socket goes on.
    let big = "x".repeat(40 * 1024);
    ws.send_frame(op::TEXT, true, big.as_bytes()).await?;
    ws.send_frame(FIN | op::CONTINUATION, true, big.as_bytes()).await?;
    let e = ws.expect("error").await?;
    assert_eq!(e["data"]["code"], "PAYLOAD_TOO_LARGE");
    ws.ping_pong().await?;

    // `/conversations`: the same.
    let mut conv = RawWs::connect(&conv_ws(&stack, &room, &t, "bob")).await?;
    let frame = json!({"action": "send_message", "content": "conv pieces", "local_id": "f3"}).to_string();
    let (a, b) = frame.as_bytes().split_at(7);
    conv.send_frame(op::TEXT, true, a).await?;
    conv.send_frame(FIN | op::CONTINUATION, true, b).await?;
    let m = conv.expect("chat_message").await?;
    assert_eq!(m["message"]["content"], "conv pieces");
    assert_eq!(m["message"]["local_id"], "f3");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_violations_close_with_their_codes() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let huge_header = {
        // A text frame announcing 2^40 bytes, none of which follow.
        let mut h = vec![FIN | op::TEXT, 0x80 | 127];
        h.extend_from_slice(&(1u64 << 40).to_be_bytes());
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("invalid UTF-8", frame_bytes(FIN | op::TEXT, true, &[0x7b, 0xff, 0xfe, 0x7d]), 1007),
        (
            "invalid UTF-8 across fragments",
            [frame_bytes(op::TEXT, true, b"{\"a\":\"\xe2"), frame_bytes(FIN | op::CONTINUATION, true, b"\x28\xa1\"}")]
                .concat(),
            1007,
        ),
        ("unmasked", frame_bytes(FIN | op::TEXT, false, b"{}"), 1002),
        ("reserved bit", frame_bytes(FIN | 0x40 | op::TEXT, true, b"{}"), 1002),
        ("unknown data opcode", frame_bytes(FIN | 0x3, true, b"{}"), 1002),
        ("unknown control opcode", frame_bytes(FIN | 0xB, true, b""), 1002),
        ("oversized ping", frame_bytes(FIN | op::PING, true, &[b'p'; 126]), 1002),
        ("fragmented ping", frame_bytes(op::PING, true, b"p"), 1002),
        ("lone continuation", frame_bytes(FIN | op::CONTINUATION, true, b"{}"), 1002),
        (
            "a new message inside a fragmented one",
            [frame_bytes(op::TEXT, true, b"{"), frame_bytes(FIN | op::TEXT, true, b"{}")].concat(),
            1002,
        ),
        ("close with a one-byte payload", frame_bytes(FIN | op::CLOSE, true, b"x"), 1002),
        ("a frame announcing a terabyte", huge_header, 1009),
    ];
    for (what, bytes, code) in cases {
        for url in [rooms_ws(&stack, &room, &t, "alice", ""), conv_ws(&stack, &room, &t, "alice")] {
            let mut ws = RawWs::connect(&url).await?;
            ws.send_raw(&bytes).await?;
            let (end, _) = ws.ended().await?;
            assert_eq!(end, Ended::Closed(code), "{what} on {url}");
        }
    }
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_frames_close_only_when_they_come_in_a_row() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let mut ws = WsClient::connect(&rooms_ws(&stack, &room, &t, "alice", "")).await?;
    ws.expect("connection_status").await?;
    let oversized = format!(r#"{{"type":"ping","data":{{"pad":"{}"}}}}"#, "x".repeat(64 * 1024));
    // Four oversized frames, a valid one, four more: nine in the socket's life, never
    // five in a row.
    for _ in 0..2 {
        for _ in 0..4 {
            ws.send_text(oversized.clone()).await?;
            assert_eq!(ws.expect("error").await?["data"]["code"], "PAYLOAD_TOO_LARGE");
        }
        ws.send(json!({"type": "ping", "data": {}})).await?;
        ws.expect("pong").await?;
    }
    // Five in a row close the socket.
    for _ in 0..5 {
        ws.send_text(oversized.clone()).await?;
    }
    assert_eq!(ws.ended().await?, Ended::Closed(1009));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_layer_answers_in_the_documented_shape() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let port = stack.gateway_ports[0];
    let room = t.user("alice").create_room("group", &["bob"]).await?;

    // Requests actix-http refuses before any handler sees them.
    let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("raw > in the path", b"GET /rooms/a>b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, "VALIDATION_ERROR"),
        (
            "a control byte in a header",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n".to_vec(),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "a bad Content-Length",
            b"POST /rooms HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n".to_vec(),
            400,
            "VALIDATION_ERROR",
        ),
        ("not HTTP", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(), 400, "VALIDATION_ERROR"),
        (
            "too many headers",
            format!("GET /health HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "a huge header",
            format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(200 * 1024)).into_bytes(),
            431,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (what, request, status, code) in cases {
        let res = raw_http(port, &request, None).await?;
        res.expect_error(status, code).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    }
    // A request line that never ends: the request timeout's answer, in the same shape.
    let slow = raw_http(port, b"GET /health HTTP/1.1\r\nHost: x\r\n", None).await?;
    slow.expect_error(408, "REQUEST_TIMEOUT")?;
    // Keep-alive: a good request, then a bad one on the same connection.
    let pipelined = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /a>b HTTP/1.1\r\nHost: x\r\n\r\n";
    let answers = raw_http_all(port, pipelined).await?;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0].status, 200, "the good request is answered as usual");
    answers[1].expect_error(400, "VALIDATION_ERROR")?;

    // A WebSocket path without a WebSocket handshake.
    let alice = t.user("alice");
    for path in [
        format!("/ws/{room}?token={}&user_id=alice", t.api_key),
        format!("/conversations/{room}/?token={}&user_id=alice", t.api_key),
    ] {
        alice.get(&path).await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("Upgrade"))?;
    }

    // Ids with NUL or control bytes: the documented 400 / 404, never a 500.
    alice.delete("/subscriptions/%00").await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("topic"),
    )?;
    alice.delete("/subscriptions/a%01b").await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("topic"),
    )?;
    alice.delete("/subscriptions/never").await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    alice.delete(&format!("/rooms/{room}/members/%00")).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("user_id"),
    )?;
    alice.get("/rooms/%00").await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("room_id"))?;
    let admin = chat_test_support::Client::raw(&stack.base_url(0)).with_header("X-API-Key", &stack.admin_key);
    let retry = admin.post("/admin/dead-letters/%00/retry", json!({})).await?;
    retry.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;

    // NUL where PostgreSQL cannot hold it: refused, or dropped from a display name.
    let sent = alice.send(&room, "to edit").await?;
    let id = sent["message_id"].as_str().unwrap_or_default();
    let edit = alice
        .request(reqwest::Method::PATCH, &format!("/rooms/{room}/messages/{id}"))
        .json(&json!({"content": "edited", "edit_reason": "a\u{0}b"}))
        .send()
        .await?;
    chat_test_support::Response::from(edit).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("edit_reason"),
    )?;
    let named =
        alice.post(&format!("/rooms/{room}/messages"), json!({"content": "hi", "sender_name": "\u{0}Al\u{1}"})).await?;
    assert_eq!(named.expect(StatusCode::CREATED)?.body["sender_name"], "Al");
    let mut ws = WsClient::connect(&rooms_ws(&stack, &room, &t, "alice", "&user_name=%00A%07")).await?;
    ws.expect("connection_status").await?;
    ws.send(json!({"type": "send_message", "data": {"content": "named", "local_id": "n1"}})).await?;
    assert_eq!(ws.expect("message_sent").await?["data"]["sender_name"], "A");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_get_the_status_they_earn() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let base = stack.base_url(0);
    let room = t.user("alice").create_room("group", &["bob"]).await?;

    // A tenant's key on an admin route is valid but without the right.
    let tenant_key = chat_test_support::Client::raw(&base).with_header("X-API-Key", &t.api_key);
    tenant_key.get("/admin/tenants").await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    tenant_key.get(&format!("/admin/dead-letters?tenant_id={}", t.id)).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;
    let unknown = chat_test_support::Client::raw(&base).with_header("X-API-Key", "adm_nope");
    unknown.get("/admin/tenants").await?.expect_error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_ERROR", None)?;
    // Settings PostgreSQL could not hold are refused, not a 500.
    let tenant_path = format!("/admin/tenants/{}", t.id);
    for (field, value) in [("webhook_url", "http://hook\u{0}"), ("webhook_secret", "0123456789abcdef\u{0}")] {
        let res = stack.admin(reqwest::Method::PATCH, &tenant_path, Some(json!({ field: value }))).await?;
        res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some(field))?;
    }

    // `/api/v1/users/online` checks `X-User-Id` as every route does.
    let online = "/api/v1/users/online";
    t.user("alice").get(online).await?.expect(StatusCode::OK)?;
    t.user("bad.user").get(online).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("X-User-Id"),
    )?;
    let not_ascii = t
        .user("alice")
        .without_header("X-User-Id")
        .request(reqwest::Method::GET, online)
        .header("X-User-Id", reqwest::header::HeaderValue::from_bytes(b"al\xe9")?)
        .send()
        .await?;
    chat_test_support::Response::from(not_ascii).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("X-User-Id"),
    )?;
    let token = t.user("alice").post("/tokens", json!({"user_id": "alice"})).await?.expect(StatusCode::CREATED)?;
    let as_alice = chat_test_support::Client::raw(&base).with_header("X-API-Key", token.str("token")?);
    as_alice.get(online).await?.expect(StatusCode::OK)?;
    as_alice.clone().with_header("X-User-Id", "bob").get(online).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;

    // A `local_id` that is not a string is refused, as REST refuses such a
    // `client_msg_id`, and nothing is stored.
    let mut conv = conv_open(&conv_ws(&stack, &room, &t, "alice")).await?;
    conv.send(json!({"action": "send_message", "content": "numbered", "local_id": 7})).await?;
    let failed = conv.expect("message.failed").await?;
    assert_eq!(failed["field"], "local_id");
    t.user("alice")
        .post(&format!("/rooms/{room}/messages"), json!({"content": "x", "client_msg_id": 7}))
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("client_msg_id"))?;
    let page = t.user("alice").get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
    assert_eq!(seqs(&page.body), Vec::<i64>::new());
    stack.stop().await
}
