//! Blocks (`PUT|DELETE /blocks/{user_id}`, `GET /blocks`) across two gateways: a blocked
//! user's DM send is refused with `403 FORBIDDEN` over REST and over `/ws`, opening a new
//! DM with the blocker is refused, group rooms are not affected, unblocking restores
//! both, `GET /blocks` lists, and bad input is `400`; `rest-chat.md` clients do the same
//! at `/api/chat/blocks`. Needs PostgreSQL, Redis and NATS.

use chat_test_support::{TestStack, TestTenant, WsClient};
use reqwest::{Method, StatusCode};
use serde_json::json;

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
    assert_eq!(alice.get("/blocks").await?.expect(StatusCode::OK)?.body["blocks"], json!([]));
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
