//! The WebSocket dialect of `ws-conversations.md` at `/conversations/{id}/` with real
//! clients: close codes 4003/4004, `send_message` → `chat_message` to every
//! participant (and across dialects: `/ws` sockets and REST in the same room),
//! idempotent resends by `local_id`, `message.failed`, typing, read receipts by message
//! id, `message.status` delivered then read, paging backwards with `fetch_messages`,
//! `user_status` across two gateways, server heartbeats and the idle close. Needs the
//! machine's PostgreSQL, Redis and NATS.

use std::collections::BTreeSet;
use std::time::Duration;

use chat_test_support::{Ended, TestStack, TestTenant, WsClient, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn busy_tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": "conv", "rate_limit_per_sec": 100_000})).await
}

/// `/conversations/{room}/` on gateway `gw` as `user`, with the API key.
fn conv(stack: &TestStack, gw: usize, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/conversations/{room}/?token={}&user_id={user}&user_name={user}%20N", stack.ws_url(gw), t.api_key)
}

/// `/ws/{room}` on gateway `gw` as `user`.
fn rooms_ws(stack: &TestStack, gw: usize, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/ws/{room}?token={}&user_id={user}", stack.ws_url(gw), t.api_key)
}

/// Connects and waits until presence has the socket (so events published from now on
/// reach it): the others see `user_status`, or, with nobody else around, a round trip
/// through the session answers.
async fn open(url: &str) -> anyhow::Result<WsClient> {
    let mut c = WsClient::connect(url).await?;
    c.send(json!({"action": "fetch_messages", "limit": 1})).await?;
    c.expect("messages_fetched").await?;
    Ok(c)
}

fn ids(frame: &Value) -> Vec<String> {
    frame["messages"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn close_codes() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let base = stack.ws_url(0);
    let closed = |url: String| async move { anyhow::Ok(WsClient::connect(&url).await?.ended().await?) };

    assert_eq!(closed(format!("{base}/conversations/{room}/")).await?, Ended::Closed(4003), "no token");
    assert_eq!(closed(format!("{base}/conversations/{room}/?token=sk_nope&user_id=alice")).await?, Ended::Closed(4003));
    assert_eq!(closed(format!("{base}/conversations/{room}/?token=a.b.c")).await?, Ended::Closed(4003), "bad token");
    assert_eq!(
        closed(format!("{base}/conversations/{room}/?token={}", t.api_key)).await?,
        Ended::Closed(4003),
        "an API key names no user"
    );
    assert_eq!(
        closed(format!("{base}/conversations/{room}/?token={}&user_id=a.b", t.api_key)).await?,
        Ended::Closed(4003),
        "an invalid user id"
    );
    let short = t.user("alice").post("/tokens", json!({"ttl_secs": 1})).await?.expect(StatusCode::CREATED)?;
    let short = short.str("token")?.to_owned();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(closed(format!("{base}/conversations/{room}/?token={short}")).await?, Ended::Closed(4003), "expired");

    assert_eq!(closed(conv(&stack, 0, "room_missing", &t, "alice")).await?, Ended::Closed(4004), "no such room");
    assert_eq!(closed(conv(&stack, 0, "bad.id", &t, "alice")).await?, Ended::Closed(4004), "an invalid id");
    let other = stack.tenant().await?;
    assert_eq!(closed(conv(&stack, 0, &room, &other, "alice")).await?, Ended::Closed(4004), "another tenant's");
    assert_eq!(closed(conv(&stack, 0, &room, &t, "mallory")).await?, Ended::Closed(4004), "not a participant");

    // A user token names the user; with and without the trailing slash.
    let token = t.user("bob").post("/tokens", json!({})).await?.expect(StatusCode::CREATED)?;
    let token = token.str("token")?.to_owned();
    open(&format!("{base}/conversations/{room}/?token={token}")).await?;
    let mut bob = open(&format!("{base}/conversations/{room}?token={token}")).await?;

    // A participant removed while connected is closed with 4004.
    t.user("alice").delete(&format!("/rooms/{room}/members/bob")).await?.expect(StatusCode::OK)?;
    assert_eq!(bob.ended().await?, Ended::Closed(4004));

    // A tenant over its rate limit cannot open sockets: 1013, try again later.
    let limited = stack.tenant_with(json!({"name": "tiny", "rate_limit_per_sec": 1})).await?;
    // Its first request of the second: allowed.
    let small = limited.user("x").create_room("group", &[]).await?;
    // The limit counts per one-second window: a connect that falls into a new window is
    // let in. Such a socket answers a fetch (or refuses it) and is closed, and the loop
    // goes on; waiting for it to end would wait forever.
    let mut saw_1013 = false;
    for _ in 0..20 {
        let mut c = WsClient::connect(&conv(&stack, 0, &small, &limited, "x")).await?;
        let _ = c.send(json!({"action": "fetch_messages", "limit": 1})).await;
        let ended = loop {
            match c.next().await? {
                Ok(frame) if frame["type"] == "messages_fetched" || frame.get("code").is_some() => break None,
                Ok(_) => {}
                Err(ended) => break Some(ended),
            }
        };
        match ended {
            Some(Ended::Closed(1013)) => {
                saw_1013 = true;
                break;
            }
            Some(_) => {}
            None => c.close().await?,
        }
    }
    assert!(saw_1013, "20 connects in a row at 1/s must hit the limit");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_reaches_every_participant_and_every_dialect() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob", "carol", "dave"]).await?;
    let mut alice = open(&conv(&stack, 0, &room, &t, "alice")).await?;
    let mut bob = open(&conv(&stack, 1, &room, &t, "bob")).await?;
    let mut carol = WsClient::connect(&rooms_ws(&stack, 0, &room, &t, "carol")).await?;
    carol.expect("connection_status").await?;

    alice
        .send(json!({"action": "send_message", "conversation_id": room, "content": "Hello!", "local_id": "temp_1"}))
        .await?;
    let mine = alice.expect("chat_message").await?;
    let m = &mine["message"];
    assert_eq!(m["local_id"], "temp_1");
    assert_eq!(m["sender_id"], "alice");
    assert_eq!(m["content"], "Hello!");
    assert_eq!(m["status"], "sent");
    assert!(m["id"].is_string() && m["timestamp"].is_string());
    let theirs = bob.expect("chat_message").await?;
    assert_eq!(theirs, mine, "every participant gets the same frame, the sender included");
    // The same message on /ws, in that document's shape, with the same seq.
    let on_ws = carol.expect("message").await?;
    assert_eq!(on_ws["data"]["id"], m["id"]);
    assert_eq!(on_ws["data"]["seq"], m["seq"]);
    assert_eq!(on_ws["data"]["local_id"], "temp_1");
    assert_eq!(on_ws["data"]["sender_name"], "alice N");

    // A REST send and a /ws send reach the conversation sockets.
    let rest = t.user("dave").send(&room, "from REST").await?;
    let seen = alice.expect_where("chat_message", |f| f["message"]["content"] == "from REST").await?;
    assert_eq!(seen["message"]["id"], rest["message_id"]);
    assert_eq!(seen["message"]["seq"], rest["seq"]);
    bob.expect_where("chat_message", |f| f["message"]["content"] == "from REST").await?;
    carol.send(json!({"type": "send_message", "data": {"content": "from /ws", "local_id": "w1"}})).await?;
    let sent = carol.expect("message_sent").await?;
    let seen = bob.expect_where("chat_message", |f| f["message"]["content"] == "from /ws").await?;
    assert_eq!(seen["message"]["seq"], sent["data"]["seq"]);
    assert_eq!(seen["message"]["local_id"], "w1");

    // Typing: the others see it with the user's name, the typer does not.
    bob.send(json!({"action": "typing", "conversation_id": room, "is_typing": true})).await?;
    let typing = alice.expect("typing").await?;
    assert_eq!(typing, json!({"type": "typing", "user_id": "bob", "username": "bob N", "is_typing": true}));
    let on_ws = carol.expect("typing").await?;
    assert_eq!(on_ws["data"]["user_id"], "bob");
    bob.send(json!({"action": "typing", "is_typing": false})).await?;
    let stopped = alice.expect_where("typing", |f| f["is_typing"] == false).await?;
    assert_eq!(stopped["user_id"], "bob");
    bob.send(json!({"action": "fetch_messages", "limit": 1})).await?;
    bob.expect("messages_fetched").await?;
    assert!(!bob.seen.iter().any(|f| f["type"] == "typing"), "nobody hears their own typing: {:?}", bob.seen);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn senders_see_delivered_then_read() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob", "carol"]).await?;
    let mut alice = open(&conv(&stack, 0, &room, &t, "alice")).await?;
    let mut bob = open(&conv(&stack, 1, &room, &t, "bob")).await?;
    let mut carol = WsClient::connect(&rooms_ws(&stack, 0, &room, &t, "carol")).await?;
    carol.expect("connection_status").await?;

    let mut sent = Vec::new();
    for (i, text) in ["one", "two"].iter().enumerate() {
        alice.send(json!({"action": "send_message", "content": text, "local_id": format!("l{i}")})).await?;
        let m = alice.expect_where("chat_message", |f| f["message"]["content"] == *text).await?;
        sent.push(m["message"]["id"].as_str().unwrap_or_default().to_owned());
    }
    // Pushed to bob's socket: the gateway records the delivery itself.
    for id in &sent {
        let status = alice.take_where("message.status", |f| f["message_id"] == id.as_str()).await?;
        assert_eq!(status["status"], "delivered");
        assert_eq!(status["conversation_id"], room.as_str());
        assert!(status["timestamp"].is_string());
    }
    let on_ws = carol.take_where("delivered", |f| f["data"]["user_id"] == "bob").await?;
    assert!(on_ws["data"]["seq"].as_i64().unwrap_or(0) >= 1);

    // Bob reads the first: the others see which, alice gets `read` for it.
    bob.send(json!({"action": "read", "conversation_id": room, "message_ids": [sent[0]]})).await?;
    let read = alice.take_where("read", |_| true).await?;
    assert_eq!(read, json!({"type": "read", "user_id": "bob", "message_ids": [sent[0]]}));
    let status = alice.take_where("message.status", |f| f["status"] == "read").await?;
    assert_eq!(status["message_id"], sent[0].as_str());
    let on_ws = carol.take_where("read", |_| true).await?;
    assert_eq!(on_ws["data"]["user_id"], "bob");
    assert_eq!(on_ws["data"]["seq"], 1);
    // Bob's read cursor is at the highest message read.
    let rooms = t.user("bob").get("/rooms").await?.expect(StatusCode::OK)?;
    let unread = rooms.body.as_array().into_iter().flatten().find(|r| r["room_id"] == room.as_str()).cloned();
    assert_eq!(unread.map(|r| r["unread_count"].clone()), Some(json!(1)));

    // Reading both moves the cursor to the newer; the named ones are reported read.
    bob.send(json!({"action": "read", "message_ids": [sent[1], sent[0]]})).await?;
    let read = alice.take_where("read", |_| true).await?;
    assert_eq!(read["message_ids"], json!([sent[0], sent[1]]));
    let mut read_ids = BTreeSet::new();
    while read_ids.len() < 2 {
        let status = alice.take_where("message.status", |f| f["status"] == "read").await?;
        read_ids.insert(status["message_id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(read_ids, sent.iter().cloned().collect::<BTreeSet<_>>());

    // Bob replies before his client sends the receipt for alice's next message (his
    // reply moves his cursors past it): the receipt still reaches alice.
    alice.send(json!({"action": "send_message", "content": "three", "local_id": "l3"})).await?;
    let third = alice.expect_where("chat_message", |f| f["message"]["content"] == "three").await?;
    let third = third["message"]["id"].as_str().unwrap_or_default().to_owned();
    bob.expect_where("chat_message", |f| f["message"]["id"] == third.as_str()).await?;
    bob.send(json!({"action": "send_message", "content": "reply", "local_id": "r1"})).await?;
    bob.expect_where("chat_message", |f| f["message"]["content"] == "reply").await?;
    let status = alice.take_where("message.status", |f| f["message_id"] == third.as_str()).await?;
    assert_eq!(status["status"], "delivered");
    bob.send(json!({"action": "read", "message_ids": [third]})).await?;
    let status =
        alice.take_where("message.status", |f| f["message_id"] == third.as_str() && f["status"] == "read").await?;
    assert_eq!(status["conversation_id"], room.as_str());

    // A receipt sent the moment a message is shown (a chat window that is open): the
    // sender still hears `delivered` before `read`.
    alice.send(json!({"action": "send_message", "content": "four", "local_id": "l4"})).await?;
    let fourth = bob.expect_where("chat_message", |f| f["message"]["content"] == "four").await?;
    let fourth = fourth["message"]["id"].as_str().unwrap_or_default().to_owned();
    bob.send(json!({"action": "read", "message_ids": [fourth]})).await?;
    let first = alice.take_where("message.status", |f| f["message_id"] == fourth.as_str()).await?;
    assert_eq!(first["status"], "delivered");
    alice.take_where("message.status", |f| f["message_id"] == fourth.as_str() && f["status"] == "read").await?;

    // A read through /ws names no messages; conversation sockets get the ones it passed.
    carol.send(json!({"type": "read", "data": {"seq": 3}})).await?;
    let read = alice.take_where("read", |f| f["user_id"] == "carol").await?;
    assert_eq!(read["message_ids"], json!([sent[0], sent[1], third]));

    // Unknown or foreign message ids are an error frame, and the socket stays.
    bob.send(json!({"action": "read", "message_ids": ["msg_unknown"]})).await?;
    let err = bob.expect("error").await?;
    assert_eq!(err["code"], "NOT_FOUND");
    assert!(err["error"].is_string());
    bob.send(json!({"action": "read", "message_ids": "x"})).await?;
    assert_eq!(bob.expect("error").await?["field"], "message_ids");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_and_bad_frames() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let elsewhere = t.user("alice").create_room("group", &["bob"]).await?;
    let mut other = open(&conv(&stack, 0, &elsewhere, &t, "bob")).await?;
    let mut alice = open(&conv(&stack, 0, &room, &t, "alice")).await?;

    // Another conversation's id: refused, nothing sent anywhere.
    alice
        .send(json!({"action": "send_message", "conversation_id": elsewhere, "content": "x", "local_id": "f1"}))
        .await?;
    let failed = alice.expect("message.failed").await?;
    assert_eq!(failed["local_id"], "f1");
    assert_eq!(failed["field"], "conversation_id");
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("conversation")), "{failed}");
    for (frame, field) in [
        (json!({"action": "send_message", "content": "   ", "local_id": "f2"}), "content"),
        (json!({"action": "send_message", "local_id": "f3"}), "content"),
        (json!({"action": "send_message", "content": 5, "local_id": "f4"}), "content"),
        (json!({"action": "send_message", "content": "x".repeat(16_001), "local_id": "f5"}), "content"),
    ] {
        let local_id = frame["local_id"].clone();
        alice.send(frame).await?;
        let failed = alice.expect("message.failed").await?;
        assert_eq!((failed["local_id"].clone(), failed["field"].clone()), (local_id, json!(field)));
        // A good frame between bad ones keeps the socket from being closed as abusive.
        alice.send(json!({"action": "heartbeat_ack"})).await?;
    }
    // Unknown actions and malformed frames: an error frame each, the socket stays open.
    for (raw, field) in [(r#"{"action":"dance"}"#, "action"), ("not json", "frame"), (r#"{"type":"typing"}"#, "action")]
    {
        alice.send_text(raw.to_owned()).await?;
        let err = alice.expect("error").await?;
        assert_eq!(err["field"], field, "{raw}: {err}");
        assert_eq!(err["code"], "VALIDATION_ERROR");
        alice.send(json!({"action": "heartbeat_ack"})).await?;
    }
    alice.send(json!({"action": "fetch_messages", "before_id": "msg_unknown"})).await?;
    let err = alice.expect("error").await?;
    assert_eq!((err["code"].clone(), err["field"].clone()), (json!("NOT_FOUND"), json!("before_id")));
    alice.send(json!({"action": "fetch_messages", "conversation_id": elsewhere})).await?;
    assert_eq!(alice.expect("error").await?["field"], "conversation_id");

    // Nothing was stored, here or there.
    alice.send(json!({"action": "fetch_messages"})).await?;
    assert_eq!(alice.expect("messages_fetched").await?["messages"], json!([]));
    other.send(json!({"action": "fetch_messages"})).await?;
    assert_eq!(other.expect("messages_fetched").await?["messages"], json!([]));
    assert!(!other.seen.iter().any(|f| f["type"] == "chat_message"), "{:?}", other.seen);

    // Five bad frames in a row close the socket, with a reason.
    for _ in 0..5 {
        alice.send_text("{".to_owned()).await?;
    }
    assert_eq!(alice.ended().await?, Ended::Closed(1008));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resend_after_reconnecting_stores_once() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("dm", &["bob"]).await?;
    let frame = json!({"action": "send_message", "conversation_id": room, "content": "queued", "local_id": "q1"});
    // The first attempt is stored, and the connection drops before the answer is read.
    let mut first = open(&conv(&stack, 0, &room, &t, "alice")).await?;
    first.send(frame.clone()).await?;
    let stored = eventually("the first attempt to be stored", || async {
        let list = t.user("alice").get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
        Ok(list.body.as_array().is_some_and(|l| l.len() == 1))
    });
    stored.await?;
    drop(first);
    // The offline queue retries on reconnect: the same message comes back.
    let mut again = open(&conv(&stack, 0, &room, &t, "alice")).await?;
    again.send(frame).await?;
    let m = again.expect("chat_message").await?;
    assert_eq!(m["message"]["local_id"], "q1");
    assert_eq!(m["message"]["content"], "queued");
    let list = t.user("alice").get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
    let list = list.body.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "stored once: {list:?}");
    assert_eq!(list[0]["message_id"], m["message"]["id"]);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_messages_pages_backwards_without_gaps() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let mut stored = Vec::new();
    for i in 0..45 {
        stored.push(alice.send(&room, &format!("m{i}")).await?["message_id"].as_str().unwrap_or_default().to_owned());
    }
    t.user("alice").delete(&format!("/rooms/{room}/messages/{}", stored[3])).await?.expect(StatusCode::OK)?;
    let mut bob = open(&conv(&stack, 0, &room, &t, "bob")).await?;
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut frame = json!({"action": "fetch_messages", "conversation_id": room, "limit": 20});
        if let Some(b) = &before {
            frame["before_id"] = json!(b);
        }
        bob.send(frame).await?;
        let page = bob.expect("messages_fetched").await?;
        assert_eq!(page["conversation_id"], room.as_str());
        let page_ids = ids(&page);
        if page_ids.is_empty() {
            break;
        }
        before = page_ids.last().cloned();
        pages.push(page);
    }
    let sizes: Vec<usize> = pages.iter().map(|p| ids(p).len()).collect();
    assert_eq!(sizes, vec![20, 20, 5]);
    let all: Vec<String> = pages.iter().flat_map(ids).collect();
    let mut expected = stored.clone();
    expected.reverse();
    assert_eq!(all, expected, "newest first, no overlap, no gap");
    let first = &pages[0]["messages"][0];
    assert_eq!(first["content"], "m44");
    assert_eq!(first["sender_id"], "alice");
    assert!(first["sent_at"].is_string());
    assert_eq!((first["is_edited"].clone(), first["is_deleted"].clone()), (json!(false), json!(false)));
    let deleted = pages
        .iter()
        .flat_map(|p| p["messages"].as_array().cloned().unwrap_or_default())
        .find(|m| m["id"] == stored[3].as_str());
    assert_eq!(deleted.map(|m| m["is_deleted"].clone()), Some(json!(true)));

    // Default 20; past 100 is cut to 100.
    bob.send(json!({"action": "fetch_messages"})).await?;
    assert_eq!(ids(&bob.expect("messages_fetched").await?).len(), 20);
    bob.send(json!({"action": "fetch_messages", "limit": 500})).await?;
    assert_eq!(ids(&bob.expect("messages_fetched").await?).len(), 45);
    let distinct: BTreeSet<String> = all.into_iter().collect();
    assert_eq!(distinct.len(), 45);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn user_status_across_gateways() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let mut alice = open(&conv(&stack, 0, &room, &t, "alice")).await?;
    let bob = WsClient::connect(&conv(&stack, 1, &room, &t, "bob")).await?;
    let online = alice.expect_where("user_status", |f| f["user_id"] == "bob").await?;
    assert_eq!(online["status"], "online");
    assert!(online["timestamp"].is_string());
    // A second socket of bob's is no news.
    let second = open(&conv(&stack, 0, &room, &t, "bob")).await?;
    drop(second);
    drop(bob);
    // After the leave grace, bob's last socket is gone.
    let offline = alice.expect_where("user_status", |f| f["user_id"] == "bob" && f["status"] == "offline").await?;
    assert_eq!(offline["type"], "user_status");
    let news: Vec<&Value> = alice.seen.iter().filter(|f| f["type"] == "user_status").collect();
    assert!(news.is_empty(), "one online, then one offline: {news:?}");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_and_the_idle_close() -> anyhow::Result<()> {
    let stack = TestStack::builder()
        .gateway_config(|c| {
            c.ws.ping_interval = Duration::from_millis(200);
            c.ws.idle_timeout = Duration::from_millis(1000);
        })
        .start()
        .await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &[]).await?;
    let mut alice = open(&conv(&stack, 0, &room, &t, "alice")).await?;
    assert_eq!(alice.expect("heartbeat").await?, json!({"type": "heartbeat"}));
    // Acknowledgements get no answer: the next answer is to the fetch that follows.
    alice.send(json!({"action": "heartbeat_ack"})).await?;
    alice.send(json!({"action": "heartbeat"})).await?;
    alice.send(json!({"action": "fetch_messages"})).await?;
    alice.seen.clear();
    alice.expect("messages_fetched").await?;
    assert!(alice.seen.iter().all(|f| f["type"] == "heartbeat"), "{:?}", alice.seen);

    // A client that only sends heartbeat_ack (never reading, so never answering pings)
    // stays connected past the idle limit.
    let mut acking = open(&conv(&stack, 0, &room, &t, "alice")).await?;
    for _ in 0..8 {
        acking.send(json!({"action": "heartbeat_ack"})).await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    acking.send(json!({"action": "fetch_messages"})).await?;
    acking.expect("messages_fetched").await?;

    // A silent one (it does not even answer pings) is closed as idle (1001).
    let silent = WsClient::connect(&conv(&stack, 0, &room, &t, "alice")).await?;
    assert_eq!(silent.ended_unread().await?, Ended::Closed(1001));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_reach_conversation_sockets() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &[]).await?;
    let mut alice = open(&conv(&stack, 0, &room, &t, "alice")).await?;
    let body = json!({"topic": "order.shipped", "payload": {"title": "Shipped"}, "targets": {"user_ids": ["alice"]}});
    t.user("ops").post("/notify", body).await?.expect(StatusCode::ACCEPTED)?;
    let n = alice.expect("notification").await?;
    assert_eq!((n["title"].clone(), n["topic"].clone()), (json!("Shipped"), json!("order.shipped")));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_of_a_busy_room_is_marked_delivered() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let users = ["u0", "u1", "u2", "u3"];
    let room = t.user("u0").create_room("group", &users[1..]).await?;
    let mut sockets = Vec::new();
    for (i, u) in users.iter().enumerate() {
        sockets.push(open(&conv(&stack, i % 2, &room, &t, u)).await?);
    }
    // Everyone sends at once, interleaved: send batches and receipt batches overlap.
    const EACH: usize = 15;
    for n in 0..EACH {
        for (i, s) in sockets.iter_mut().enumerate() {
            s.send(json!({"action": "send_message", "content": format!("{i}-{n}"), "local_id": format!("{i}-{n}")}))
                .await?;
        }
    }
    for (i, s) in sockets.iter_mut().enumerate() {
        let mut mine = BTreeSet::new();
        let mut delivered = BTreeSet::new();
        while mine.len() < EACH || !mine.is_subset(&delivered) {
            let frame = tokio::time::timeout(Duration::from_secs(10), s.next()).await;
            let Ok(frame) = frame else {
                anyhow::bail!(
                    "socket {i}: mine {} delivered {} missing {:?}",
                    mine.len(),
                    delivered.len(),
                    mine.difference(&delivered).collect::<Vec<_>>()
                );
            };
            let frame = frame?.map_err(|end| anyhow::anyhow!("socket {i} ended: {end:?}"))?;
            match frame["type"].as_str() {
                Some("chat_message") if frame["message"]["sender_id"] == users[i] => {
                    mine.insert(frame["message"]["id"].as_str().unwrap_or_default().to_owned());
                }
                Some("message.status") if frame["status"] == "delivered" => {
                    delivered.insert(frame["message_id"].as_str().unwrap_or_default().to_owned());
                }
                _ => {}
            }
        }
    }
    stack.stop().await
}
