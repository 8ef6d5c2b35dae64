//! The `/api/v1` REST helpers of `ws-rooms.md`: sending and listing messages in the
//! document's `{"data":...,"status":"success"}` envelope, with the API key (the sender
//! named by the body) or a user token in `X-API-Key` (which names the sender), with
//! and without the trailing slash; and pages served from the gateway's origin. Needs
//! the machine's PostgreSQL, Redis and NATS.

use chat_test_support::{Client, TestStack, TestTenant, WsClient, unique};
use reqwest::StatusCode;
use serde_json::json;

async fn busy_tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": "api", "rate_limit_per_sec": 100_000})).await
}

/// A client sending only `X-API-Key: credential` (as the demo page does).
fn page_client(stack: &TestStack, credential: &str) -> Client {
    Client::raw(&stack.base_url(0)).with_header("X-API-Key", credential)
}

#[tokio::test(flavor = "multi_thread")]
async fn sending_with_the_key_or_a_token() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let mut ws = WsClient::connect(&format!("{}/ws/{room}?token={}&user_id=bob", stack.ws_url(0), t.api_key)).await?;
    ws.expect("connection_status").await?;
    let with_key = page_client(&stack, &t.api_key);

    // As the demo page sends it: trailing slash, sender in the body.
    let body = json!({"sender_id": "alice", "sender_name": "Alice A", "content": "hi", "message_type": "text"});
    let res = with_key.post(&format!("/api/v1/rooms/{room}/messages/"), body).await?.expect(StatusCode::CREATED)?;
    assert_eq!(res.body["status"], "success");
    let m = &res.body["data"];
    assert_eq!((m["sender_id"].clone(), m["sender_name"].clone()), (json!("alice"), json!("Alice A")));
    assert_eq!(
        (m["content"].clone(), m["message_type"].clone(), m["seq"].clone()),
        (json!("hi"), json!("text"), json!(1))
    );
    assert!(m["id"].is_string() && m["created_at"].is_string());
    assert!(res.header("X-RateLimit-Limit").is_some());
    let frame = ws.expect("message").await?;
    assert_eq!(frame["data"]["id"], m["id"]);
    assert_eq!(frame["data"]["sender_name"], "Alice A");

    // Without the slash; another message type; an idempotent resend.
    let body = json!({"sender_id": "alice", "content": "pic", "message_type": "image", "client_msg_id": "c1"});
    let path = format!("/api/v1/rooms/{room}/messages");
    let first = with_key.post(&path, body.clone()).await?.expect(StatusCode::CREATED)?;
    assert_eq!(first.body["data"]["message_type"], "image");
    let again = with_key.post(&path, body).await?.expect(StatusCode::OK)?;
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(again.body["data"]["id"], first.body["data"]["id"]);

    // With the key, the sender must be named (body, or X-User-Id) and be a member.
    with_key.post(&path, json!({"content": "x"})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("sender_id"),
    )?;
    with_key
        .clone()
        .with_header("X-User-Id", "bob")
        .post(&path, json!({"content": "from header"}))
        .await?
        .expect(StatusCode::CREATED)?;
    with_key.post(&path, json!({"sender_id": "mallory", "content": "x"})).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;
    with_key.post(&path, json!({"sender_id": "a.b", "content": "x"})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("sender_id"),
    )?;
    with_key.post(&path, json!({"sender_id": "alice", "content": " "})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("content"),
    )?;
    page_client(&stack, "sk_nope").post(&path, json!({"sender_id": "alice", "content": "x"})).await?.expect_error(
        StatusCode::UNAUTHORIZED,
        "AUTHENTICATION_ERROR",
        None,
    )?;

    // A user token names the sender; naming someone else is refused.
    let token = t.user("bob").post("/tokens", json!({})).await?.expect(StatusCode::CREATED)?;
    let with_token = page_client(&stack, token.str("token")?);
    let res = with_token.post(&path, json!({"content": "token, no sender"})).await?.expect(StatusCode::CREATED)?;
    assert_eq!(res.body["data"]["sender_id"], "bob");
    let res =
        with_token.post(&path, json!({"sender_id": "bob", "content": "token"})).await?.expect(StatusCode::CREATED)?;
    assert_eq!(res.body["data"]["sender_id"], "bob");
    with_token.post(&path, json!({"sender_id": "alice", "content": "forged"})).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;

    // Listing: key + X-User-Id, or a token; oldest first, history rules.
    let res = with_key.clone().with_header("X-User-Id", "alice").get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["status"], "success");
    let contents: Vec<_> =
        res.body["data"]["messages"].as_array().into_iter().flatten().map(|m| m["content"].clone()).collect();
    assert_eq!(
        contents,
        vec![json!("hi"), json!("pic"), json!("from header"), json!("token, no sender"), json!("token")]
    );
    let res = with_token.get(&format!("{path}/?after_seq=3&limit=1")).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["data"]["messages"][0]["seq"], 4);
    with_token.clone().with_header("X-User-Id", "alice").get(&path).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;
    with_key.get(&path).await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("X-User-Id"))?;
    with_key.clone().with_header("X-User-Id", "alice").get(&format!("{path}?limit=0")).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("limit"),
    )?;

    // The other helpers take a token too.
    let res = with_token.get(&format!("/api/v1/rooms/{room}/online")).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["data"]["online_users"], json!(["bob"]));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_served_from_the_configured_directory() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(unique("static-"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("page.html"), "<p>hello</p>")?;
    let stack = TestStack::builder().static_dir(&dir).start().await?;
    let res = stack.http.get(stack.url("/static/page.html")).send().await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/html; charset=utf-8"));
    assert_eq!(res.text().await?, "<p>hello</p>");
    for missing in ["/static/nope.html", "/static/..%2Fetc%2Fpasswd", "/static/.hidden"] {
        let res = Client::raw(&stack.base_url(0)).get(missing).await?;
        res.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    }
    stack.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
