//! Mentions: `mentions` on send names room members (a non-member, a repeat or a bad id
//! is `400` on `mentions`), is kept on the message and reads back on every path; a
//! mentioned member who is offline gets exactly one inbox entry and one webhook of kind
//! `mention` saying who mentioned whom, where and in which message — and that message
//! is left out of their coalesced offline notice; an online member gets none; `GET
//! /rooms` counts `unread_mentions` until the member reads; `@channel` mentions everyone
//! and is refused (`403`) for a plain member. Sends from `/ws`, `/conversations` and
//! `/api/chat` carry mentions too. Needs the full stack (sockets, presence, PostgreSQL,
//! NATS, webhooks).

use chat_domain::ids::{RoomId, TenantId};
use chat_domain::proto::presence::GetOnline;
use chat_test_support::{Client, TestStack, TestTenant, WebhookReceiver, WsClient, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": chat_test_support::unique("mentions-"), "rate_limit_per_sec": 100_000})).await
}

async fn webhook(stack: &TestStack, t: &TestTenant) -> anyhow::Result<WebhookReceiver> {
    let hook = WebhookReceiver::start(Some(0)).await?;
    let body = json!({"webhook_url": hook.url, "webhook_secret": "s3cret-s3cret-s3cret", "retry": {"max_attempts": 3, "backoff_ms": 20}});
    stack.admin(Method::PATCH, &format!("/admin/tenants/{}", t.id), Some(body)).await?.expect(StatusCode::OK)?;
    Ok(hook)
}

/// A user's inbox entries of `kind`.
async fn entries(user: &Client, kind: &str) -> anyhow::Result<Vec<Value>> {
    let inbox = user.get("/notifications?limit=100").await?.expect(StatusCode::OK)?;
    Ok(inbox.body.as_array().cloned().unwrap_or_default().into_iter().filter(|e| e["kind"] == kind).collect())
}

async fn send(user: &Client, room: &str, body: Value) -> anyhow::Result<chat_test_support::Response> {
    user.post(&format!("/rooms/{room}/messages"), body).await
}

/// `unread_mentions` of `room` in `user`'s `GET /rooms`.
async fn unread_mentions(user: &Client, room: &str) -> anyhow::Result<Value> {
    let rooms = user.get("/rooms").await?.expect(StatusCode::OK)?.body;
    let list = rooms.as_array().cloned().or_else(|| rooms["rooms"].as_array().cloned()).unwrap_or_default();
    let r = list.into_iter().find(|r| r["room_id"] == room).ok_or_else(|| anyhow::anyhow!("{room} not listed"))?;
    Ok(r["unread_mentions"].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_member_gets_one_immediate_mention_notification_and_webhook() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = tenant(&stack).await?;
    let hook = webhook(&stack, &t).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob", "carol"]).await?;
    // Carol is online (on gateway 1); Bob is not.
    let mut carol =
        WsClient::connect(&format!("{}/ws/{room}?token={}&user_id=carol", stack.ws_url(1), t.api_key)).await?;
    carol.expect("connection_status").await?;
    // Online is what presence knows: the gateway announces a socket to it just after
    // `connection_status`, and the notifier asks presence who is online.
    let ask = GetOnline { tenant_id: TenantId::parse(t.id.as_str())?, room_id: RoomId::parse(room.as_str())? };
    eventually("presence to know carol is online", || async {
        let online = stack.bus.request(&ask).await.map_err(|e| anyhow::anyhow!("online: {e}"))?;
        Ok(online.online_users.iter().any(|u| u.as_str() == "carol"))
    })
    .await?;

    let plain = alice.send(&room, "no mention").await?;
    let sent = send(&alice, &room, json!({"content": "@bob @carol look", "mentions": ["bob", "carol"]})).await?;
    let sent = sent.expect(StatusCode::CREATED)?.body;
    assert_eq!(sent["mentions"], json!(["bob", "carol"]));
    let live = carol.expect_where("message", |f| f["data"]["id"] == sent["message_id"]).await?;
    assert_eq!(live["data"]["mentions"], json!(["bob", "carol"]));

    // Bob: one mention entry and one mention webhook, naming who, whom, where, which.
    eventually("bob's mention entry", || async { Ok(!entries(&t.user("bob"), "mention").await?.is_empty()) }).await?;
    eventually("the mention webhook", || async {
        Ok(hook.received().iter().any(|r| String::from_utf8_lossy(&r.body).contains("\"type\":\"mention\"")))
    })
    .await?;
    // The coalesced notice of the window (plain message only) comes later; wait for it,
    // then check nothing was doubled.
    eventually("bob's coalesced entry", || async { Ok(!entries(&t.user("bob"), "message").await?.is_empty()) }).await?;
    let mention = entries(&t.user("bob"), "mention").await?;
    assert_eq!(mention.len(), 1, "{mention:?}");
    let body = &mention[0]["body"];
    assert_eq!(body["message_id"], sent["message_id"]);
    assert_eq!(body["mentioned_by"], "alice");
    assert_eq!(body["room_id"], room.as_str());
    let coalesced = entries(&t.user("bob"), "message").await?;
    let listed: Vec<Value> = coalesced
        .iter()
        .flat_map(|e| e["body"]["payload"]["message_ids"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(listed.contains(&plain["message_id"]), "{coalesced:?}");
    assert!(!listed.contains(&sent["message_id"]), "the mention is never folded into the window: {coalesced:?}");
    // Carol was online: no mention entry. Alice sent it: none either.
    assert_eq!(entries(&t.user("carol"), "mention").await?, Vec::<Value>::new());
    assert_eq!(entries(&t.user("alice"), "mention").await?, Vec::<Value>::new());
    stack.stop().await?;
    let hooks: Vec<Value> = hook
        .received()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|b| b["type"] == "mention")
        .collect();
    assert_eq!(hooks.len(), 1, "exactly one mention webhook: {hooks:?}");
    assert_eq!(hooks[0]["user_id"], "bob");
    assert_eq!(hooks[0]["mentioned_by"], "alice");
    assert_eq!(hooks[0]["room_id"], room.as_str());
    assert_eq!(hooks[0]["message_id"], sent["message_id"]);
    assert_eq!(hooks[0]["message"]["content"], "@bob @carol look");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unread_mentions_channel_and_bad_mentions() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = tenant(&stack).await?;
    let (alice, bob) = (t.user("alice"), t.user_on(1, "bob"));
    let room = alice.create_room("group", &["bob", "carol"]).await?;
    assert_eq!(unread_mentions(&bob, &room).await?, 0);

    send(&alice, &room, json!({"content": "hi bob", "mentions": ["bob"]})).await?.expect(StatusCode::CREATED)?;
    alice.send(&room, "no mention").await?;
    assert_eq!(unread_mentions(&bob, &room).await?, 1);
    assert_eq!(unread_mentions(&t.user("carol"), &room).await?, 0);
    // @channel: a plain member is refused, the room's admin (its creator) is not.
    let res = send(&bob, &room, json!({"content": "all of you", "mentions": ["@channel"]})).await?;
    res.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    let ch = send(&alice, &room, json!({"content": "everyone", "mentions": ["@channel"]})).await?;
    assert_eq!(ch.expect(StatusCode::CREATED)?.body["mentions"], json!(["@channel"]));
    assert_eq!(unread_mentions(&bob, &room).await?, 2);
    assert_eq!(unread_mentions(&t.user("carol"), &room).await?, 1);
    assert_eq!(unread_mentions(&alice, &room).await?, 0, "one's own mentions do not count");
    // /api/chat's chat list says the same.
    let chats = t.user("carol").get("/api/chat").await?.expect(StatusCode::OK)?.body;
    let chat = chats["data"]["chats"].as_array().into_iter().flatten().find(|c| c["_id"] == room.as_str()).cloned();
    assert_eq!(chat.map(|c| c["unreadMentions"].clone()), Some(json!(1)), "{chats}");
    // Reading clears them.
    let last = alice.get(&format!("/rooms/{room}")).await?.expect(StatusCode::OK)?.body["last_seq"].clone();
    bob.post(&format!("/rooms/{room}/read"), json!({"seq": last})).await?.expect(StatusCode::OK)?;
    assert_eq!(unread_mentions(&bob, &room).await?, 0);

    // Refused: a non-member, a repeat, a bad id, a wrong type, too many.
    for bad in [json!(["zed"]), json!(["bob", "bob"]), json!(["bad id"]), json!("bob"), json!([1])] {
        let res = send(&alice, &room, json!({"content": "x", "mentions": bad})).await?;
        res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("mentions"))?;
    }
    let many: Vec<String> = (0..51).map(|i| format!("u{i}")).collect();
    let res = send(&alice, &room, json!({"content": "x", "mentions": many})).await?;
    res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("mentions"))?;

    // Other surfaces: /ws, /conversations, /api/chat send mentions, and history reads back.
    let mut ws = WsClient::connect(&format!("{}/ws/{room}?token={}&user_id=carol", stack.ws_url(0), t.api_key)).await?;
    ws.expect("connection_status").await?;
    ws.send(json!({"type": "send_message", "data": {"content": "ws", "mentions": ["alice"]}})).await?;
    assert_eq!(ws.expect("message_sent").await?["data"]["mentions"], json!(["alice"]));
    ws.send(json!({"type": "send_message", "data": {"content": "ws", "mentions": ["@channel"]}})).await?;
    assert_eq!(ws.expect("error").await?["data"]["code"], "FORBIDDEN");
    let mut conv =
        WsClient::connect(&format!("{}/conversations/{room}/?token={}&user_id=bob", stack.ws_url(1), t.api_key))
            .await?;
    conv.send(json!({"action": "send_message", "content": "conv", "mentions": ["alice"]})).await?;
    conv.expect_where("chat_message", |f| f["message"]["mentions"] == json!(["alice"])).await?;
    // Sending counts as reading: checked before alice sends.
    assert_eq!(unread_mentions(&alice, &room).await?, 2, "carol's and bob's");
    let res = t
        .user("alice")
        .post(&format!("/api/chat/{room}/messages"), json!({"content": "chat", "mentions": ["carol"]}))
        .await?;
    assert_eq!(res.expect(StatusCode::CREATED)?.body["data"]["message"]["mentions"], json!(["carol"]));
    let page = alice.get(&format!("/rooms/{room}/messages?limit=100")).await?.expect(StatusCode::OK)?.body;
    let with: Vec<Value> = page.as_array().into_iter().flatten().map(|m| m["mentions"].clone()).collect();
    assert!(with.contains(&json!(["bob"])) && with.contains(&json!(["@channel"])), "{page}");
    stack.stop().await
}
