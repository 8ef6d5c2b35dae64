//! Blocks (`PUT|DELETE /blocks/{user_id}`, `GET /blocks`) across two gateways: a blocked
//! user's DM send is refused with `403 FORBIDDEN` over REST and over `/ws`, opening a new
//! DM with the blocker is refused, group rooms are not affected, unblocking restores
//! both, `GET /blocks` lists, and bad input is `400`; `rest-chat.md` clients do the same
//! at `/api/chat/blocks`. In group rooms a blocked user's typing and presence never
//! reach the blocker, and with `hide_in_groups` neither do their messages, live (on
//! `/ws`, `/conversations` and Socket.IO, the blocked user on the other gateway) or in
//! history; unblocking restores them. Needs PostgreSQL, Redis, NATS and, for the
//! Socket.IO client, Node.js.

use chat_test_support::{TestStack, TestTenant, WsClient};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::socketio::{Node, connected, token};

fn ws_url(stack: &TestStack, gw: usize, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/ws/{room}?token={}&user_id={user}&user_name={user}", stack.ws_url(gw), t.api_key)
}

async fn put(client: &chat_test_support::Client, path: &str) -> anyhow::Result<chat_test_support::Response> {
    chat_test_support::Response::from(client.request(Method::PUT, path).send().await?).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_user_cannot_send_into_or_open_a_dm_until_unblocked() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack.tenant_with(json!({"name": "blocks", "rate_limit_per_sec": 100_000})).await?;
    let (alice, alice_1) = (t.user("alice"), t.user_on(1, "alice"));
    let (bob, bob_1) = (t.user("bob"), t.user_on(1, "bob"));
    let dm = alice.create_room("dm", &["bob"]).await?;
    let group = alice.create_room("group", &["bob", "carol"]).await?;
    bob.send(&dm, "before the block").await?;

    // Alice blocks Bob on gateway 1; again is the same block.
    let first = put(&alice_1, "/blocks/bob").await?.expect(StatusCode::OK)?;
    assert_eq!(first.body["user_id"], "bob");
    let again = put(&alice, "/blocks/bob").await?.expect(StatusCode::OK)?;
    assert_eq!(again.body["created_at"], first.body["created_at"], "blocking again keeps the first block");
    let listed = alice.get("/blocks").await?.expect(StatusCode::OK)?;
    assert_eq!(listed.body["blocks"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed.body["blocks"][0]["user_id"], "bob");
    assert_eq!(bob.get("/blocks").await?.expect(StatusCode::OK)?.body["blocks"], json!([]), "only the blocker's");

    // Bob's DM sends are refused on both gateways, over REST...
    for client in [&bob, &bob_1] {
        let res = client.post(&format!("/rooms/{dm}/messages"), json!({"content": "let me in"})).await?;
        res.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
        assert!(res.body["error"]["message"].as_str().is_some_and(|m| m.contains("blocked")), "{}", res.body);
    }
    // ... and over /ws.
    let mut ws = WsClient::connect(&ws_url(&stack, 1, &dm, &t, "bob")).await?;
    ws.expect("connection_status").await?;
    ws.send(json!({"type": "send_message", "data": {"content": "over ws", "local_id": "b-1"}})).await?;
    let err = ws.expect("error").await?;
    assert_eq!(err["data"]["code"], "FORBIDDEN", "{err}");
    assert_eq!(err["data"]["local_id"], "b-1");
    // Nothing of Bob's got in; the blocker still can write, and group rooms are unaffected.
    let history = alice.get(&format!("/rooms/{dm}/messages")).await?.expect(StatusCode::OK)?;
    let contents: Vec<_> = history.body.as_array().into_iter().flatten().map(|m| m["content"].clone()).collect();
    assert_eq!(contents, vec![json!("before the block")]);
    alice.send(&dm, "the blocker may write").await?;
    bob.send(&group, "groups are not affected").await?;

    // Opening a new DM with the blocker is refused.
    put(&t.user("dana"), "/blocks/erin").await?.expect(StatusCode::OK)?;
    let res = t.user_on(1, "erin").post("/rooms", json!({"type": "dm", "members": ["dana"]})).await?;
    res.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    // Unblocking lets it be opened.
    t.user("dana").delete("/blocks/erin").await?.expect(StatusCode::OK)?;
    t.user_on(1, "erin").create_room("dm", &["dana"]).await?;

    // Unblocking restores Bob's sends, REST and /ws; unblocking again is fine.
    let res = alice.delete("/blocks/bob").await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["success"], true);
    alice_1.delete("/blocks/bob").await?.expect(StatusCode::OK)?;
    assert_eq!(alice.get("/blocks").await?.expect(StatusCode::OK)?.body["blocks"], json!([]));
    bob_1.send(&dm, "after the unblock").await?;
    ws.send(json!({"type": "send_message", "data": {"content": "ws again", "local_id": "b-2"}})).await?;
    let ack = ws.expect("message_sent").await?;
    assert_eq!(ack["data"]["local_id"], "b-2");

    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_block_requests_are_400() -> anyhow::Result<()> {
    let stack = TestStack::builder().start().await?;
    let t = stack.tenant().await?;
    let alice = t.user("alice");
    put(&alice, "/blocks/alice").await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("user_id"))?;
    put(&alice, "/blocks/bad!id").await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("user_id"))?;
    alice.delete("/blocks/bad!id").await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("user_id"))?;
    put_json(&alice, "/blocks/bob", json!({"hide_in_groups": "yes"})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("hide_in_groups"),
    )?;
    put_json(&alice, "/blocks/bob", json!([true])).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("body"),
    )?;
    assert_eq!(alice.get("/blocks").await?.expect(StatusCode::OK)?.body["blocks"], json!([]));
    // `null` is absent: a new block does not hide.
    let made = put_json(&alice, "/blocks/bob", json!({"hide_in_groups": null})).await?.expect(StatusCode::OK)?;
    assert_eq!(made.body["hide_in_groups"], false);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_chat_clients_block_through_api_chat() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack.tenant_with(json!({"name": "chat-blocks", "rate_limit_per_sec": 100_000})).await?;
    let bearer = |gw: usize, token: &str| {
        chat_test_support::Client::raw(&stack.base_url(gw)).with_header("Authorization", &format!("Bearer {token}"))
    };
    let token = t.user("alice").post("/tokens", json!({})).await?.expect(StatusCode::CREATED)?.str("token")?.to_owned();
    let (alice, alice_1) = (bearer(0, &token), bearer(1, &token));
    let dm = t.user("alice").create_room("dm", &["bob"]).await?;

    let made = put(&alice, "/api/chat/blocks/bob").await?.expect(StatusCode::OK)?;
    assert_eq!((made.body["success"].as_bool(), made.body["data"]["userId"].as_str()), (Some(true), Some("bob")));
    assert!(made.body["data"]["blockedAt"].is_string(), "{}", made.body);
    // The same block as the canonical API's, on either gateway; Bob's DM sends are refused.
    let listed = alice_1.get("/api/chat/blocks").await?.expect(StatusCode::OK)?;
    assert_eq!(listed.body["data"]["blocks"][0]["userId"], "bob");
    assert_eq!(t.user("alice").get("/blocks").await?.expect(StatusCode::OK)?.body["blocks"][0]["user_id"], "bob");
    let res = t.user("bob").post(&format!("/rooms/{dm}/messages"), json!({"content": "hi"})).await?;
    res.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;

    // Bad ids and yourself: the dialect's 400; unblocking answers whether there was one.
    let own = put(&alice, "/api/chat/blocks/alice").await?;
    assert_eq!(
        (own.status, own.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")),
        "{}",
        own.body
    );
    let bad = alice.delete("/api/chat/blocks/bad!id").await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    let lifted = alice_1.delete("/api/chat/blocks/bob").await?.expect(StatusCode::OK)?;
    assert_eq!(lifted.body["data"], json!({"userId": "bob", "removed": true}));
    let again = alice.delete("/api/chat/blocks/bob").await?.expect(StatusCode::OK)?;
    assert_eq!(again.body["data"]["removed"], false);
    assert_eq!(alice.get("/api/chat/blocks").await?.expect(StatusCode::OK)?.body["data"]["blocks"], json!([]));
    t.user("bob").send(&dm, "after the unblock").await?;
    stack.stop().await
}

async fn put_json(
    client: &chat_test_support::Client,
    path: &str,
    body: Value,
) -> anyhow::Result<chat_test_support::Response> {
    chat_test_support::Response::from(client.request(Method::PUT, path).json(&body).send().await?).await
}

fn conv_url(stack: &TestStack, gw: usize, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/conversations/{room}/?token={}&user_id={user}", stack.ws_url(gw), t.api_key)
}

/// A `/ws` socket whose session answered once (registered in the room).
async fn ws_open(url: &str) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::connect(url).await?;
    let status = ws.expect("connection_status").await?;
    ws.send(json!({"type": "ping"})).await?;
    ws.expect("pong").await?;
    Ok((ws, status))
}

/// Whether any frame or line mentions `needle` (a content).
fn mentions(seen: &[Value], needle: &str) -> bool {
    seen.iter().any(|f| f.to_string().contains(needle))
}

/// Whether a frame (any dialect's) or Socket.IO line is Bob's message, typing or presence
/// (receipts of his may reach the blocker; they are not what a block hides).
fn bobs(f: &Value, kinds: &[&str]) -> bool {
    let kind = match f["type"].as_str() {
        Some("event") => f["event"].as_str().unwrap_or(""),
        Some(kind) => kind,
        None => "",
    };
    kinds.contains(&kind) && f.to_string().contains("\"bob\"")
}

const ACTIVITY: [&str; 9] = [
    "message",
    "typing",
    "user_joined",
    "user_left",
    "chat_message",
    "user_status",
    "new-message",
    "user-typing",
    "user_typing",
];
const TYPING: [&str; 2] = ["typing", "user-typing"];

fn contents(history: &chat_test_support::Response) -> Vec<String> {
    history.body.as_array().into_iter().flatten().filter_map(|m| m["content"].as_str().map(str::to_owned)).collect()
}

/// Carol (on gateway 0, as the blocker's sockets) sends `marker`; once she and the
/// blocker's three sockets have it, everything the room sent before it on gateway 0
/// has been offered to them (one fan-out task per room and gateway, in order). Returns
/// what each of the blocker's sockets saw before the marker.
async fn after_marker(
    carol: &chat_test_support::Client,
    room: &str,
    marker: &str,
    ws: &mut WsClient,
    conv: &mut WsClient,
    sio: &mut Node,
) -> anyhow::Result<(Vec<Value>, Vec<Value>, Vec<Value>)> {
    ws.seen.clear();
    conv.seen.clear();
    let sio_from = sio.seen.len();
    carol.send(room, marker).await?;
    ws.expect_where("message", |f| f["data"]["content"] == marker).await?;
    conv.expect_where("chat_message", |f| f["message"]["content"] == marker).await?;
    sio.event("new-message", |e| e.to_string().contains(marker)).await?;
    Ok((std::mem::take(&mut ws.seen), std::mem::take(&mut conv.seen), sio.seen[sio_from..].to_vec()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_users_messages_typing_and_presence_are_hidden_from_the_blocker_in_groups() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t =
        stack.tenant_with(json!({"name": chat_test_support::unique("blk-"), "rate_limit_per_sec": 100_000})).await?;
    let alice = t.user("alice");
    let carol = t.user("carol");
    let bob_1 = t.user_on(1, "bob");
    let room = carol.create_room("group", &["alice", "bob"]).await?;
    bob_1.send(&room, "bob-before-block").await?;
    bob_1.send(&room, "bob says quokkazebra").await?;
    let hits = |res: &chat_test_support::Response| res.body["results"].as_array().map_or(0, Vec::len);

    // Alice blocks Bob and hides him in groups (on gateway 1); a plain PUT keeps the choice.
    let made = put_json(&t.user_on(1, "alice"), "/blocks/bob", json!({"hide_in_groups": true})).await?;
    assert_eq!(made.expect(StatusCode::OK)?.body["hide_in_groups"], true);
    let again = put(&alice, "/blocks/bob").await?.expect(StatusCode::OK)?;
    assert_eq!(again.body["hide_in_groups"], true, "a PUT without a body keeps the block's choice");
    let listed = alice.get("/blocks").await?.expect(StatusCode::OK)?;
    assert_eq!(listed.body["blocks"][0]["hide_in_groups"], true, "{}", listed.body);

    // Alice on every dialect on gateway 0, Carol there too; Bob comes online on gateway 1.
    let (mut ws, _) = ws_open(&ws_url(&stack, 0, &room, &t, "alice")).await?;
    let mut conv = WsClient::connect(&conv_url(&stack, 0, &room, &t, "alice")).await?;
    conv.send(json!({"action": "fetch_messages", "limit": 50})).await?;
    let fetched = conv.expect("messages_fetched").await?;
    assert!(
        !mentions(std::slice::from_ref(&fetched), "bob-before-block"),
        "/conversations history hides Bob: {fetched}"
    );
    let mut sio = Node::start(json!({"url": stack.base_url(0), "auth": {"token": token(&t, "alice").await?}}))?;
    connected(&mut sio).await?;
    assert_eq!(sio.call("join-chat-room", json!([room])).await?, json!({"ok": true}));
    let (mut carol_ws, _) = ws_open(&ws_url(&stack, 0, &room, &t, "carol")).await?;
    let (mut bob_ws, _) = ws_open(&ws_url(&stack, 1, &room, &t, "bob")).await?;

    // Bob comes online, types and sends: Carol gets all three...
    bob_ws.send(json!({"type": "typing", "data": {"is_typing": true}})).await?;
    let sent = bob_1.send(&room, "bob-hidden-live").await?;
    let id = sent["message_id"].as_str().or(sent["id"].as_str()).unwrap_or_default().to_owned();
    bob_1
        .request(Method::PATCH, &format!("/rooms/{room}/messages/{id}"))
        .json(&json!({"content": "bob-hidden-edit"}))
        .send()
        .await?
        .error_for_status()?;
    carol_ws.take_where("user_joined", |f| f["data"]["user_id"] == "bob").await?;
    carol_ws.take_where("typing", |f| f["data"]["user_id"] == "bob").await?;
    carol_ws.take_where("message", |f| f["data"]["content"] == "bob-hidden-live").await?;
    carol_ws.take_where("message_updated", |f| f["data"]["content"] == "bob-hidden-edit").await?;
    // ... and none of it reaches any of Alice's sockets.
    let (w, c, s) = after_marker(&carol, &room, "marker-1", &mut ws, &mut conv, &mut sio).await?;
    for (seen, dialect) in [(&w, "/ws"), (&c, "/conversations"), (&s, "Socket.IO")] {
        assert!(!seen.iter().any(|f| bobs(f, &ACTIVITY)), "{dialect} shows Bob to the blocker: {seen:?}");
        assert!(!mentions(seen, "bob-hidden-edit"), "{dialect} shows Bob's edit to the blocker: {seen:?}");
    }
    // Who is online, as a new socket of Alice's is told, leaves Bob out.
    let (extra, status) = ws_open(&ws_url(&stack, 0, &room, &t, "alice")).await?;
    let online = status["data"]["online_users"].as_array().cloned().unwrap_or_default();
    assert!(online.contains(&json!("carol")) && !online.contains(&json!("bob")), "{status}");
    extra.close().await?;

    // History: Alice's leaves Bob out (REST and /api/chat), Carol's has him.
    let mine = contents(&alice.get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?);
    assert!(!mine.iter().any(|c| c.starts_with("bob-")) && mine.contains(&"marker-1".to_owned()), "{mine:?}");
    let theirs = contents(&carol.get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?);
    assert!(theirs.contains(&"bob-hidden-edit".to_owned()), "{theirs:?}");
    let older = alice.get(&format!("/rooms/{room}/messages?before_seq=1000")).await?.expect(StatusCode::OK)?;
    assert!(!contents(&older).iter().any(|c| c.starts_with("bob-")), "{}", older.body);
    let chat_token = token(&t, "alice").await?;
    let chat = chat_test_support::Client::raw(&stack.base_url(1))
        .with_header("Authorization", &format!("Bearer {chat_token}"))
        .get(&format!("/api/chat/{room}/messages"))
        .await?
        .expect(StatusCode::OK)?;
    assert!(!mentions(std::slice::from_ref(&chat.body), "bob-"), "/api/chat history hides Bob: {}", chat.body);
    // Search, too.
    let found = alice.get("/search?q=quokkazebra").await?.expect(StatusCode::OK)?;
    assert_eq!(hits(&found), 0, "the blocker's search hides Bob: {}", found.body);
    let found = carol.get("/search?q=quokkazebra").await?.expect(StatusCode::OK)?;
    assert_eq!(hits(&found), 1, "{}", found.body);

    // Without hide_in_groups his messages come through again (once the change reaches
    // gateway 0), but his typing still does not.
    put_json(&alice, "/blocks/bob", json!({"hide_in_groups": false})).await?.expect(StatusCode::OK)?;
    let mut shown = false;
    for i in 0..100 {
        bob_1.send(&room, &format!("bob-shown-{i}")).await?;
        let (w, _, _) = after_marker(&carol, &room, &format!("marker-2-{i}"), &mut ws, &mut conv, &mut sio).await?;
        if mentions(&w, &format!("bob-shown-{i}")) {
            shown = true;
            break;
        }
    }
    assert!(shown, "with hide_in_groups off Bob's messages reach the blocker");
    bob_ws.send(json!({"type": "typing", "data": {"is_typing": false}})).await?;
    carol_ws.take_where("typing", |f| f["data"]["user_id"] == "bob" && f["data"]["is_typing"] == false).await?;
    let (w, c, s) = after_marker(&carol, &room, "marker-3", &mut ws, &mut conv, &mut sio).await?;
    for (seen, dialect) in [(&w, "/ws"), (&c, "/conversations"), (&s, "Socket.IO")] {
        assert!(!seen.iter().any(|f| bobs(f, &TYPING)), "{dialect} shows Bob typing: {seen:?}");
    }
    let mine = contents(&alice.get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?);
    assert!(mine.contains(&"bob-before-block".to_owned()), "history shows him again: {mine:?}");
    let found = alice.get("/search?q=quokkazebra").await?.expect(StatusCode::OK)?;
    assert_eq!(hits(&found), 1, "and search: {}", found.body);

    // Unblocked: his typing reaches Alice again on every dialect.
    alice.delete("/blocks/bob").await?.expect(StatusCode::OK)?;
    let mut typing = false;
    for i in 0..100 {
        bob_ws.send(json!({"type": "typing", "data": {"is_typing": i % 2 == 0}})).await?;
        carol_ws
            .take_where("typing", |f| f["data"]["user_id"] == "bob" && f["data"]["is_typing"] == (i % 2 == 0))
            .await?;
        let (w, c, s) = after_marker(&carol, &room, &format!("marker-4-{i}"), &mut ws, &mut conv, &mut sio).await?;
        let saw = |seen: &[Value]| seen.iter().any(|f| bobs(f, &TYPING));
        if saw(&w) && saw(&c) && saw(&s) {
            typing = true;
            break;
        }
    }
    assert!(typing, "unblocked, Bob's typing reaches the blocker on every dialect");
    drop(sio);
    stack.stop().await
}

/// What a chain of `GET /sync` answers held for one room: new contents, updated
/// contents, and the last answer's `has_more` / `from_seq` / first new `seq` for it.
#[derive(Default)]
struct Synced {
    token: Option<String>,
    new: Vec<String>,
    updated: Vec<String>,
    /// `(has_more, from_seq, seq of the first new message)` of each answer with new messages.
    pages: Vec<(bool, i64, i64)>,
}

impl Synced {
    async fn sync(&mut self, user: &chat_test_support::Client, room: &str, limit: u32) -> anyhow::Result<()> {
        let path = match &self.token {
            None => format!("/sync?limit_per_room={limit}"),
            Some(t) => format!("/sync?since={t}&limit_per_room={limit}"),
        };
        let res = user.get(&path).await?.expect(StatusCode::OK)?;
        self.token = Some(res.str("token")?.to_owned());
        for r in res.body["rooms"].as_array().into_iter().flatten().filter(|r| r["room"]["room_id"] == room) {
            let text = |m: &Value| m["content"].as_str().unwrap_or_default().to_owned();
            let new: Vec<String> = r["messages"].as_array().into_iter().flatten().map(text).collect();
            if let Some(first) = r["messages"][0]["seq"].as_i64() {
                self.pages.push((r["has_more"] == true, r["from_seq"].as_i64().unwrap_or(-1), first));
            }
            self.new.extend(new);
            self.updated.extend(r["updated"].as_array().into_iter().flatten().map(text));
        }
        Ok(())
    }

    /// Syncs until `new` and `updated` hold what is wanted (a change can come one
    /// sync later while another transaction is open), bounded.
    async fn until(
        &mut self,
        user: &chat_test_support::Client,
        room: &str,
        new: &str,
        updated: &str,
    ) -> anyhow::Result<()> {
        for _ in 0..100 {
            self.sync(user, room, 50).await?;
            if self.new.iter().any(|c| c == new) && self.updated.iter().any(|c| c == updated) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        anyhow::bail!("{new} and {updated} never came through sync: {:?} {:?}", self.new, self.updated)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_leaves_a_hidden_users_messages_and_edits_out_of_the_blockers_answers() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack
        .tenant_with(json!({"name": chat_test_support::unique("blk-sync-"), "rate_limit_per_sec": 100_000}))
        .await?;
    let (alice, carol, bob_1) = (t.user("alice"), t.user("carol"), t.user_on(1, "bob"));
    let room = carol.create_room("group", &["alice", "bob"]).await?;
    let c1 = carol.send(&room, "c1").await?;
    let b1 = bob_1.send(&room, "b1").await?;
    bob_1.send(&room, "b2").await?;
    put_json(&t.user_on(1, "alice"), "/blocks/bob", json!({"hide_in_groups": true})).await?.expect(StatusCode::OK)?;

    // A fresh start, one message per room: Carol gets b2 and more (once no other
    // transaction older than b2 is open: a sync stops below those); then Alice's newest
    // visible one is c1, and it is all she may see (has_more counts what she sees).
    let mut theirs = Synced::default();
    for _ in 0..100 {
        theirs = Synced::default();
        theirs.sync(&carol, &room, 1).await?;
        if theirs.new == ["b2"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(theirs.pages, [(true, 0, 3)], "{:?}", theirs.new);
    let mut mine = Synced::default();
    mine.sync(&alice, &room, 1).await?;
    assert_eq!(mine.new, ["c1"], "the blocker's fresh sync hides Bob");
    assert_eq!(mine.pages, [(false, 0, 1)], "has_more and from_seq of what she sees");

    // Meanwhile: Bob sends and edits, Carol sends and edits.
    let edit = |who: &chat_test_support::Client, id: &Value, content: &str| {
        let path = format!("/rooms/{room}/messages/{}", id.as_str().unwrap_or_default());
        let req = who.request(Method::PATCH, &path).json(&json!({"content": content}));
        async move { anyhow::Ok(req.send().await?.error_for_status()?) }
    };
    bob_1.send(&room, "b3").await?;
    edit(&bob_1, &b1["message_id"], "b1-edited").await?;
    let c2 = carol.send(&room, "c2").await?;
    edit(&carol, &c1["message_id"], "c1-edited").await?;

    // Carol's syncs have all of it; Alice's have Carol's changes only (Bob's came
    // before Carol's, so they are in the same answers or earlier ones).
    theirs.until(&carol, &room, "c2", "c1-edited").await?;
    assert!(theirs.new.contains(&"b3".to_owned()) && theirs.updated.contains(&"b1-edited".to_owned()));
    mine.until(&alice, &room, "c2", "c1-edited").await?;
    assert_eq!(mine.new, ["c1", "c2"], "no new message of Bob's");
    assert_eq!(mine.updated, ["c1-edited"], "no edit of Bob's");
    let c2_seq = c2["seq"].as_i64().unwrap_or_default();
    assert_eq!(mine.pages.last(), Some(&(false, c2_seq - 1, c2_seq)), "from_seq: just below her first new one");
    // What sync hid, history hides too: paging the gap finds nothing.
    let gap = alice.get(&format!("/rooms/{room}/messages?after_seq=1&before_seq={c2_seq}")).await?;
    assert_eq!(contents(&gap.expect(StatusCode::OK)?), Vec::<String>::new());

    // Unhidden, Bob's next message comes through Alice's sync.
    put_json(&alice, "/blocks/bob", json!({"hide_in_groups": false})).await?.expect(StatusCode::OK)?;
    bob_1.send(&room, "b4").await?;
    carol.send(&room, "c3").await?;
    edit(&carol, &c2["message_id"], "c2-edited").await?;
    mine.until(&alice, &room, "c3", "c2-edited").await?;
    assert!(mine.new.contains(&"b4".to_owned()), "{:?}", mine.new);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_user_is_on_none_of_the_blockers_online_lists() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack
        .tenant_with(json!({"name": chat_test_support::unique("blk-online-"), "rate_limit_per_sec": 100_000}))
        .await?;
    let (alice, carol) = (t.user("alice"), t.user("carol"));
    let room = carol.create_room("group", &["alice", "bob"]).await?;
    // A plain block (no hide_in_groups): presence is hidden whatever the choice.
    put(&alice, "/blocks/bob").await?.expect(StatusCode::OK)?;

    // Bob and Carol online on gateway 1, Alice on gateway 0.
    let (_bob_ws, _) = ws_open(&ws_url(&stack, 1, &room, &t, "bob")).await?;
    let (_carol_ws, _) = ws_open(&ws_url(&stack, 1, &room, &t, "carol")).await?;
    let (mut alice_ws, _) = ws_open(&ws_url(&stack, 0, &room, &t, "alice")).await?;
    let online = format!("/api/v1/rooms/{room}/online");
    let users = |res: &chat_test_support::Response| res.body["data"]["online_users"].clone();
    // Others see Bob online (so presence has him).
    chat_test_support::eventually("Bob online for Carol", || async {
        Ok(users(&carol.get(&online).await?.expect(StatusCode::OK)?) == json!(["alice", "bob", "carol"]))
    })
    .await?;

    // REST: the room's list, its participants and the tenant's list leave Bob out for Alice.
    for gw in [0, 1] {
        let res = t.user_on(gw, "alice").get(&online).await?.expect(StatusCode::OK)?;
        assert_eq!(users(&res), json!(["alice", "carol"]), "{}", res.body);
        assert_eq!(res.body["data"]["total_online"], 2);
    }
    let participants = |who: &'static str| {
        let c = t.user(who);
        let path = format!("/api/v1/rooms/{room}/participants");
        async move { c.get(&path).await?.expect(StatusCode::OK) }
    };
    let bob_online = |res: &chat_test_support::Response| {
        res.body["data"]["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["user_id"] == "bob")
            .map(|p| p["online"].clone())
    };
    let mine = participants("alice").await?;
    assert_eq!((bob_online(&mine), mine.body["data"]["total_online"].clone()), (Some(json!(false)), json!(2)));
    let theirs = participants("carol").await?;
    assert_eq!((bob_online(&theirs), theirs.body["data"]["total_online"].clone()), (Some(json!(true)), json!(3)));
    let tenant_online = |c: chat_test_support::Client| async move {
        let res = c.get("/api/v1/users/online").await?.expect(StatusCode::OK)?;
        anyhow::Ok(res.body["data"]["online_users"].as_array().cloned().unwrap_or_default())
    };
    assert!(!tenant_online(alice.clone()).await?.contains(&json!("bob")), "the tenant's list, as Alice");
    assert!(tenant_online(carol.clone()).await?.contains(&json!("bob")));
    let key_only = chat_test_support::Client::raw(&stack.base_url(0)).with_header("X-API-Key", &t.api_key);
    assert!(tenant_online(key_only).await?.contains(&json!("bob")), "the tenant's own view hides no one");

    // /ws: asking who is online answers as the greeting does.
    alice_ws.send(json!({"type": "get_online_users", "data": {}})).await?;
    let status = alice_ws.expect("connection_status").await?;
    assert_eq!(status["data"]["online_users"], json!(["alice", "carol"]), "{status}");

    // Unblocked: Bob is on Alice's lists again (REST at once, her socket once the
    // change reaches gateway 0).
    alice.delete("/blocks/bob").await?.expect(StatusCode::OK)?;
    assert_eq!(users(&alice.get(&online).await?.expect(StatusCode::OK)?), json!(["alice", "bob", "carol"]));
    assert_eq!(bob_online(&participants("alice").await?), Some(json!(true)));
    let mut shown = false;
    for _ in 0..100 {
        alice_ws.send(json!({"type": "get_online_users", "data": {}})).await?;
        let status = alice_ws.expect("connection_status").await?;
        if status["data"]["online_users"] == json!(["alice", "bob", "carol"]) {
            shown = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(shown, "unblocked, Bob is online on Alice's socket's list");
    stack.stop().await
}
