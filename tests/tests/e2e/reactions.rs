//! Reactions (issue 23) across two gateways: a reaction added over REST reaches `/ws`,
//! `/conversations` and the stock `socket.io-client` with its count, reads back in every
//! dialect's history (with `me` per reader), lists who reacted, and goes on delete;
//! 100 members reacting at once end with the exact count; deleted messages, non-members,
//! other tenants and bad emoji are refused with the documented errors; the socket
//! `add_reaction` / `remove_reaction` frames work and bad ones get error frames;
//! resume and sync show reactions and pins made while away; every shape of a history
//! page reads reactions, pins and membership alike. Needs PostgreSQL, Redis,
//! NATS, and Node.js for the Socket.IO client.

use chat_test_support::{Response, TestStack, TestTenant, WsClient};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::socketio::{Node, connected, token};

/// 👍, as it goes into a path.
pub(crate) const THUMBS: &str = "%F0%9F%91%8D";

pub(crate) async fn busy_tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": chat_test_support::unique("react-"), "rate_limit_per_sec": 100_000})).await
}

pub(crate) fn ws_url(stack: &TestStack, gw: usize, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/ws/{room}?token={}&user_id={user}", stack.ws_url(gw), t.api_key)
}

pub(crate) fn conv_url(stack: &TestStack, gw: usize, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/conversations/{room}/?token={}&user_id={user}", stack.ws_url(gw), t.api_key)
}

/// A `/conversations` socket that presence has (a round trip through its session).
pub(crate) async fn conv_open(url: &str) -> anyhow::Result<WsClient> {
    let mut c = WsClient::connect(url).await?;
    c.send(json!({"action": "fetch_messages", "limit": 1})).await?;
    c.expect("messages_fetched").await?;
    Ok(c)
}

pub(crate) async fn call(c: &chat_test_support::Client, method: Method, path: &str) -> anyhow::Result<Response> {
    Response::from(c.request(method, path).send().await?).await
}

fn id(message: &Value) -> anyhow::Result<String> {
    message["message_id"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no message_id in {message}"))
}

/// The message `id` of a REST history page.
fn find<'a>(page: &'a Value, id: &str) -> &'a Value {
    page.as_array().into_iter().flatten().find(|m| m["message_id"] == id).unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reaction_over_rest_reaches_every_dialect_and_reads_back() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob", "carol", "dave"]).await?;
    let message = t.user("bob").send(&room, "react to me").await?;
    let mid = id(&message)?;

    // bob on /ws and carol on /conversations, both on gateway 1; dave's socket.io-client
    // on gateway 1 too. The reaction is made through gateway 0.
    let mut bob = WsClient::connect(&ws_url(&stack, 1, &room, &t, "bob")).await?;
    bob.expect("connection_status").await?;
    let mut carol = conv_open(&conv_url(&stack, 1, &room, &t, "carol")).await?;
    let mut dave = Node::start(json!({"url": stack.base_url(1), "auth": {"token": token(&t, "dave").await?}}))?;
    connected(&mut dave).await?;
    assert_eq!(dave.call("join-chat-room", json!([room])).await?, json!({"ok": true}));

    let path = format!("/rooms/{room}/messages/{mid}/reactions/{THUMBS}");
    let added = call(&alice, Method::PUT, &path).await?.expect(StatusCode::CREATED)?;
    assert_eq!((added.body["changed"].as_bool(), added.body["count"].as_i64()), (Some(true), Some(1)));
    assert_eq!(added.body["reactions"], json!([{"emoji": "👍", "count": 1, "user_ids": ["alice"], "me": true}]));
    // Again: 200, nothing changes.
    let again = call(&alice, Method::PUT, &path).await?.expect(StatusCode::OK)?;
    assert_eq!((again.body["changed"].as_bool(), again.body["count"].as_i64()), (Some(false), Some(1)));

    let f = bob.expect("reaction_added").await?;
    assert_eq!(
        f["data"],
        json!({"message_id": mid, "seq": message["seq"], "emoji": "👍", "user_id": "alice", "count": 1})
    );
    let f = carol.expect("reaction.added").await?;
    assert_eq!((f["message_id"].as_str(), f["emoji"].as_str()), (Some(mid.as_str()), Some("👍")));
    assert_eq!((f["user_id"].as_str(), f["count"].as_i64()), (Some("alice"), Some(1)));
    let e = dave.event("reaction-added", |d| d["messageId"] == mid.as_str()).await?;
    assert_eq!((e["chatId"].as_str(), e["emoji"].as_str()), (Some(room.as_str()), Some("👍")));
    assert_eq!((e["userId"].as_str(), e["count"].as_i64()), (Some("alice"), Some(1)));

    // A custom emoji from bob over gateway 1: the count per emoji.
    let party = format!("/rooms/{room}/messages/{mid}/reactions/:party_parrot:");
    call(&t.user_on(1, "bob"), Method::PUT, &party).await?.expect(StatusCode::CREATED)?;
    call(&t.user_on(1, "carol"), Method::PUT, &path).await?.expect(StatusCode::CREATED)?;
    bob.expect_where("reaction_added", |f| f["data"]["user_id"] == "carol" && f["data"]["count"] == 2).await?;

    // History, as each reader sees it.
    let page = alice.get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?.body;
    assert_eq!(
        find(&page, &mid)["reactions"],
        json!([
            {"emoji": "👍", "count": 2, "user_ids": ["alice", "carol"], "me": true},
            {"emoji": ":party_parrot:", "count": 1, "user_ids": ["bob"], "me": false},
        ])
    );
    let page = t.user("bob").get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?.body;
    let mine: Vec<bool> =
        find(&page, &mid)["reactions"].as_array().into_iter().flatten().filter_map(|r| r["me"].as_bool()).collect();
    assert_eq!(mine, vec![false, true], "bob reacted with the parrot only");
    // /api/chat renders camelCase.
    let chat = alice.get(&format!("/api/chat/{room}/messages")).await?.expect(StatusCode::OK)?.body;
    let m = chat["data"]["messages"].as_array().and_then(|ms| ms.iter().find(|m| m["_id"] == mid.as_str()).cloned());
    assert_eq!(
        m.map(|m| m["reactions"][0].clone()),
        Some(json!({"emoji": "👍", "count": 2, "userIds": ["alice", "carol"], "me": true}))
    );
    // /ws history and /conversations history carry them too.
    bob.send(json!({"type": "fetch_messages", "data": {}})).await?;
    let h = bob.expect("messages").await?;
    assert_eq!(h["data"]["messages"][0]["reactions"][1]["emoji"], ":party_parrot:", "{h}");
    carol.send(json!({"action": "fetch_messages"})).await?;
    let h = carol.expect("messages_fetched").await?;
    assert_eq!(h["messages"][0]["reactions"][0]["count"], 2, "{h}");
    // Search finds it with its reactions.
    let found = alice.get("/search?q=react").await?.expect(StatusCode::OK)?.body;
    assert!(found.to_string().contains("party_parrot"), "{found}");

    // Who reacted, a page at a time.
    let who = alice.get(&format!("{path}?limit=1")).await?.expect(StatusCode::OK)?.body;
    assert_eq!((who["count"].as_i64(), who["users"][0]["user_id"].as_str()), (Some(2), Some("alice")), "{who}");
    let next = who["next_cursor"].as_str().unwrap_or_default().to_owned();
    let who = alice.get(&format!("{path}?limit=1&cursor={next}")).await?.expect(StatusCode::OK)?.body;
    assert_eq!((who["users"][0]["user_id"].as_str(), who["next_cursor"].is_null()), (Some("carol"), true), "{who}");
    let who = alice.get(&format!("/api/chat/{room}/messages/{mid}/reactions/{THUMBS}")).await?;
    let who = who.expect(StatusCode::OK)?.body;
    assert_eq!(who["data"]["users"].as_array().map(Vec::len), Some(2), "{who}");
    assert!(who["data"]["users"][0]["userId"].is_string(), "{who}");

    // Taken back over /api/chat: every dialect sees the new count.
    let res =
        call(&t.user_on(1, "carol"), Method::DELETE, &format!("/api/chat/{room}/messages/{mid}/reactions/{THUMBS}"))
            .await?
            .expect(StatusCode::OK)?;
    assert_eq!((res.body["data"]["changed"].as_bool(), res.body["data"]["count"].as_i64()), (Some(true), Some(1)));
    let f = bob.expect("reaction_removed").await?;
    assert_eq!((f["data"]["user_id"].as_str(), f["data"]["count"].as_i64()), (Some("carol"), Some(1)));
    carol.expect_where("reaction.removed", |f| f["count"] == 1).await?;
    dave.event("reaction-removed", |d| d["userId"] == "carol" && d["count"] == 1).await?;
    // Again: nothing to take back.
    let res = call(&t.user("carol"), Method::DELETE, &path).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["changed"], false);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_members_reacting_at_once_end_with_the_exact_count() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let users: Vec<String> = (0..100).map(|i| format!("u{i:03}")).collect();
    let others: Vec<&str> = users[1..].iter().map(String::as_str).collect();
    let room = t.user(&users[0]).create_room("group", &others).await?;
    let mid = id(&t.user(&users[0]).send(&room, "count us").await?)?;
    let path = format!("/rooms/{room}/messages/{mid}/reactions/{THUMBS}");
    let reacts = users.iter().enumerate().map(|(i, u)| {
        let client = t.user_on(i % 2, u);
        let path = path.clone();
        async move { call(&client, Method::PUT, &path).await }
    });
    let results = futures_util::future::join_all(reacts).await;
    let mut counts = Vec::new();
    for r in results {
        counts.push(r?.expect(StatusCode::CREATED)?.body["count"].as_i64().unwrap_or(-1));
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=100).collect::<Vec<_>>(), "each reaction saw the count after it, none lost");
    let who = t.user(&users[7]).get(&format!("{path}?limit=100")).await?.expect(StatusCode::OK)?.body;
    assert_eq!((who["count"].as_i64(), who["users"].as_array().map(Vec::len)), (Some(100), Some(100)));
    let page = t.user(&users[7]).get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?.body;
    let r = &find(&page, &mid)["reactions"][0];
    assert_eq!((r["count"].as_i64(), r["me"].as_bool()), (Some(100), Some(true)), "{r}");
    assert_eq!(r["user_ids"].as_array().map(Vec::len), Some(3), "the summary shows the first three");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_message_takes_its_reactions_and_pin_with_it() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let mid = id(&t.user("bob").send(&room, "soon gone").await?)?;
    let mut ws = WsClient::connect(&ws_url(&stack, 0, &room, &t, "bob")).await?;
    ws.expect("connection_status").await?;
    let path = format!("/rooms/{room}/messages/{mid}/reactions/{THUMBS}");
    call(&alice, Method::PUT, &path).await?.expect(StatusCode::CREATED)?;
    call(&alice, Method::PUT, &format!("/rooms/{room}/pins/{mid}")).await?.expect(StatusCode::OK)?;
    t.user("bob").delete(&format!("/rooms/{room}/messages/{mid}")).await?.expect(StatusCode::OK)?;
    // The pin goes with it, and sockets are told.
    let f = ws.expect("message_unpinned").await?;
    assert_eq!((f["data"]["id"].as_str(), f["data"]["unpinned_by"].as_str()), (Some(mid.as_str()), Some("bob")));
    let page = alice.get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?.body;
    let m = find(&page, &mid);
    assert_eq!(m["reactions"], json!([]), "{m}");
    assert!(m.get("pinned_at").is_none(), "{m}");
    assert_eq!(alice.get(&format!("/rooms/{room}/pins")).await?.expect(StatusCode::OK)?.body["pins"], json!([]));
    let who = alice.get(&path).await?.expect(StatusCode::OK)?.body;
    assert_eq!(who["count"], 0, "{who}");
    // Reacting to it or pinning it is a clear 409.
    let refused = call(&t.user("bob"), Method::PUT, &path).await?;
    refused.expect_error(StatusCode::CONFLICT, "CONFLICT", None)?;
    assert!(refused.body.to_string().contains("deleted message"), "{}", refused.body);
    call(&alice, Method::PUT, &format!("/rooms/{room}/pins/{mid}")).await?.expect_error(
        StatusCode::CONFLICT,
        "CONFLICT",
        None,
    )?;
    ws.send(json!({"type": "add_reaction", "data": {"message_id": mid, "emoji": "👍"}})).await?;
    assert_eq!(ws.expect("error").await?["data"]["code"], "CONFLICT");
    stack.stop().await
}

/// An idempotent resend answers the stored message as it is now: reactions (with `me`
/// for the sender) and pin made since the first send, like history shows it.
#[tokio::test(flavor = "multi_thread")]
async fn a_resend_answers_the_message_with_its_reactions_and_pin() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let alice = t.user("alice");
    let bob = t.user("bob");
    let room = alice.create_room("group", &["bob"]).await?;
    let path = format!("/rooms/{room}/messages");
    let body = json!({"content": "react, then I resend", "client_msg_id": "resend-1"});
    let first = bob.post(&path, body.clone()).await?.expect(StatusCode::CREATED)?;
    let mid = id(&first.body)?;
    call(&alice, Method::PUT, &format!("{path}/{mid}/reactions/{THUMBS}")).await?.expect(StatusCode::CREATED)?;
    call(&bob, Method::PUT, &format!("{path}/{mid}/reactions/{THUMBS}")).await?.expect(StatusCode::CREATED)?;
    call(&alice, Method::PUT, &format!("/rooms/{room}/pins/{mid}")).await?.expect(StatusCode::OK)?;

    let again = bob.post(&path, body).await?.expect(StatusCode::OK)?;
    assert_eq!(again.body["message_id"], mid.as_str());
    let r = &again.body["reactions"];
    assert_eq!(r.as_array().map(Vec::len), Some(1), "{}", again.body);
    assert_eq!(
        (r[0]["emoji"].as_str(), r[0]["count"].as_i64(), r[0]["me"].as_bool()),
        (Some("👍"), Some(2), Some(true))
    );
    assert_eq!(again.body["pinned_by"], "alice", "{}", again.body);
    let page = bob.get(&path).await?.expect(StatusCode::OK)?.body;
    let stored = find(&page, &mid);
    assert_eq!((&again.body["reactions"], &again.body["pinned_at"]), (&stored["reactions"], &stored["pinned_at"]));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn outsiders_other_tenants_and_bad_emoji_are_refused() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let other_room = alice.create_room("group", &["bob"]).await?;
    let mid = id(&alice.send(&room, "mine").await?)?;
    let path = format!("/rooms/{room}/messages/{mid}/reactions/{THUMBS}");

    // A user of the tenant outside the room: 403 everywhere.
    let mallory = t.user("mallory");
    call(&mallory, Method::PUT, &path).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    call(&mallory, Method::DELETE, &path).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    mallory.get(&path).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    mallory.get(&format!("/rooms/{room}/pins")).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    // Another tenant: the room does not exist for it.
    let other = busy_tenant(&stack).await?;
    let eve = other.user("alice");
    call(&eve, Method::PUT, &path).await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    eve.get(&path).await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    call(&eve, Method::PUT, &format!("/rooms/{room}/pins/{mid}")).await?.expect_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    )?;
    // A message of another room.
    let elsewhere = format!("/rooms/{other_room}/messages/{mid}/reactions/{THUMBS}");
    call(&alice, Method::PUT, &elsewhere).await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    // Nothing got in.
    let page = alice.get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?.body;
    assert_eq!(find(&page, &mid)["reactions"], json!([]));

    // Bad emoji: 400 with field "emoji", in both REST dialects.
    let long = format!(":{}:", "a".repeat(33));
    for bad in ["abc", ":Party:", "%3Cscript%3E", "%E2%80%8D", long.as_str()] {
        let res = call(&alice, Method::PUT, &format!("/rooms/{room}/messages/{mid}/reactions/{bad}")).await?;
        res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("emoji"))?;
        let res = call(&alice, Method::PUT, &format!("/api/chat/{room}/messages/{mid}/reactions/{bad}")).await?;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.body);
        assert_eq!((res.body["code"].as_str(), res.body["field"].as_str()), (Some("VALIDATION_ERROR"), Some("emoji")));
    }
    // At most 20 reactions per user per message.
    let emoji = [
        "😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘", "🥰", "😗", "😙", "🥲",
        "😚", "🙂", "🤗",
    ];
    for (i, e) in emoji.iter().enumerate() {
        let encoded: String = e.bytes().map(|b| format!("%{b:02X}")).collect();
        let res = call(&alice, Method::PUT, &format!("/rooms/{room}/messages/{mid}/reactions/{encoded}")).await?;
        if i < 20 {
            res.expect(StatusCode::CREATED)?;
        } else {
            res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("emoji"))?;
        }
    }
    // Pins: a plain member of a group may not; either member of a DM may.
    call(&t.user("bob"), Method::PUT, &format!("/rooms/{room}/pins/{mid}")).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;
    let dm = alice.create_room("dm", &["bob"]).await?;
    let dm_mid = id(&alice.send(&dm, "pin me").await?)?;
    let pinned = call(&t.user("bob"), Method::PUT, &format!("/rooms/{dm}/pins/{dm_mid}")).await?;
    assert_eq!(pinned.expect(StatusCode::OK)?.body["pinned_by"], "bob");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_reaction_frames_work_and_bad_ones_get_error_frames() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob", "carol"]).await?;
    let mid = id(&t.user("alice").send(&room, "frames").await?)?;
    let mut bob = WsClient::connect(&ws_url(&stack, 0, &room, &t, "bob")).await?;
    bob.expect("connection_status").await?;
    let mut carol = conv_open(&conv_url(&stack, 1, &room, &t, "carol")).await?;

    // /ws: add, seen by the other dialect on the other gateway; remove.
    bob.send(json!({"type": "add_reaction", "data": {"message_id": mid, "emoji": "🎉"}})).await?;
    let sent = bob.expect("reaction_sent").await?;
    assert_eq!((sent["data"]["changed"].as_bool(), sent["data"]["count"].as_i64()), (Some(true), Some(1)), "{sent}");
    assert_eq!(sent["data"]["reactions"][0]["me"], true);
    let seen = carol.expect("reaction.added").await?;
    assert_eq!((seen["user_id"].as_str(), seen["emoji"].as_str()), (Some("bob"), Some("🎉")));
    // /conversations: add the same emoji, then take it back.
    carol.send(json!({"action": "add_reaction", "message_id": mid, "emoji": "🎉"})).await?;
    let sent = carol.expect("reaction.sent").await?;
    assert_eq!((sent["changed"].as_bool(), sent["count"].as_i64()), (Some(true), Some(2)), "{sent}");
    bob.expect_where("reaction_added", |f| f["data"]["user_id"] == "carol" && f["data"]["count"] == 2).await?;
    carol.send(json!({"action": "remove_reaction", "message_id": mid, "emoji": "🎉"})).await?;
    assert_eq!(carol.expect("reaction.sent").await?["count"], 1);
    bob.expect_where("reaction_removed", |f| f["data"]["user_id"] == "carol" && f["data"]["count"] == 1).await?;
    bob.send(json!({"type": "remove_reaction", "data": {"message_id": mid, "emoji": "🎉"}})).await?;
    let sent = bob.expect("reaction_sent").await?;
    assert_eq!((sent["data"]["changed"].as_bool(), sent["data"]["count"].as_i64()), (Some(true), Some(0)));

    // Bad frames: error frames naming the field, and the socket stays usable.
    for (frame, field) in [
        (json!({"type": "add_reaction", "data": {"message_id": mid, "emoji": "nope"}}), "emoji"),
        (json!({"type": "add_reaction", "data": {"message_id": mid}}), "emoji"),
        (json!({"type": "add_reaction", "data": {"emoji": "👍"}}), "message_id"),
        (json!({"type": "remove_reaction", "data": {"message_id": "a.b", "emoji": "👍"}}), "message_id"),
    ] {
        bob.send(frame.clone()).await?;
        let e = bob.expect("error").await?;
        assert_eq!(e["data"]["code"], "VALIDATION_ERROR", "{frame} -> {e}");
        assert!(e["data"]["message"].as_str().is_some_and(|m| m.contains(field)), "{frame} -> {e}");
    }
    bob.send(json!({"type": "add_reaction", "data": {"message_id": "msg_nothere", "emoji": "👍"}})).await?;
    assert_eq!(bob.expect("error").await?["data"]["code"], "NOT_FOUND");
    for (frame, field) in [
        (json!({"action": "add_reaction", "message_id": mid, "emoji": 7}), "emoji"),
        (json!({"action": "add_reaction", "message_id": mid, "emoji": "x"}), "emoji"),
        (json!({"action": "remove_reaction", "emoji": "👍"}), "message_id"),
        (
            json!({"action": "add_reaction", "conversation_id": "room_other", "message_id": mid, "emoji": "👍"}),
            "conversation_id",
        ),
    ] {
        carol.send(frame.clone()).await?;
        let e = carol.expect("error").await?;
        assert_eq!(
            (e["code"].as_str(), e["field"].as_str()),
            (Some("VALIDATION_ERROR"), Some(field)),
            "{frame} -> {e}"
        );
    }
    bob.send(json!({"type": "add_reaction", "data": {"message_id": mid, "emoji": "👍"}})).await?;
    assert_eq!(bob.expect("reaction_sent").await?["data"]["count"], 1);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_and_sync_show_reactions_and_pins_made_while_away() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let old = id(&alice.send(&room, "before").await?)?;
    let bob = t.user("bob");
    let token = bob.get("/sync").await?.expect(StatusCode::OK)?.str("token")?.to_owned();

    // While bob is away: a new message, reacted to and pinned, and a reaction to the old one.
    let new = alice.send(&room, "while away").await?;
    let new_id = id(&new)?;
    call(&alice, Method::PUT, &format!("/rooms/{room}/messages/{new_id}/reactions/{THUMBS}")).await?;
    call(&alice, Method::PUT, &format!("/rooms/{room}/pins/{new_id}")).await?.expect(StatusCode::OK)?;
    call(&alice, Method::PUT, &format!("/rooms/{room}/messages/{old}/reactions/:wave:")).await?;

    // Resume on /ws from the old message's seq: the replayed message shows its state now.
    let url = format!("{}&last_seq=1", ws_url(&stack, 0, &room, &t, "bob"));
    let mut ws = WsClient::connect(&url).await?;
    let m = ws.expect_where("message", |f| f["data"]["id"] == new_id.as_str()).await?;
    assert_eq!(m["data"]["reactions"], json!([{"emoji": "👍", "count": 1, "user_ids": ["alice"], "me": false}]));
    assert_eq!(m["data"]["pinned_by"], "alice", "{m}");
    assert!(m["data"]["pinned_at"].is_string(), "{m}");
    // /conversations' history shows them likewise.
    let mut conv = WsClient::connect(&conv_url(&stack, 0, &room, &t, "bob")).await?;
    conv.send(json!({"action": "fetch_messages"})).await?;
    let fetched = conv.expect("messages_fetched").await?;
    assert!(fetched.to_string().contains(":wave:"), "{fetched}");
    // Sync since before: the new message with its state, the old one as updated (once
    // every transaction of the changes is behind the sync boundary; the token can be
    // used again).
    let path = format!("/sync?since={token}");
    chat_test_support::eventually("sync to show the changes", || async {
        let changes = bob.get(&path).await?.expect(StatusCode::OK)?.body;
        let room_changes = changes["rooms"].as_array().and_then(|r| r.first().cloned()).unwrap_or_default();
        Ok(room_changes["messages"][0]["pinned_by"] == "alice"
            && room_changes["messages"][0]["reactions"][0]["count"] == 1
            && room_changes["updated"][0]["message_id"] == old.as_str()
            && room_changes["updated"][0]["reactions"][0]["emoji"] == ":wave:")
    })
    .await?;
    stack.stop().await
}

/// Every shape of a history page (`before_seq` only, both bounds, `after_seq` only, and
/// `/conversations`' `fetch_messages` with and without `before_id`) reads one statement
/// with the page's reactions (`me` per reader) and pins, and the reader's membership:
/// the same message reads the same through each; a non-member gets `403`, another
/// tenant's reader `404`, and a member's empty page `200 []`.
#[tokio::test(flavor = "multi_thread")]
async fn every_page_shape_reads_reactions_pins_and_membership_alike() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let other = busy_tenant(&stack).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let first = t.user("bob").send(&room, "first").await?;
    let target = t.user("bob").send(&room, "the decorated one").await?;
    let last = t.user("bob").send(&room, "last").await?;
    let (s1, s3) = (first["seq"].as_i64().unwrap_or(0), last["seq"].as_i64().unwrap_or(0));
    let mid = id(&target)?;
    call(&alice, Method::PUT, &format!("/rooms/{room}/messages/{mid}/reactions/{THUMBS}"))
        .await?
        .expect(StatusCode::CREATED)?;
    call(&t.user("bob"), Method::PUT, &format!("/rooms/{room}/messages/{mid}/reactions/:wave:"))
        .await?
        .expect(StatusCode::CREATED)?;
    call(&alice, Method::PUT, &format!("/rooms/{room}/pins/{mid}")).await?.expect(StatusCode::OK)?;
    let expected = json!([
        {"emoji": "👍", "count": 1, "user_ids": ["alice"], "me": true},
        {"emoji": ":wave:", "count": 1, "user_ids": ["bob"], "me": false},
    ]);

    let shapes =
        [format!("before_seq={s3}"), format!("after_seq={s1}&before_seq={s3}"), format!("after_seq={s1}&limit=1")];
    for query in &shapes {
        let page = alice.get(&format!("/rooms/{room}/messages?{query}")).await?.expect(StatusCode::OK)?.body;
        let seqs: Vec<i64> = page.as_array().into_iter().flatten().filter_map(|m| m["seq"].as_i64()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{query}: oldest first: {seqs:?}");
        let m = find(&page, &mid);
        assert_eq!(m["reactions"], expected, "{query}: {page}");
        assert_eq!(m["pinned_by"], "alice", "{query}: {m}");
        assert!(m["pinned_at"].is_string(), "{query}: {m}");
        // Bob reads his own reaction as his.
        let page = t.user("bob").get(&format!("/rooms/{room}/messages?{query}")).await?.expect(StatusCode::OK)?.body;
        let mine: Vec<bool> =
            find(&page, &mid)["reactions"].as_array().into_iter().flatten().filter_map(|r| r["me"].as_bool()).collect();
        assert_eq!(mine, vec![false, true], "{query}: {page}");
        // Outsiders are refused on every shape; a member's empty page is empty.
        t.user("mallory").get(&format!("/rooms/{room}/messages?{query}")).await?.expect_error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            None,
        )?;
        other.user("alice").get(&format!("/rooms/{room}/messages?{query}")).await?.expect_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
        )?;
    }
    let empty = alice.get(&format!("/rooms/{room}/messages?after_seq={s3}")).await?.expect(StatusCode::OK)?.body;
    assert_eq!(empty, json!([]));

    // /conversations pages backwards, newest first, with and without before_id.
    let mut conv = WsClient::connect(&conv_url(&stack, 0, &room, &t, "alice")).await?;
    for frame in [json!({"action": "fetch_messages"}), json!({"action": "fetch_messages", "before_id": id(&last)?})] {
        conv.send(frame.clone()).await?;
        let fetched = conv.expect("messages_fetched").await?;
        let messages = fetched["messages"].as_array().cloned().unwrap_or_default();
        let seqs: Vec<i64> = messages.iter().filter_map(|m| m["seq"].as_i64()).collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{frame}: newest first: {seqs:?}");
        let m = messages.iter().find(|m| m["id"] == mid.as_str()).cloned().unwrap_or(Value::Null);
        assert_eq!(m["reactions"], expected, "{frame}: {fetched}");
        assert_eq!(m["pinned_by"], "alice", "{frame}: {m}");
    }
    stack.stop().await
}
