//! The WebSocket API of `ws-rooms.md` with real clients: chat across two gateway
//! replicas, close codes, typing and presence (with expiry), resume without gaps or
//! repeats, slow consumers, bad frames, user tokens, and a gateway going away.

use std::collections::BTreeSet;

use chat_test_support::{Ended, TestStack, TestTenant, WsClient, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn busy_tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": "ws", "rate_limit_per_sec": 100_000})).await
}

fn url(stack: &TestStack, gw: usize, room: &str, t: &TestTenant, user: &str, extra: &str) -> String {
    format!("{}/ws/{room}?token={}&user_id={user}&user_name={user}%20N{extra}", stack.ws_url(gw), t.api_key)
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_across_two_gateways() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob", "carol"]).await?;

    let mut alice = WsClient::connect(&url(&stack, 0, &room, &t, "alice", "")).await?;
    let status = alice.expect("connection_status").await?;
    assert_eq!(status["data"]["status"], "connected");
    assert_eq!(status["data"]["online_users"], json!(["alice"]));
    assert_eq!(status["data"]["total_participants"], 3);
    assert_eq!(status["room_id"], room.as_str());
    assert!(status["timestamp"].is_string());

    let mut bob = WsClient::connect(&url(&stack, 1, &room, &t, "bob", "")).await?;
    let status = bob.expect("connection_status").await?;
    assert_eq!(status["data"]["online_users"], json!(["alice", "bob"]));
    let joined = alice.expect("user_joined").await?;
    assert_eq!(joined["data"]["user_id"], "bob");
    assert_eq!(joined["data"]["user_name"], "bob N");

    // REST send reaches sockets on both gateways, with seq.
    let sent = t.user("carol").send(&room, "hello from REST").await?;
    for ws in [&mut alice, &mut bob] {
        let m = ws.expect("message").await?;
        assert_eq!(m["data"]["content"], "hello from REST");
        assert_eq!(m["data"]["seq"], sent["seq"]);
        assert_eq!(m["data"]["id"], sent["message_id"]);
        assert_eq!(m["data"]["sender_id"], "carol");
        assert_eq!(m["room_id"], room.as_str());
    }

    // send_message over the socket: answered with the stored message, seen by all.
    bob.send(json!({"type": "send_message", "data": {"content": "hi from ws", "local_id": "tmp-1"}})).await?;
    let ack = bob.expect("message_sent").await?;
    assert_eq!(ack["data"]["local_id"], "tmp-1");
    assert_eq!(ack["data"]["seq"], 2);
    let m = alice.expect("message").await?;
    assert_eq!(m["data"]["content"], "hi from ws");
    assert_eq!(m["data"]["sender_name"], "bob N");
    // A resend with the same local_id is the same message.
    bob.send(json!({"type": "send_message", "data": {"content": "hi from ws", "local_id": "tmp-1"}})).await?;
    let again = bob.expect("message_sent").await?;
    assert_eq!(again["data"]["id"], ack["data"]["id"]);
    assert_eq!(again["data"]["duplicate"], true);
    // An invalid send is an error frame carrying the local_id.
    bob.send(json!({"type": "send_message", "data": {"content": "  ", "local_id": "tmp-2"}})).await?;
    let err = bob.expect("error").await?;
    assert_eq!(err["data"]["local_id"], "tmp-2");
    assert_eq!(err["data"]["code"], "VALIDATION_ERROR");

    // ping/pong, get_online_users, fetch_messages.
    alice.send(json!({"type": "ping", "data": {}})).await?;
    alice.expect("pong").await?;
    alice.send(json!({"type": "get_online_users", "data": {}})).await?;
    let online = alice.expect("connection_status").await?;
    assert_eq!(online["data"]["online_users"], json!(["alice", "bob"]));
    alice.send(json!({"type": "fetch_messages", "data": {"after_seq": 0, "limit": 10}})).await?;
    let page = alice.expect("messages").await?;
    let seqs: Vec<_> = page["data"]["messages"].as_array().into_iter().flatten().map(|m| m["seq"].clone()).collect();
    assert_eq!(seqs, vec![json!(1), json!(2)]);

    // The REST helpers of the WebSocket document.
    let res = t.user("carol").get(&format!("/api/v1/rooms/{room}/online")).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["status"], "success");
    assert_eq!(res.body["data"]["online_users"], json!(["alice", "bob"]));
    assert_eq!(res.body["data"]["total_online"], 2);
    let res = t.user("carol").get(&format!("/api/v1/rooms/{room}/participants")).await?.expect(StatusCode::OK)?;
    let parts = res.body["data"]["participants"].as_array().cloned().unwrap_or_default();
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().any(|p| p["user_id"] == "carol" && p["online"] == false));
    assert!(parts.iter().any(|p| p["user_id"] == "alice" && p["online"] == true));
    t.user("eve").get(&format!("/api/v1/rooms/{room}/online")).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;
    // Online across the tenant (both gateways), and not across tenants.
    let res = t.user("carol").get("/api/v1/users/online").await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["data"]["online_users"], json!(["alice", "bob"]));
    let other = stack.tenant().await?;
    let res = other.user("x").get("/api/v1/users/online").await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["data"]["online_users"], json!([]));

    // Bob leaves: alice hears it after the grace period.
    drop(bob);
    let left = alice.expect("user_left").await?;
    assert_eq!(left["data"]["user_id"], "bob");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn close_codes() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &[]).await?;
    let base = stack.ws_url(0);
    let mut c = WsClient::connect(&format!("{base}/ws/{room}?token=sk_nope&user_id=alice")).await?;
    assert_eq!(c.ended().await?, Ended::Closed(4001), "bad token");
    let mut c = WsClient::connect(&format!("{base}/ws/{room}?user_id=alice")).await?;
    assert_eq!(c.ended().await?, Ended::Closed(4001), "no token");
    let mut c = WsClient::connect(&format!("{base}/ws/{room}?token={}", t.api_key)).await?;
    assert_eq!(c.ended().await?, Ended::Closed(4001), "API key without user_id");
    let mut c = WsClient::connect(&url(&stack, 0, "room_missing", &t, "alice", "")).await?;
    assert_eq!(c.ended().await?, Ended::Closed(4002), "no such room");
    let mut c = WsClient::connect(&url(&stack, 0, "bad.id", &t, "alice", "")).await?;
    assert_eq!(c.ended().await?, Ended::Closed(4002), "invalid room id");
    let other = stack.tenant().await?;
    let mut c = WsClient::connect(&url(&stack, 0, &room, &other, "alice", "")).await?;
    assert_eq!(c.ended().await?, Ended::Closed(4002), "another tenant's room");
    let mut c = WsClient::connect(&url(&stack, 0, &room, &t, "mallory", "")).await?;
    assert_eq!(c.ended().await?, Ended::Closed(4003), "not a member");

    // Rate limited: a tenant over its limit cannot open sockets.
    let limited = stack.tenant_with(json!({"name": "tiny", "rate_limit_per_sec": 1})).await?;
    let mut saw_4004 = false;
    for _ in 0..20 {
        let mut c = WsClient::connect(&url(&stack, 0, &room, &limited, "x", "")).await?;
        if c.ended().await? == Ended::Closed(4004) {
            saw_4004 = true;
            break;
        }
    }
    assert!(saw_4004, "20 connects in a row at 1/s must hit the limit");

    // A member removed from the room is disconnected with 4003.
    t.user("alice")
        .post(&format!("/rooms/{room}/members"), json!({"user_id": "bob"}))
        .await?
        .expect(StatusCode::CREATED)?;
    let mut bob = WsClient::connect(&url(&stack, 0, &room, &t, "bob", "")).await?;
    bob.expect("connection_status").await?;
    t.user("alice").delete(&format!("/rooms/{room}/members/bob")).await?.expect(StatusCode::OK)?;
    assert_eq!(bob.ended().await?, Ended::Closed(4003));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn typing_is_relayed_and_expires() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let mut alice = WsClient::connect(&url(&stack, 0, &room, &t, "alice", "")).await?;
    alice.expect("connection_status").await?;
    let mut bob = WsClient::connect(&url(&stack, 1, &room, &t, "bob", "")).await?;
    bob.expect("connection_status").await?;

    alice.send(json!({"type": "typing", "data": {"is_typing": true}})).await?;
    let on = bob.expect("typing").await?;
    assert_eq!(on["data"], json!({"user_id": "alice", "user_name": "alice N", "is_typing": true}));
    // Alice goes quiet: the indicator expires without her saying so.
    let off = bob.expect("typing").await?;
    assert_eq!(off["data"]["user_id"], "alice");
    assert_eq!(off["data"]["is_typing"], false);

    // An explicit stop.
    alice.send(json!({"type": "typing", "data": {"is_typing": true}})).await?;
    bob.expect_where("typing", |f| f["data"]["is_typing"] == true).await?;
    alice.send(json!({"type": "typing", "data": {"is_typing": false}})).await?;
    bob.expect_where("typing", |f| f["data"]["is_typing"] == false).await?;

    // A typer whose connection dies is shown as stopped.
    alice.send(json!({"type": "typing", "data": {"is_typing": true}})).await?;
    bob.expect_where("typing", |f| f["data"]["is_typing"] == true).await?;
    drop(alice);
    bob.expect_where("typing", |f| f["data"]["is_typing"] == false).await?;
    bob.expect("user_left").await?;
    // The typer never gets their own typing frames.
    assert!(bob.seen.iter().all(|f| f["data"]["user_id"] != "bob"));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_has_no_gap_and_no_repeat_while_messages_arrive() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    for i in 0..250 {
        alice.send(&room, &format!("before {i}")).await?;
    }
    // Keep sending while bob reconnects from seq 40 (the replay spans several pages).
    let sender = {
        let (alice, room) = (alice.clone(), room.clone());
        tokio::spawn(async move {
            for i in 0..100 {
                alice.send(&room, &format!("during {i}")).await?;
            }
            anyhow::Ok(())
        })
    };
    let mut bob = WsClient::connect(&url(&stack, 0, &room, &t, "bob", "&last_seq=40")).await?;
    bob.expect("connection_status").await?;
    sender.await??;
    let mut seqs = Vec::new();
    while seqs.last() != Some(&350) {
        let m = bob.expect("message").await?;
        seqs.push(m["data"]["seq"].as_i64().unwrap_or(-1));
    }
    assert_eq!(seqs, (41..=350).collect::<Vec<_>>(), "every message after 40, in order, once");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_socket_is_closed_and_never_slows_the_others() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateway_config(|c| c.ws.queue = 8).start().await?;
    let t = busy_tenant(&stack).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["slow", "fast"]).await?;
    let mut slow = WsClient::connect_small_buffer(&url(&stack, 0, &room, &t, "slow", "")).await?;
    let mut fast = WsClient::connect(&url(&stack, 0, &room, &t, "fast", "")).await?;
    fast.expect("connection_status").await?;
    // The slow client never reads while 300 large messages go out.
    let big = "x".repeat(15_000);
    let n = 800;
    let reader = tokio::spawn(async move {
        let mut got = BTreeSet::new();
        while got.len() < n {
            let m = fast.expect("message").await?;
            got.insert(m["data"]["seq"].as_i64().unwrap_or(-1));
        }
        anyhow::Ok(got)
    });
    for i in 0..n {
        alice.send(&room, &format!("{i} {big}")).await?;
    }
    let got = reader.await??;
    assert_eq!(got, (1..=n as i64).collect::<BTreeSet<_>>(), "the fast reader got everything");
    // The slow one was cut off with the retryable code (or dropped, if even the close
    // frame could not get through its full buffers).
    let end = slow.ended().await?;
    assert!(matches!(end, Ended::Closed(1013) | Ended::Dropped), "slow socket ended with {end:?}");
    assert!(slow.seen.iter().filter(|f| f["type"] == "message").count() < n, "it did not get everything");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_get_error_frames_then_a_close() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &[]).await?;
    let mut c = WsClient::connect(&url(&stack, 0, &room, &t, "alice", "")).await?;
    c.expect("connection_status").await?;
    c.send_text("nonsense".into()).await?;
    assert_eq!(c.expect("error").await?["data"]["code"], "VALIDATION_ERROR");
    c.send(json!({"type": "dance", "data": {}})).await?;
    assert_eq!(c.expect("error").await?["data"]["code"], "VALIDATION_ERROR");
    c.send(json!({"type": "ping", "data": {}, "pad": "x".repeat(70 * 1024)})).await?;
    assert_eq!(c.expect("error").await?["data"]["code"], "PAYLOAD_TOO_LARGE");
    // Still alive.
    c.send(json!({"type": "ping", "data": {}})).await?;
    c.expect("pong").await?;
    // Repeated bad frames end it with 1008.
    for _ in 0..5 {
        c.send_text("{bad".into()).await?;
    }
    assert_eq!(c.ended().await?, Ended::Closed(1008));
    // Repeated oversized frames end it with 1009.
    let mut c = WsClient::connect(&url(&stack, 0, &room, &t, "alice", "")).await?;
    c.expect("connection_status").await?;
    for _ in 0..5 {
        c.send_text("y".repeat(70 * 1024)).await?;
    }
    assert_eq!(c.ended().await?, Ended::Closed(1009));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sockets_are_closed() -> anyhow::Result<()> {
    let stack = TestStack::builder()
        .gateway_config(|c| {
            c.ws.ping_interval = std::time::Duration::from_millis(100);
            c.ws.idle_timeout = std::time::Duration::from_millis(500);
        })
        .start()
        .await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &[]).await?;
    let mut c = WsClient::connect(&url(&stack, 0, &room, &t, "alice", "")).await?;
    // Not reading means not answering pings: the server gives up on us.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // The server ended it (we never closed): with its code, or - if our late pong
    // raced its close - by dropping the connection. Either way nothing else came.
    let end = c.ended().await?;
    assert!(matches!(end, Ended::Closed(1001) | Ended::Dropped), "ended with {end:?}");
    assert_eq!(c.seen.iter().map(|f| f["type"].clone()).collect::<Vec<_>>(), vec![json!("connection_status")]);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn user_tokens() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &[]).await?;
    let res = t.user("alice").post("/tokens", json!({"ttl_secs": 600})).await?.expect(StatusCode::CREATED)?;
    let token = res.str("token")?.to_owned();
    assert_eq!(res.body["user_id"], "alice");
    assert!(res.str("expires_at")?.ends_with('Z'));
    let base = stack.ws_url(0);
    // The token names the user: no user_id needed, and a user_id cannot override it.
    let mut c = WsClient::connect(&format!("{base}/ws/{room}?token={token}&user_id=mallory")).await?;
    let status = c.expect("connection_status").await?;
    assert_eq!(status["data"]["user_id"], "alice");

    // Forged: another signature, or claims edited.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[2] = format!("A{}", &parts[2][1..]);
    let mut c = WsClient::connect(&format!("{base}/ws/{room}?token={}", parts.join("."))).await?;
    assert_eq!(c.ended().await?, Ended::Closed(4001));
    // Expired.
    let short = t.user("alice").post("/tokens", json!({"ttl_secs": 1})).await?.expect(StatusCode::CREATED)?;
    let short = short.str("token")?.to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let mut c = WsClient::connect(&format!("{base}/ws/{room}?token={short}")).await?;
    assert_eq!(c.ended().await?, Ended::Closed(4001));
    // Rotating the API key invalidates outstanding tokens.
    stack
        .admin(reqwest::Method::POST, &format!("/admin/tenants/{}/rotate-key", t.id), None)
        .await?
        .expect(StatusCode::OK)?;
    let mut c = WsClient::connect(&format!("{base}/ws/{room}?token={token}")).await?;
    assert_eq!(c.ended().await?, Ended::Closed(4001));
    // Bad requests.
    let fresh = stack.tenant().await?;
    fresh.user("a").post("/tokens", json!({"ttl_secs": 0})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("ttl_secs"),
    )?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_going_away_sends_reconnect_and_1001() -> anyhow::Result<()> {
    let mut stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let mut alice = WsClient::connect(&url(&stack, 0, &room, &t, "alice", "")).await?;
    alice.expect("connection_status").await?;
    let mut bob = WsClient::connect(&url(&stack, 1, &room, &t, "bob", "")).await?;
    bob.expect("connection_status").await?;
    stack.stop_gateway(1).await?;
    let frame = bob.expect("reconnect").await?;
    assert!(frame["data"]["delay_ms"].as_u64().is_some());
    assert_eq!(bob.ended().await?, Ended::Closed(1001));
    // Presence is right on the surviving gateway: bob is gone.
    alice.expect_where("user_left", |f| f["data"]["user_id"] == "bob").await?;
    // Bob resumes on the other gateway without missing anything.
    t.user("alice").send(&room, "while bob was away").await?;
    let mut bob = WsClient::connect(&url(&stack, 0, &room, &t, "bob", "&last_seq=0")).await?;
    let m = bob.expect("message").await?;
    assert_eq!(m["data"]["content"], "while bob was away");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_expires_when_a_gateway_dies_silently() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["ghost"]).await?;
    // A socket registered by a "gateway" that then vanishes: no lease, no goodbye.
    let connect = chat_domain::proto::presence::Connect {
        tenant_id: chat_domain::ids::TenantId::parse(t.id.as_str())?,
        room_id: chat_domain::ids::RoomId::parse(room.as_str())?,
        user_id: chat_domain::ids::UserId::parse("ghost")?,
        user_name: None,
        gateway_id: chat_domain::ids::GatewayId::parse("gw_dead")?,
        conn_id: "gw_dead-1".into(),
    };
    stack.bus.request(&connect).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let online = |body: &Value| body["data"]["online_users"].as_array().cloned().unwrap_or_default();
    let res = t.user("alice").get(&format!("/api/v1/rooms/{room}/online")).await?.expect(StatusCode::OK)?;
    assert_eq!(online(&res.body), vec![json!("ghost")]);
    eventually("the ghost to expire", || async {
        let res = t.user("alice").get(&format!("/api/v1/rooms/{room}/online")).await?;
        Ok(online(&res.body).is_empty())
    })
    .await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_and_deletes_reach_sockets() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let (alice, bob) = (t.user("alice"), t.user("bob"));
    let room = alice.create_room("group", &["bob"]).await?;
    let sent = bob.send(&room, "helo").await?;
    let id = sent["message_id"].as_str().unwrap_or_default().to_owned();
    let mut ws = WsClient::connect(&url(&stack, 1, &room, &t, "alice", "")).await?;
    ws.expect("connection_status").await?;
    let path = format!("/rooms/{room}/messages/{id}");

    // Only the sender edits.
    let res = chat_test_support::Response::from(
        alice.request(reqwest::Method::PATCH, &path).json(&json!({"content": "x"})).send().await?,
    )
    .await?;
    res.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    let res = chat_test_support::Response::from(
        bob.request(reqwest::Method::PATCH, &path)
            .json(&json!({"content": "hello", "edit_reason": "typo"}))
            .send()
            .await?,
    )
    .await?
    .expect(StatusCode::OK)?;
    assert_eq!(res.body["content"], "hello");
    assert!(res.body["edited_at"].is_string());
    let updated = ws.expect("message_updated").await?;
    assert_eq!(updated["data"]["id"], id.as_str());
    assert_eq!(updated["data"]["content"], "hello");
    assert_eq!(updated["data"]["edit_reason"], "typo");

    // The sender or an admin deletes; the seq stays, the content goes.
    let res = bob.delete(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["content"], "");
    let deleted = ws.expect("message_deleted").await?;
    assert_eq!(deleted["data"]["id"], id.as_str());
    assert_eq!(deleted["data"]["deleted_by"], "bob");
    let history = alice.get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
    assert_eq!(history.body[0]["seq"], 1);
    assert!(history.body[0]["deleted_at"].is_string());
    // Editing a deleted message conflicts; deleting twice is fine.
    let res = chat_test_support::Response::from(
        bob.request(reqwest::Method::PATCH, &path).json(&json!({"content": "again"})).send().await?,
    )
    .await?;
    res.expect_error(StatusCode::CONFLICT, "CONFLICT", None)?;
    bob.delete(&path).await?.expect(StatusCode::OK)?;
    // Admin deletes someone else's message; a plain member cannot.
    let other = bob.send(&room, "by bob").await?;
    let other_path = format!("/rooms/{room}/messages/{}", other["message_id"].as_str().unwrap_or_default());
    alice.delete(&other_path).await?.expect(StatusCode::OK)?;
    let mine = alice.send(&room, "by alice").await?;
    let mine_path = format!("/rooms/{room}/messages/{}", mine["message_id"].as_str().unwrap_or_default());
    bob.delete(&mine_path).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    alice.delete(&format!("/rooms/{room}/messages/msg_missing")).await?.expect_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    )?;
    alice.delete(&format!("/rooms/{room}/messages/bad.id")).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("message_id"),
    )?;
    stack.stop().await
}
