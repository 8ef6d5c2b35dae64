//! Threads across two gateways: a reply sent over REST (`parent_id`) is a room message
//! (the room's next `seq`) that reaches `/ws`, `/conversations` and the stock
//! socket.io-client with its `parent_id`, and the parent's summary change reaches each
//! of them (`thread_updated`, `thread.updated`, `thread-updated`); the summary reads
//! back on history, single page, sync, `/api/chat` and resume; `?threads=false` leaves
//! replies out; a reply to a reply, to a deleted or missing parent or to another
//! room's message is refused; a deleted reply lowers the count, an edit keeps it;
//! `GET /threads` counts what a participant has not read; replies are sent from
//! `/ws`, `/conversations` and `/api/chat` too. Needs PostgreSQL, Redis, NATS and, for
//! the Socket.IO part, Node.js (see socketio.rs).

use chat_test_support::{TestStack, TestTenant, WsClient};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::socketio::{Node, connected, token};

fn ws_url(stack: &TestStack, gw: usize, room: &str, t: &TestTenant, user: &str, extra: &str) -> String {
    format!("{}/ws/{room}?token={}&user_id={user}&user_name={user}{extra}", stack.ws_url(gw), t.api_key)
}

fn conv_url(stack: &TestStack, gw: usize, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/conversations/{room}/?token={}&user_id={user}", stack.ws_url(gw), t.api_key)
}

async fn tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": chat_test_support::unique("threads-"), "rate_limit_per_sec": 100_000})).await
}

/// A reply in `parent`'s thread, over REST.
async fn reply(user: &chat_test_support::Client, room: &str, parent: &str, content: &str) -> anyhow::Result<Value> {
    let res = user.post(&format!("/rooms/{room}/messages"), json!({"content": content, "parent_id": parent})).await?;
    Ok(res.expect(StatusCode::CREATED)?.body)
}

/// The room's history as `user` sees it, with `query`.
async fn history(user: &chat_test_support::Client, room: &str, query: &str) -> anyhow::Result<Vec<Value>> {
    let res = user.get(&format!("/rooms/{room}/messages?limit=100{query}")).await?.expect(StatusCode::OK)?;
    Ok(res.body.as_array().cloned().unwrap_or_default())
}

fn by_id<'a>(messages: &'a [Value], id: &Value) -> anyhow::Result<&'a Value> {
    messages.iter().find(|m| m["message_id"] == *id).ok_or_else(|| anyhow::anyhow!("{id} not in {messages:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rest_reply_updates_the_parent_everywhere_and_reads_back() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = tenant(&stack).await?;
    let (alice, bob_1) = (t.user("alice"), t.user_on(1, "bob"));
    let room = alice.create_room("group", &["bob", "carol"]).await?;
    let parent = alice.send(&room, "top-level").await?;
    let pid = parent["message_id"].as_str().unwrap_or_default().to_owned();

    // Every dialect's socket on gateway 1 while the reply is sent through gateway 0.
    let mut ws = WsClient::connect(&ws_url(&stack, 1, &room, &t, "carol", "")).await?;
    ws.expect("connection_status").await?;
    let mut conv = WsClient::connect(&conv_url(&stack, 1, &room, &t, "carol")).await?;
    let mut sio = Node::start(json!({"url": stack.base_url(1), "auth": {"token": token(&t, "carol").await?}}))?;
    connected(&mut sio).await?;
    assert_eq!(sio.call("join-chat-room", json!([room])).await?, json!({"ok": true}));

    let r1 = reply(&t.user("bob"), &room, &pid, "first reply").await?;
    assert_eq!(r1["parent_id"], pid.as_str());
    assert_eq!(r1["seq"], parent["seq"].as_i64().unwrap_or(0) + 1, "a reply takes the room's next seq");

    // /ws: the reply as a message with parent_id, then the parent's new summary.
    let m = ws.expect_where("message", |f| f["data"]["id"] == r1["message_id"]).await?;
    assert_eq!(m["data"]["parent_id"], pid.as_str());
    let up = ws.expect("thread_updated").await?;
    assert_eq!(up["data"]["message_id"], pid.as_str(), "{up}");
    assert_eq!(up["data"]["seq"], parent["seq"]);
    assert_eq!(up["data"]["thread"]["reply_count"], 1);
    assert_eq!(up["data"]["thread"]["participants"], json!(["alice", "bob"]));
    // /conversations.
    let m = conv.expect_where("chat_message", |f| f["message"]["id"] == r1["message_id"]).await?;
    assert_eq!(m["message"]["parent_id"], pid.as_str());
    let up = conv.expect("thread.updated").await?;
    assert_eq!(up["message_id"], pid.as_str());
    assert_eq!(up["thread"]["reply_count"], 1);
    // socket.io-client.
    let m = sio.event("new-message", |d| d["_id"] == r1["message_id"]).await?;
    assert_eq!(m["parentId"], pid.as_str());
    let up = sio.event("thread-updated", |d| d["messageId"] == pid.as_str()).await?;
    assert_eq!(up["chatId"], room.as_str());
    assert_eq!(up["thread"]["replyCount"], 1);
    assert_eq!(up["thread"]["participants"], json!(["alice", "bob"]));

    // A second replier on the other gateway; the summary counts both.
    let r2 = reply(&bob_1, &room, &pid, "second reply").await?;
    let up = ws.expect_where("thread_updated", |f| f["data"]["thread"]["reply_count"] == 2).await?;
    assert_eq!(up["data"]["thread"]["last_reply_at"], r2["created_at"]);
    let r3 = reply(&t.user("carol"), &room, &pid, "third reply").await?;
    let up = sio.event("thread-updated", |d| d["thread"]["replyCount"] == 3).await?;
    assert_eq!(up["thread"]["participants"], json!(["alice", "bob", "carol"]));

    // Reads back: history (with and without replies), the thread page, /api/chat, sync.
    let all = history(&alice, &room, "").await?;
    assert_eq!(all.len(), 4, "replies are in the room's history by default");
    let p = by_id(&all, &parent["message_id"])?;
    assert_eq!(p["thread"]["reply_count"], 3, "{p}");
    assert_eq!(p["thread"]["participants"], json!(["alice", "bob", "carol"]));
    assert_eq!(p["thread"]["last_reply_at"], r3["created_at"]);
    assert!(by_id(&all, &r1["message_id"])?.get("thread").is_none(), "a reply has no thread");
    let top = history(&alice, &room, "&threads=false").await?;
    assert_eq!(top.iter().map(|m| m["message_id"].clone()).collect::<Vec<_>>(), vec![parent["message_id"].clone()]);
    alice.get(&format!("/rooms/{room}/messages?threads=maybe")).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("threads"),
    )?;
    let page = t.user_on(1, "carol").get(&format!("/rooms/{room}/messages/{pid}/thread?limit=2")).await?;
    let page = page.expect(StatusCode::OK)?.body;
    assert_eq!(page["parent"]["thread"]["reply_count"], 3);
    let ids: Vec<Value> = page["replies"].as_array().into_iter().flatten().map(|m| m["message_id"].clone()).collect();
    assert_eq!(ids, vec![r1["message_id"].clone(), r2["message_id"].clone()]);
    assert_eq!(page["has_more"], true);
    let next = alice.get(&format!("/rooms/{room}/messages/{pid}/thread?after_seq={}", r2["seq"])).await?;
    let next = next.expect(StatusCode::OK)?.body;
    assert_eq!(next["replies"][0]["message_id"], r3["message_id"]);
    assert_eq!(next["has_more"], false);
    let chat = t.user("alice").get(&format!("/api/chat/{room}/messages/{pid}/thread")).await?;
    let chat = chat.expect(StatusCode::OK)?.body;
    assert_eq!(chat["success"], true);
    assert_eq!(chat["data"]["parent"]["thread"]["replyCount"], 3);
    assert_eq!(chat["data"]["replies"][0]["parentId"], pid.as_str());
    let token = alice.get("/sync").await?.expect(StatusCode::OK)?.str("token")?.to_owned();

    // An edit keeps the count; a deleted reply lowers it, live and on read.
    let edit = bob_1
        .request(reqwest::Method::PATCH, &format!("/rooms/{room}/messages/{}", r2["message_id"].as_str().unwrap_or("")))
        .json(&json!({"content": "second reply, edited"}))
        .send()
        .await?;
    chat_test_support::Response::from(edit).await?.expect(StatusCode::OK)?;
    let deleted =
        t.user("bob").delete(&format!("/rooms/{room}/messages/{}", r1["message_id"].as_str().unwrap_or(""))).await?;
    deleted.expect(StatusCode::OK)?;
    let up = ws.expect_where("thread_updated", |f| f["data"]["thread"]["reply_count"] == 2).await?;
    assert_eq!(up["data"]["thread"]["participants"], json!(["alice", "bob", "carol"]), "bob still has a reply");
    conv.expect_where("thread.updated", |f| f["thread"]["reply_count"] == 2).await?;
    sio.event("thread-updated", |d| d["thread"]["replyCount"] == 2).await?;
    let p = by_id(&history(&alice, &room, "").await?, &parent["message_id"])?.clone();
    assert_eq!(p["thread"]["reply_count"], 2, "the edit kept, the deletion lowered: {p}");
    // Sync since before the deletion returns the parent with its summary now.
    let changed = alice.get(&format!("/sync?since={token}")).await?.expect(StatusCode::OK)?.body;
    let text = changed.to_string();
    assert!(text.contains(&pid) && text.contains("\"reply_count\":2"), "sync: {changed}");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parents_are_refused_with_clear_errors() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let other = alice.create_room("group", &[]).await?;
    let parent = alice.send(&room, "top").await?;
    let pid = parent["message_id"].as_str().unwrap_or_default().to_owned();
    let r = reply(&alice, &room, &pid, "a reply").await?;
    let send = |body: Value| {
        let (alice, room) = (alice.clone(), room.clone());
        async move { alice.post(&format!("/rooms/{room}/messages"), body).await }
    };
    // A reply to a reply.
    let res = send(json!({"content": "nested", "parent_id": r["message_id"]})).await?;
    res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("parent_id"))?;
    assert!(res.body["error"]["message"].as_str().is_some_and(|m| m.contains("do not nest")), "{}", res.body);
    // Another room's message, a missing one, a malformed id.
    let elsewhere = alice.send(&other, "elsewhere").await?;
    let res = send(json!({"content": "x", "parent_id": elsewhere["message_id"]})).await?;
    res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("parent_id"))?;
    let res = send(json!({"content": "x", "parent_id": "msg_0000000000000000000000000000000"})).await?;
    res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("parent_id"))?;
    let res = send(json!({"content": "x", "parent_id": "bad id"})).await?;
    res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("parent_id"))?;
    let res = send(json!({"content": "x", "parent_id": 7})).await?;
    res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("parent_id"))?;
    // A deleted parent.
    let gone = alice.send(&room, "soon deleted").await?;
    alice.delete(&format!("/rooms/{room}/messages/{}", gone["message_id"].as_str().unwrap_or(""))).await?;
    let res = send(json!({"content": "x", "parent_id": gone["message_id"]})).await?;
    res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("parent_id"))?;
    assert!(res.body["error"]["message"].as_str().is_some_and(|m| m.contains("deleted")), "{}", res.body);
    // A reply has no thread page; a stranger reads none.
    let res = alice.get(&format!("/rooms/{room}/messages/{}/thread", r["message_id"].as_str().unwrap_or(""))).await?;
    res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("message_id"))?;
    let res = t.user("mallory").get(&format!("/rooms/{room}/messages/{pid}/thread")).await?;
    res.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    // Nothing refused got in: the parent still counts one reply.
    let all = history(&alice, &room, "").await?;
    assert_eq!(by_id(&all, &parent["message_id"])?["thread"]["reply_count"], 1);
    // /api/chat names the field its own way.
    let res = t
        .user("alice")
        .post(&format!("/api/chat/{room}/messages"), json!({"content": "x", "parentId": r["message_id"]}))
        .await?;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(res.body["field"], "parentId");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn replies_from_sockets_and_unread_threads_and_resume() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob", "carol"]).await?;
    let parent = t.user("alice").send(&room, "top").await?;
    let pid = parent["message_id"].as_str().unwrap_or_default().to_owned();

    // Bob replies from /ws, Carol from /conversations, Alice through /api/chat.
    let mut ws = WsClient::connect(&ws_url(&stack, 0, &room, &t, "bob", "")).await?;
    ws.expect("connection_status").await?;
    ws.send(json!({"type": "send_message", "data": {"content": "ws reply", "parent_id": pid, "local_id": "w1"}}))
        .await?;
    let sent = ws.expect("message_sent").await?;
    assert_eq!(sent["data"]["parent_id"], pid.as_str());
    ws.send(json!({"type": "send_message", "data": {"content": "x", "parent_id": sent["data"]["id"]}})).await?;
    let err = ws.expect("error").await?;
    assert_eq!(err["data"]["code"], "VALIDATION_ERROR", "{err}");
    let mut conv = WsClient::connect(&conv_url(&stack, 1, &room, &t, "carol")).await?;
    conv.send(json!({"action": "send_message", "conversation_id": room, "content": "conv reply", "parent_id": pid}))
        .await?;
    conv.expect_where("chat_message", |f| f["message"]["parent_id"] == pid.as_str()).await?;
    let res = t
        .user("alice")
        .post(&format!("/api/chat/{room}/messages"), json!({"content": "chat reply", "parentId": pid}))
        .await?;
    let res = res.expect(StatusCode::CREATED)?;
    assert_eq!(res.body["data"]["message"]["parentId"], pid.as_str());

    // Alice took part (she wrote the parent): two replies by others are unread for her.
    let threads = t.user("alice").get("/threads").await?.expect(StatusCode::OK)?.body;
    assert_eq!(threads["threads"].as_array().map(Vec::len), Some(1), "{threads}");
    assert_eq!(threads["threads"][0]["parent"]["message_id"], pid.as_str());
    assert_eq!(threads["threads"][0]["unread_count"], 2);
    assert_eq!(threads["threads"][0]["parent"]["thread"]["reply_count"], 3);
    // Reading the thread clears it.
    t.user("alice").get(&format!("/rooms/{room}/messages/{pid}/thread")).await?.expect(StatusCode::OK)?;
    let threads = t.user("alice").get("/threads").await?.expect(StatusCode::OK)?.body;
    assert_eq!(threads["threads"][0]["unread_count"], 0);
    // Dana is no participant.
    let dana = t.user("dana").get("/threads").await?.expect(StatusCode::OK)?.body;
    assert_eq!(dana["threads"], json!([]));

    // Resume: Bob's socket goes away at the newest seq; a reply arrives meanwhile; on
    // resume he gets the reply and the parent's current summary.
    let last = t.user("alice").get(&format!("/rooms/{room}")).await?.expect(StatusCode::OK)?.body["last_seq"].clone();
    ws.close().await?;
    let r = reply(&t.user_on(1, "carol"), &room, &pid, "while bob was away").await?;
    let mut back = WsClient::connect(&ws_url(&stack, 1, &room, &t, "bob", &format!("&last_seq={last}"))).await?;
    let m = back.expect_where("message", |f| f["data"]["id"] == r["message_id"]).await?;
    assert_eq!(m["data"]["parent_id"], pid.as_str());
    let up = back.expect_where("thread_updated", |f| f["data"]["message_id"] == pid.as_str()).await?;
    assert_eq!(up["data"]["thread"]["reply_count"], 4, "{up}");
    stack.stop().await
}

/// Threads and reactions together (issue 23 parts 1 and 2): a reply is reacted to and
/// pinned like any message, and every read path shows both sets of fields — the thread
/// page (with `me` for its reader), `/api/chat`, `GET /threads`, search and sync;
/// deleting the reply takes its reactions and pin and lowers the parent's summary.
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_carries_reactions_and_a_pin_on_every_read_path() -> anyhow::Result<()> {
    use crate::reactions::{THUMBS, call};
    use reqwest::Method;
    let stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let (alice, bob) = (t.user("alice"), t.user("bob"));
    let room = alice.create_room("group", &["bob"]).await?;
    let parent = alice.send(&room, "top-level").await?;
    let pid = parent["message_id"].as_str().unwrap_or_default().to_owned();
    let token = bob.get("/sync").await?.expect(StatusCode::OK)?.str("token")?.to_owned();
    let r1 = reply(&bob, &room, &pid, "a needlework reply").await?;
    let rid = r1["message_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(r1["reactions"], json!([]), "a new reply has no reactions: {r1}");
    call(&alice, Method::PUT, &format!("/rooms/{room}/messages/{rid}/reactions/{THUMBS}"))
        .await?
        .expect(StatusCode::CREATED)?;
    call(&alice, Method::PUT, &format!("/rooms/{room}/pins/{rid}")).await?.expect(StatusCode::OK)?;
    call(&bob, Method::PUT, &format!("/rooms/{room}/messages/{pid}/reactions/:wave:"))
        .await?
        .expect(StatusCode::CREATED)?;

    // The thread page: the reply's reactions as each reader sees them, its pin, and the
    // parent's summary next to the parent's own reactions.
    let page = alice.get(&format!("/rooms/{room}/messages/{pid}/thread")).await?.expect(StatusCode::OK)?.body;
    assert_eq!(
        page["replies"][0]["reactions"],
        json!([{"emoji": "👍", "count": 1, "user_ids": ["alice"], "me": true}])
    );
    assert_eq!(page["replies"][0]["pinned_by"], "alice", "{page}");
    assert_eq!(page["parent"]["thread"]["reply_count"], 1);
    assert_eq!(page["parent"]["reactions"][0]["emoji"], ":wave:", "{page}");
    assert_eq!(page["parent"]["reactions"][0]["me"], false);
    let page = bob.get(&format!("/rooms/{room}/messages/{pid}/thread")).await?.expect(StatusCode::OK)?.body;
    assert_eq!(page["replies"][0]["reactions"][0]["me"], false, "{page}");
    assert_eq!(page["parent"]["reactions"][0]["me"], true, "{page}");
    let chat = alice.get(&format!("/api/chat/{room}/messages/{pid}/thread")).await?.expect(StatusCode::OK)?.body;
    let chat_reply = &chat["data"]["replies"][0];
    assert_eq!(chat_reply["parentId"], pid.as_str(), "{chat}");
    assert_eq!(chat_reply["reactions"], json!([{"emoji": "👍", "count": 1, "userIds": ["alice"], "me": true}]));
    assert_eq!(chat_reply["pinnedBy"], "alice");
    // GET /threads: bob's thread, its parent with its reactions.
    let threads = bob.get("/threads").await?.expect(StatusCode::OK)?.body;
    assert_eq!(threads["threads"][0]["parent"]["message_id"], pid.as_str(), "{threads}");
    assert_eq!(threads["threads"][0]["parent"]["reactions"][0]["me"], true, "{threads}");
    // Search finds the reply with its parent_id and reactions.
    let found = alice.get("/search?q=needlework").await?.expect(StatusCode::OK)?.body;
    let text = found.to_string();
    assert!(text.contains(&pid) && text.contains("👍") && text.contains("\"pinned_by\":\"alice\""), "{found}");
    // Sync since before the reply: the reply with both sets of fields, the parent with
    // its summary and reactions.
    let path = format!("/sync?since={token}");
    chat_test_support::eventually("sync to show the reply and the parent", || async {
        let changes = bob.get(&path).await?.expect(StatusCode::OK)?.body;
        let all: Vec<Value> = changes["rooms"][0]["messages"]
            .as_array()
            .into_iter()
            .chain(changes["rooms"][0]["updated"].as_array())
            .flatten()
            .cloned()
            .collect();
        let reply = all.iter().find(|m| m["message_id"] == rid.as_str());
        let parent = all.iter().find(|m| m["message_id"] == pid.as_str());
        Ok(reply.is_some_and(|r| r["parent_id"] == pid.as_str() && r["reactions"][0]["count"] == 1)
            && parent.is_some_and(|p| p["thread"]["reply_count"] == 1 && p["reactions"][0]["emoji"] == ":wave:"))
    })
    .await?;

    // Deleting the reply takes its reactions and pin, and the parent's thread.
    bob.delete(&format!("/rooms/{room}/messages/{rid}")).await?.expect(StatusCode::OK)?;
    let all = history(&alice, &room, "").await?;
    let gone = by_id(&all, &r1["message_id"])?;
    assert_eq!(gone["reactions"], json!([]), "{gone}");
    assert!(gone.get("pinned_at").is_none(), "{gone}");
    let p = by_id(&all, &parent["message_id"])?;
    assert!(p.get("thread").is_none(), "no reply is left: {p}");
    assert_eq!(p["reactions"][0]["emoji"], ":wave:", "the parent keeps its own reactions: {p}");
    assert_eq!(alice.get(&format!("/rooms/{room}/pins")).await?.expect(StatusCode::OK)?.body["pins"], json!([]));
    stack.stop().await
}
