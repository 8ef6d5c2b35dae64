//! The `rest-chat.md` dialect at `/api/chat`: every endpoint's success and documented
//! errors in the dialect's `{success, data}` / `{success: false, message, code}` shape,
//! Bearer tokens and the API key, the user directory and the support pool, direct and
//! context chats converging on one room (also under 10 concurrent creates), archive,
//! unread counts, pagination, system-message permission, replies, the edit window
//! (with message-store's clock moved, not slept) and delivery across dialects both
//! ways. Needs PostgreSQL, Redis and NATS.

use std::sync::atomic::{AtomicI64, Ordering};

use chat_test_support::{Client, Response, TestStack, TestTenant, WsClient, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `data` of a successful answer with `status`.
fn data(res: Response, status: StatusCode) -> anyhow::Result<Value> {
    let res = res.expect(status)?;
    anyhow::ensure!(res.body["success"] == json!(true), "not a success envelope: {}", res.body);
    Ok(res.body["data"].clone())
}

/// Checks the dialect's error shape, status and code.
fn refused(res: &Response, status: StatusCode, code: &str) -> anyhow::Result<()> {
    let b = &res.body;
    anyhow::ensure!(
        res.status == status && b["success"] == json!(false) && b["code"] == json!(code) && b["message"].is_string(),
        "expected {status} {code} in the chat error shape, got {} {b}",
        res.status
    );
    anyhow::ensure!(b.get("error").is_none(), "the chat dialect has no nested error: {b}");
    Ok(())
}

/// A browser-style client of `user`: a Bearer token from `POST /tokens`, nothing else.
async fn bearer(stack: &TestStack, t: &TestTenant, user: &str) -> anyhow::Result<Client> {
    let res = t.user(user).post("/tokens", json!({})).await?.expect(StatusCode::CREATED)?;
    let token = res.str("token")?.to_owned();
    Ok(Client::raw(&stack.base_url(0)).with_header("Authorization", &format!("Bearer {token}")))
}

async fn put(c: &Client, path: &str, body: Value) -> anyhow::Result<Response> {
    Response::from(c.request(reqwest::Method::PUT, path).json(&body).send().await?).await
}

async fn patch(c: &Client, path: &str) -> anyhow::Result<Response> {
    Response::from(c.request(reqwest::Method::PATCH, path).send().await?).await
}

/// Registers `user` in the directory with `roles`.
async fn register(t: &TestTenant, user: &str, roles: &[&str]) -> anyhow::Result<()> {
    let body =
        json!({"name": format!("{user} N"), "avatar_url": format!("https://a.example/{user}.png"), "roles": roles});
    let res = put(&t.user("server"), &format!("/users/{user}"), body).await?;
    anyhow::ensure!(res.status.is_success(), "registering {user}: {} {}", res.status, res.body);
    Ok(())
}

/// Creates a chat and returns its id.
async fn new_chat(c: &Client, body: Value) -> anyhow::Result<String> {
    let d = data(c.post("/api/chat", body).await?, StatusCode::CREATED)?;
    Ok(d["chat"]["_id"].as_str().unwrap_or_default().to_owned())
}

async fn send(c: &Client, chat: &str, body: Value) -> anyhow::Result<Response> {
    c.post(&format!("/api/chat/{chat}/messages"), body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_and_errors() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    register(&t, "bob", &[]).await?;
    let base = stack.base_url(0);
    refused(&Client::raw(&base).get("/api/chat").await?, StatusCode::UNAUTHORIZED, "AUTHENTICATION_ERROR")?;
    let basic = Client::raw(&base).with_header("Authorization", "Basic abc");
    refused(&basic.get("/api/chat").await?, StatusCode::UNAUTHORIZED, "AUTHENTICATION_ERROR")?;
    let forged = Client::raw(&base).with_header("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");
    refused(&forged.get("/api/chat").await?, StatusCode::UNAUTHORIZED, "AUTHENTICATION_ERROR")?;
    // A token whose signature was tampered with.
    let alice = bearer(&stack, &t, "alice").await?;
    let good = alice.get("/api/chat").await?;
    data(good, StatusCode::OK)?;
    let res = t.user("alice").post("/tokens", json!({})).await?.expect(StatusCode::CREATED)?;
    let mut token = res.str("token")?.to_owned();
    let last = if token.ends_with('A') { 'B' } else { 'A' };
    token.pop();
    token.push(last);
    let tampered = Client::raw(&base).with_header("Authorization", &format!("Bearer {token}"));
    refused(&tampered.get("/api/chat").await?, StatusCode::UNAUTHORIZED, "AUTHENTICATION_ERROR")?;
    // A token acts for its user only.
    let other = alice.clone().with_header("X-User-Id", "bob");
    refused(&other.get("/api/chat").await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    // The API key needs the user it acts for.
    let keyed = t.user("alice").without_header("X-User-Id");
    refused(&keyed.get("/api/chat").await?, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    data(t.user("alice").get("/api/chat").await?, StatusCode::OK)?;
    // Unknown paths and methods, bad bodies and oversized ones.
    refused(&alice.get("/api/chat/x/y/z").await?, StatusCode::NOT_FOUND, "NOT_FOUND")?;
    refused(&alice.delete("/api/chat/stats").await?, StatusCode::NOT_FOUND, "NOT_FOUND")?;
    let res = alice.post_raw("/api/chat", "{not json").await?;
    refused(&res, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    assert_eq!(res.body["field"], "body");
    let big = json!({"participantIds": ["bob"], "metadata": {"x": "y".repeat(70 * 1024)}}).to_string();
    refused(&alice.post_raw("/api/chat", big).await?, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")?;
    refused(&alice.get("/api/chat/room_nope/info").await?, StatusCode::NOT_FOUND, "NOT_FOUND")?;
    refused(&alice.get("/api/chat/bad.id/info").await?, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    refused(&alice.get("/api/chat?page=0").await?, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    refused(&alice.get("/api/chat?type=party").await?, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_user_directory() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let server = t.user("server");
    let body =
        json!({"name": "Bob", "avatar_url": "https://a.example/b.png", "roles": ["support"], "metadata": {"tier": 2}});
    let created = put(&server, "/users/bob", body.clone()).await?.expect(StatusCode::CREATED)?;
    assert_eq!(created.body["name"], "Bob");
    assert_eq!(created.body["roles"], json!(["support"]));
    let mut changed = body;
    changed["roles"] = json!(["admin", "support", "admin"]);
    let updated = put(&server, "/v1/users/bob", changed).await?.expect(StatusCode::OK)?;
    assert_eq!(updated.body["roles"], json!(["admin", "support"]));
    let got = server.get("/users/bob").await?.expect(StatusCode::OK)?;
    assert_eq!(got.body["metadata"], json!({"tier": 2}));
    assert_eq!(got.body["registered"], true);
    // Unknown: the canonical API's error shape.
    server.get("/users/nobody").await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    // Taking part in a room makes a user exist without a directory entry.
    t.user("carol").create_room("group", &["dave"]).await?;
    let dave = server.get("/users/dave").await?.expect(StatusCode::OK)?;
    assert_eq!(dave.body["registered"], false);
    assert_eq!(dave.body["name"], Value::Null);
    let bad = put(&server, "/users/bob", json!({"roles": ["Not A Role"]})).await?;
    bad.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("roles"))?;
    let bad = put(&server, "/users/bob", json!({"metadata": [1]})).await?;
    bad.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("metadata"))?;
    // Another tenant does not see them.
    let other = stack.tenant().await?;
    other.user("x").get("/users/bob").await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_group_and_support_chats() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    for (user, roles) in [("bob", vec![]), ("carol", vec![]), ("sam", vec!["support"]), ("ada", vec!["admin"])] {
        register(&t, user, &roles).await?;
    }
    let alice = bearer(&stack, &t, "alice").await?;
    let bob = bearer(&stack, &t, "bob").await?;
    // Direct: created once, returned after (from either side), never duplicated.
    let first = data(alice.post("/api/chat", json!({"participantIds": ["bob"]})).await?, StatusCode::CREATED)?;
    let id = first["chat"]["_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(first["chat"]["type"], "direct");
    let again =
        data(alice.post("/api/chat", json!({"participantIds": ["bob"], "type": "direct"})).await?, StatusCode::OK)?;
    assert_eq!(again["chat"]["_id"], json!(id));
    let theirs = data(bob.post("/api/chat", json!({"participantIds": ["alice", "bob"]})).await?, StatusCode::OK)?;
    assert_eq!(theirs["chat"]["_id"], json!(id));
    // Errors.
    let res = alice.post("/api/chat", json!({"participantIds": []})).await?;
    refused(&res, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    let res = alice.post("/api/chat", json!({"participantIds": ["ghost"]})).await?;
    refused(&res, StatusCode::NOT_FOUND, "NOT_FOUND")?;
    assert!(res.body["message"].as_str().is_some_and(|m| m.contains("participant not found")));
    let res = alice.post("/api/chat", json!({"participantIds": ["bob", "carol"], "type": "direct"})).await?;
    refused(&res, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    refused(
        &alice.post("/api/chat", json!({"participantIds": ["bob"], "type": "x"})).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )?;
    refused(&alice.post("/api/chat", json!({"type": "group"})).await?, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    // Group, with participants populated from the directory.
    let body = json!({"participantIds": ["bob", "carol"], "type": "group", "title": "Trip", "metadata": {"k": 1}});
    let group = data(alice.post("/api/chat", body).await?, StatusCode::CREATED)?["chat"].clone();
    assert_eq!(group["type"], "group");
    assert_eq!(group["title"], "Trip");
    assert_eq!(group["metadata"], json!({"k": 1}));
    let gid = group["_id"].as_str().unwrap_or_default();
    let info = data(bob.get(&format!("/api/chat/{gid}/info")).await?, StatusCode::OK)?["chat"].clone();
    let people: Vec<(&str, &Value)> = info["participants"]
        .as_array()
        .map(|ps| ps.iter().map(|p| (p["_id"].as_str().unwrap_or_default(), &p["name"])).collect())
        .unwrap_or_default();
    assert_eq!(people, [("alice", &Value::Null), ("bob", &json!("bob N")), ("carol", &json!("carol N"))]);
    assert_eq!(info["unreadCounts"], json!({"alice": 0, "bob": 0, "carol": 0}));
    assert_eq!(info["createdBy"], "alice");
    // Not a participant, and not there at all.
    let dan = bearer(&stack, &t, "dan").await?;
    refused(&dan.get(&format!("/api/chat/{gid}/info")).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    let elsewhere = stack.tenant().await?;
    let stranger = bearer(&stack, &elsewhere, "alice").await?;
    refused(&stranger.get(&format!("/api/chat/{gid}/info")).await?, StatusCode::NOT_FOUND, "NOT_FOUND")?;

    // Support: the caller and the pool (support and admin roles), subject and first message.
    let body = json!({"subject": "Card declined", "initialMessage": "My card was declined"});
    let support = data(alice.post("/api/chat/support", body).await?, StatusCode::CREATED)?["chat"].clone();
    assert_eq!(support["type"], "support");
    assert_eq!(support["title"], "Card declined");
    assert_eq!(support["lastMessage"]["content"], "My card was declined");
    let mut pool: Vec<&str> = support["participants"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["_id"].as_str()).collect())
        .unwrap_or_default();
    pool.sort_unstable();
    assert_eq!(pool, ["ada", "alice", "sam"]);
    let sid = support["_id"].as_str().unwrap_or_default();
    let sam = bearer(&stack, &t, "sam").await?;
    let seen = data(sam.get(&format!("/api/chat/{sid}/messages")).await?, StatusCode::OK)?;
    assert_eq!(seen["messages"][0]["sender"], "alice");
    let plain = data(alice.post("/api/chat/support", json!({})).await?, StatusCode::CREATED)?["chat"].clone();
    assert_eq!(plain["title"], "Support");
    assert_ne!(plain["_id"], support["_id"], "each support request is a chat of its own");
    let listed = data(sam.get("/api/chat?type=support").await?, StatusCode::OK)?;
    assert_eq!(listed["pagination"]["total"], 2);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn context_chats_are_one_chat_per_context() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    register(&t, "seller", &[]).await?;
    let buyer = bearer(&stack, &t, "buyer").await?;
    let body = json!({"purchaseRequestId": "pr-1", "sellerId": "seller"});
    let creates = (0..10).map(|_| buyer.post("/api/chat/purchase-request", body.clone()));
    let answers = futures_util::future::join_all(creates).await;
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for a in answers {
        let a = a?;
        match a.status {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => anyhow::bail!("unexpected {other}: {}", a.body),
        }
        ids.insert(a.body["data"]["chat"]["_id"].as_str().unwrap_or_default().to_owned());
        assert_eq!(a.body["data"]["chat"]["purchaseRequestId"], "pr-1");
        assert_eq!(a.body["data"]["chat"]["context"], json!({"type": "purchase_request", "id": "pr-1"}));
    }
    assert_eq!((created, ids.len()), (1, 1), "one chat, created once: {ids:?}");
    let id = ids.into_iter().next().unwrap_or_default();
    // Later: 200 with the same chat; the seller sees it too.
    let later = data(buyer.post("/api/chat/purchase-request", body.clone()).await?, StatusCode::OK)?;
    assert_eq!(later["chat"]["_id"], json!(id));
    let seller = bearer(&stack, &t, "seller").await?;
    data(seller.get(&format!("/api/chat/{id}/info")).await?, StatusCode::OK)?;
    // Someone else asking for the same context is no participant of it.
    register(&t, "other", &[]).await?;
    let other = bearer(&stack, &t, "other").await?;
    refused(&other.post("/api/chat/purchase-request", body).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    // Another purchase request between the same people is another chat.
    let second = json!({"purchaseRequestId": "pr-2", "sellerId": "seller"});
    let two = data(buyer.post("/api/chat/purchase-request", second).await?, StatusCode::CREATED)?;
    assert_ne!(two["chat"]["_id"], json!(id));
    // The generic form.
    let order = json!({"contextType": "order", "contextId": "o-9", "participantIds": ["seller"], "title": "Order 9"});
    let made = data(buyer.post("/api/chat/context", order.clone()).await?, StatusCode::CREATED)?;
    assert_eq!(made["chat"]["context"], json!({"type": "order", "id": "o-9"}));
    assert_eq!(made["chat"]["title"], "Order 9");
    let same = data(buyer.post("/api/chat/context", order).await?, StatusCode::OK)?;
    assert_eq!(same["chat"]["_id"], made["chat"]["_id"]);
    // Errors.
    refused(
        &buyer.post("/api/chat/purchase-request", json!({"sellerId": "seller"})).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )?;
    let ghost = json!({"purchaseRequestId": "pr-3", "sellerId": "ghost"});
    refused(&buyer.post("/api/chat/purchase-request", ghost).await?, StatusCode::NOT_FOUND, "NOT_FOUND")?;
    let bad = json!({"contextType": "Bad Type", "contextId": "1"});
    let res = buyer.post("/api/chat/context", bad).await?;
    refused(&res, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    assert_eq!(res.body["field"], "contextType");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_unread_counts_archive_and_stats() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    for u in ["bob", "carol", "dave"] {
        register(&t, u, &[]).await?;
    }
    let alice = bearer(&stack, &t, "alice").await?;
    let bob = bearer(&stack, &t, "bob").await?;
    let a = new_chat(&alice, json!({"participantIds": ["bob"]})).await?;
    let b = new_chat(&alice, json!({"participantIds": ["bob", "carol"], "type": "group", "title": "B"})).await?;
    let c = new_chat(&alice, json!({"participantIds": ["bob", "dave"], "type": "group", "title": "C"})).await?;
    // Latest message first: c (no message, newest room) is passed by a and b.
    send(&alice, &b, json!({"content": "b1"})).await?.expect(StatusCode::CREATED)?;
    send(&alice, &a, json!({"content": "a1"})).await?.expect(StatusCode::CREATED)?;
    send(&alice, &a, json!({"content": "a2"})).await?.expect(StatusCode::CREATED)?;
    let list = data(bob.get("/api/chat").await?, StatusCode::OK)?;
    let order: Vec<&str> =
        list["chats"].as_array().map(|cs| cs.iter().filter_map(|c| c["_id"].as_str()).collect()).unwrap_or_default();
    assert_eq!(order, [a.as_str(), b.as_str(), c.as_str()]);
    let unread: Vec<i64> = list["chats"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["unreadCount"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(unread, [2, 1, 0]);
    assert_eq!(list["chats"][0]["lastMessage"]["content"], "a2");
    assert_eq!(list["pagination"], json!({"page": 1, "limit": 20, "total": 3, "pages": 1}));
    // Pages and the type filter.
    let page2 = data(bob.get("/api/chat?page=2&limit=2").await?, StatusCode::OK)?;
    assert_eq!(page2["pagination"], json!({"page": 2, "limit": 2, "total": 3, "pages": 2}));
    assert_eq!(page2["chats"][0]["_id"], json!(c));
    let groups = data(bob.get("/api/chat?type=group").await?, StatusCode::OK)?;
    assert_eq!(groups["pagination"]["total"], 2);
    let direct = data(bob.get("/api/chat?type=direct").await?, StatusCode::OK)?;
    assert_eq!(direct["chats"][0]["_id"], json!(a));

    // Archive: out of the default list, in the archived one, back on a new message.
    let archived = data(patch(&bob, &format!("/api/chat/{a}/archive")).await?, StatusCode::OK)?;
    assert_eq!(archived["isArchived"], true);
    let list = data(bob.get("/api/chat").await?, StatusCode::OK)?;
    assert_eq!(list["pagination"]["total"], 2);
    let only = data(bob.get("/api/chat?archived=true").await?, StatusCode::OK)?;
    assert_eq!(only["chats"][0]["_id"], json!(a));
    assert_eq!(only["chats"][0]["isArchived"], true);
    // Archiving is per user: alice still lists it.
    assert_eq!(data(alice.get("/api/chat").await?, StatusCode::OK)?["pagination"]["total"], 3);
    let stats = data(bob.get("/api/chat/stats").await?, StatusCode::OK)?;
    assert_eq!(stats["archivedChats"], 1);
    send(&alice, &a, json!({"content": "a3"})).await?.expect(StatusCode::CREATED)?;
    let list = data(bob.get("/api/chat").await?, StatusCode::OK)?;
    assert_eq!(list["pagination"]["total"], 3);
    assert_eq!(list["chats"][0]["_id"], json!(a));
    assert_eq!(list["chats"][0]["isArchived"], false);
    // Toggling twice unarchives.
    data(patch(&bob, &format!("/api/chat/{b}/archive")).await?, StatusCode::OK)?;
    let back = data(patch(&bob, &format!("/api/chat/{b}/archive")).await?, StatusCode::OK)?;
    assert_eq!(back["isArchived"], false);

    let stats = data(bob.get("/api/chat/stats").await?, StatusCode::OK)?;
    assert_eq!(stats["totalChats"], 3);
    assert_eq!(stats["totalMessages"], 4);
    assert_eq!(stats["totalUnread"], 4);
    assert_eq!(stats["unreadChats"], 2);
    assert_eq!(stats["archivedChats"], 0);
    assert_eq!(stats["byType"], json!({"direct": 1, "group": 2, "support": 0}));
    // Reading moves the cursor; modifiedCount says how many became read.
    let read = data(patch(&bob, &format!("/api/chat/{a}/messages/read")).await?, StatusCode::OK)?;
    assert_eq!(read["modifiedCount"], 3);
    let read = data(patch(&bob, &format!("/api/chat/{a}/messages/read")).await?, StatusCode::OK)?;
    assert_eq!(read["modifiedCount"], 0);
    let info = data(alice.get(&format!("/api/chat/{a}/info")).await?, StatusCode::OK)?;
    assert_eq!(info["chat"]["unreadCounts"], json!({"alice": 0, "bob": 0}));
    assert_eq!(data(bob.get("/api/chat/stats").await?, StatusCode::OK)?["totalUnread"], 1);
    let dan = bearer(&stack, &t, "dan").await?;
    refused(&patch(&dan, &format!("/api/chat/{a}/archive")).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    refused(&patch(&dan, &format!("/api/chat/{a}/messages/read")).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn participants_of_group_chats() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    for u in ["bob", "carol", "dave"] {
        register(&t, u, &[]).await?;
    }
    let alice = bearer(&stack, &t, "alice").await?;
    let bob = bearer(&stack, &t, "bob").await?;
    let g = new_chat(&alice, json!({"participantIds": ["bob"], "type": "group", "title": "G"})).await?;
    let added = data(
        alice.post(&format!("/api/chat/{g}/participants"), json!({"userId": "carol"})).await?,
        StatusCode::CREATED,
    )?;
    assert_eq!(added["added"], json!(["carol"]));
    assert_eq!(added["chat"]["participants"].as_array().map(Vec::len), Some(3));
    // carol's /ws socket is cut when she is removed (the room's member.removed event).
    let url = format!("{}/ws/{g}?token={}&user_id=carol", stack.ws_url(0), t.api_key);
    let mut socket = WsClient::connect(&url).await?;
    socket.expect("connection_status").await?;
    let again = alice.post(&format!("/api/chat/{g}/participants"), json!({"userId": "carol"})).await?;
    assert_eq!(data(again, StatusCode::OK)?["added"], json!([]));
    // Only the creator or admins; existing users only; group chats only.
    refused(
        &bob.post(&format!("/api/chat/{g}/participants"), json!({"userId": "dave"})).await?,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )?;
    refused(
        &alice.post(&format!("/api/chat/{g}/participants"), json!({"userId": "ghost"})).await?,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )?;
    refused(
        &alice.post(&format!("/api/chat/{g}/participants"), json!({})).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )?;
    let d = new_chat(&alice, json!({"participantIds": ["bob"]})).await?;
    refused(
        &alice.post(&format!("/api/chat/{d}/participants"), json!({"userId": "dave"})).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )?;
    refused(&bob.delete(&format!("/api/chat/{g}/participants/carol")).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    let removed = data(alice.delete(&format!("/api/chat/{g}/participants/carol")).await?, StatusCode::OK)?;
    assert_eq!(removed["removed"], "carol");
    assert_eq!(removed["chat"]["participants"].as_array().map(Vec::len), Some(2));
    assert_eq!(socket.ended().await?, chat_test_support::Ended::Closed(4003));
    refused(&alice.delete(&format!("/api/chat/{g}/participants/carol")).await?, StatusCode::NOT_FOUND, "NOT_FOUND")?;
    let carol = bearer(&stack, &t, "carol").await?;
    refused(&carol.get(&format!("/api/chat/{g}/info")).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    // Rooms clients see the same membership.
    let members = t.user("alice").get(&format!("/rooms/{g}/members")).await?.expect(StatusCode::OK)?;
    assert_eq!(members.body.as_array().map(Vec::len), Some(2));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_send_page_edit_and_delete() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    register(&t, "bob", &[]).await?;
    register(&t, "ada", &["admin"]).await?;
    let alice = bearer(&stack, &t, "alice").await?;
    let bob = bearer(&stack, &t, "bob").await?;
    let ada = bearer(&stack, &t, "ada").await?;
    let g = new_chat(&alice, json!({"participantIds": ["bob", "ada"], "type": "group", "title": "G"})).await?;
    let other = new_chat(&alice, json!({"participantIds": ["bob"]})).await?;
    let first =
        data(send(&alice, &g, json!({"content": "hello", "metadata": {"k": "v"}})).await?, StatusCode::CREATED)?;
    let m = &first["message"];
    assert_eq!(
        (m["chatId"].as_str(), m["sender"].as_str(), m["type"].as_str()),
        (Some(g.as_str()), Some("alice"), Some("text"))
    );
    assert_eq!(m["metadata"], json!({"k": "v"}));
    assert_eq!(m["seq"], 1);
    assert_eq!(m["attachments"], json!([]));
    let first_id = m["_id"].as_str().unwrap_or_default().to_owned();
    // Replies: to a message of this chat only.
    let reply =
        data(send(&bob, &g, json!({"content": "hi", "replyToMessageId": first_id})).await?, StatusCode::CREATED)?;
    assert_eq!(reply["message"]["replyToMessageId"], json!(first_id));
    let elsewhere = data(send(&alice, &other, json!({"content": "x"})).await?, StatusCode::CREATED)?;
    let res = send(&bob, &g, json!({"content": "no", "replyToMessageId": elsewhere["message"]["_id"]})).await?;
    refused(&res, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    assert_eq!(res.body["field"], "replyToMessageId");
    // System messages: the API key or a directory admin, nobody else.
    refused(&send(&bob, &g, json!({"content": "sys", "type": "system"})).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    let sys = data(
        send(&t.user("alice"), &g, json!({"content": "server notice", "type": "system"})).await?,
        StatusCode::CREATED,
    )?;
    assert_eq!(sys["message"]["type"], "system");
    data(send(&ada, &g, json!({"content": "admin notice", "type": "system"})).await?, StatusCode::CREATED)?;
    refused(
        &send(&bob, &g, json!({"content": "x", "type": "shout"})).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )?;
    refused(&send(&bob, &g, json!({"content": "  "})).await?, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    let dan = bearer(&stack, &t, "dan").await?;
    refused(&send(&dan, &g, json!({"content": "let me in"})).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    refused(&send(&dan, "room_missing", json!({"content": "x"})).await?, StatusCode::NOT_FOUND, "NOT_FOUND")?;
    // Idempotent with a key.
    let keyed = bob.clone().with_header("Idempotency-Key", "k-1");
    let once = data(send(&keyed, &g, json!({"content": "once"})).await?, StatusCode::CREATED)?;
    let twice = send(&keyed, &g, json!({"content": "once"})).await?;
    assert_eq!(twice.header("idempotent-replayed"), Some("true"));
    assert_eq!(data(twice, StatusCode::OK)?["message"]["_id"], once["message"]["_id"]);

    // History: newest first, pages, and a time cursor.
    let page = data(alice.get(&format!("/api/chat/{g}/messages?limit=2")).await?, StatusCode::OK)?;
    let seqs = |v: &Value| -> Vec<i64> {
        v["messages"].as_array().map(|ms| ms.iter().filter_map(|m| m["seq"].as_i64()).collect()).unwrap_or_default()
    };
    assert_eq!(seqs(&page), [5, 4]);
    assert_eq!(page["pagination"], json!({"page": 1, "limit": 2, "total": 5, "pages": 3}));
    let page3 = data(alice.get(&format!("/api/chat/{g}/messages?limit=2&page=3")).await?, StatusCode::OK)?;
    assert_eq!(seqs(&page3), [1]);
    let cut = reply["message"]["createdAt"].as_str().unwrap_or_default().to_owned();
    let before =
        data(alice.get(&format!("/api/chat/{g}/messages?before={}", cut.replace('+', "%2B"))).await?, StatusCode::OK)?;
    assert_eq!(seqs(&before), [1]);
    assert_eq!(before["pagination"]["total"], 1);
    refused(
        &alice.get(&format!("/api/chat/{g}/messages?before=yesterday")).await?,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    )?;
    refused(&dan.get(&format!("/api/chat/{g}/messages")).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;

    // Edits: the author only.
    let path = format!("/api/chat/{g}/messages/{first_id}");
    refused(&put(&bob, &path, json!({"content": "mine now"})).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    refused(&put(&alice, &path, json!({})).await?, StatusCode::BAD_REQUEST, "VALIDATION_ERROR")?;
    let edited = data(put(&alice, &path, json!({"content": "hello, edited"})).await?, StatusCode::OK)?;
    assert_eq!(edited["message"]["content"], "hello, edited");
    assert!(edited["message"]["editedAt"].is_string());
    refused(
        &put(&alice, &format!("/api/chat/{g}/messages/msg_nope"), json!({"content": "x"})).await?,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )?;
    // Deletes: the author or an admin; the seq stays, the content goes.
    let bobs = reply["message"]["_id"].as_str().unwrap_or_default().to_owned();
    refused(&bob.delete(&path).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    let deleted = data(ada.delete(&format!("/api/chat/{g}/messages/{bobs}")).await?, StatusCode::OK)?;
    assert_eq!(deleted["message"]["content"], "");
    assert!(deleted["message"]["deletedAt"].is_string());
    assert_eq!(deleted["message"]["seq"], 2);
    let by_author = data(alice.delete(&path).await?, StatusCode::OK)?;
    assert!(by_author["message"]["deletedAt"].is_string());
    let once_id = once["message"]["_id"].as_str().unwrap_or_default();
    refused(&dan.delete(&format!("/api/chat/{g}/messages/{once_id}")).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    let after = data(bob.get(&format!("/api/chat/{g}/messages")).await?, StatusCode::OK)?;
    assert_eq!(seqs(&after), [5, 4, 3, 2, 1], "deleted messages keep their place");
    assert_eq!(after["messages"][3]["content"], "");
    stack.stop().await
}

/// How far message-store's clock runs ahead of the system's, in seconds (this test's
/// process only: nextest runs each test in a process of its own).
static CLOCK_SKEW_SECS: AtomicI64 = AtomicI64::new(0);

fn skewed_clock(cfg: &mut message_store::Config) {
    cfg.clock = message_store::Clock::from_fn(|| {
        chat_domain::time::now() + chrono::Duration::seconds(CLOCK_SKEW_SECS.load(Ordering::SeqCst))
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_are_refused_after_the_tenant_edit_window() -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    let stack = TestStack::builder().message_store_config(skewed_clock).start().await?;
    let t = stack.tenant().await?;
    register(&t, "bob", &[]).await?;
    let alice = bearer(&stack, &t, "alice").await?;
    let chat = new_chat(&alice, json!({"participantIds": ["bob"]})).await?;
    let sent = data(send(&alice, &chat, json!({"content": "draft"})).await?, StatusCode::CREATED)?;
    let path = format!("/api/chat/{chat}/messages/{}", sent["message"]["_id"].as_str().unwrap_or_default());
    // Within the default window of 900 s.
    CLOCK_SKEW_SECS.store(899, Ordering::SeqCst);
    data(put(&alice, &path, json!({"content": "v2"})).await?, StatusCode::OK)?;
    CLOCK_SKEW_SECS.store(901, Ordering::SeqCst);
    let late = put(&alice, &path, json!({"content": "v3"})).await?;
    refused(&late, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    assert!(late.body["message"].as_str().is_some_and(|m| m.contains("900 seconds")));
    // The other dialects have no window.
    let rooms = t.user("alice").request(
        reqwest::Method::PATCH,
        &format!("/rooms/{chat}/messages/{}", sent["message"]["_id"].as_str().unwrap_or_default()),
    );
    let res = Response::from(rooms.json(&json!({"content": "v3 via rooms"})).send().await?).await?;
    res.expect(StatusCode::OK)?;
    // A tenant's own window (the setting `edit_window_secs` of `tenants.settings`).
    let mut db = diesel_async::AsyncPgConnection::establish(&chat_test_support::database_url()).await?;
    db.batch_execute(&format!(
        "UPDATE tenants SET settings = settings || '{{\"edit_window_secs\": 3600}}'::jsonb WHERE id = '{}'",
        t.id
    ))
    .await?;
    data(put(&alice, &path, json!({"content": "v4"})).await?, StatusCode::OK)?;
    CLOCK_SKEW_SECS.store(3601, Ordering::SeqCst);
    refused(&put(&alice, &path, json!({"content": "v5"})).await?, StatusCode::FORBIDDEN, "FORBIDDEN")?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_cross_dialects_both_ways() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    register(&t, "bob", &[]).await?;
    let alice = bearer(&stack, &t, "alice").await?;
    let chat = new_chat(&alice, json!({"participantIds": ["bob"]})).await?;
    // /api/chat → /ws.
    let url = format!("{}/ws/{chat}?token={}&user_id=bob", stack.ws_url(0), t.api_key);
    let mut socket = WsClient::connect(&url).await?;
    socket.expect("connection_status").await?;
    let sent = data(send(&alice, &chat, json!({"content": "from the chat API"})).await?, StatusCode::CREATED)?;
    let frame = socket.expect_where("message", |f| f["data"]["content"] == "from the chat API").await?;
    assert_eq!(frame["data"]["id"], sent["message"]["_id"]);
    // A system notice shows as one on /ws.
    let notice = json!({"content": "maintenance at noon", "type": "system"});
    data(send(&t.user("alice"), &chat, notice).await?, StatusCode::CREATED)?;
    let frame = socket.expect_where("message", |f| f["data"]["content"] == "maintenance at noon").await?;
    assert_eq!(frame["data"]["message_type"], "system");
    // Edits, deletes and reads travel too.
    let path = format!("/api/chat/{chat}/messages/{}", sent["message"]["_id"].as_str().unwrap_or_default());
    data(put(&alice, &path, json!({"content": "edited"})).await?, StatusCode::OK)?;
    socket.expect_where("message_updated", |f| f["data"]["content"] == "edited").await?;
    let bob = bearer(&stack, &t, "bob").await?;
    let mut alice_socket =
        WsClient::connect(&format!("{}/ws/{chat}?token={}&user_id=alice", stack.ws_url(0), t.api_key)).await?;
    alice_socket.expect("connection_status").await?;
    data(patch(&bob, &format!("/api/chat/{chat}/messages/read")).await?, StatusCode::OK)?;
    alice_socket.expect_where("read", |f| f["data"]["user_id"] == "bob").await?;
    data(alice.delete(&path).await?, StatusCode::OK)?;
    socket.expect("message_deleted").await?;
    // /rooms → /api/chat.
    let via_rooms = t.user("bob").send(&chat, "from the rooms API").await?;
    eventually("the chat API lists the /rooms message", || async {
        let page = data(alice.get(&format!("/api/chat/{chat}/messages")).await?, StatusCode::OK)?;
        Ok(page["messages"][0]["_id"] == via_rooms["message_id"]
            && page["messages"][0]["content"] == "from the rooms API")
    })
    .await?;
    let list = data(alice.get("/api/chat").await?, StatusCode::OK)?;
    assert_eq!(list["chats"][0]["lastMessage"]["content"], "from the rooms API");
    assert_eq!(list["chats"][0]["unreadCount"], 1);
    socket.close().await?;
    alice_socket.close().await?;
    stack.stop().await
}
