//! The smaller findings of issue 25 (finding 7) that are this branch's: webhooks do not
//! reach loopback or private addresses unless the operator allows it, and a dead letter
//! says why in its own words; `avatar_url` is `http(s)` only; `/notify` bounds its
//! recipients and counts each against the rate limit; failed credentials are limited
//! per client address without locking out a key that works. Needs PostgreSQL, Redis
//! and NATS.

use chat_test_support::{Ended, TestStack, TestTenant, WebhookReceiver, WsClient, eventually};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::socketio::Node;

async fn tenant(stack: &TestStack, limit: u32) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": "guards", "rate_limit_per_sec": limit})).await
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_do_not_reach_private_addresses_unless_allowed() -> anyhow::Result<()> {
    let stack = TestStack::builder().notification_config(|c| c.webhook_allow_private = false).start().await?;
    let t = tenant(&stack, 100_000).await?;
    // A receiver that would answer 200, on 127.0.0.1.
    let hook = WebhookReceiver::start(Some(0)).await?;
    let body = json!({"webhook_url": hook.url, "retry": {"max_attempts": 1, "backoff_ms": 10}});
    stack.admin(Method::PATCH, &format!("/admin/tenants/{}", t.id), Some(body)).await?.expect(StatusCode::OK)?;
    let notify = json!({"topic": "inward", "payload": {}, "targets": {"user_ids": ["bob"]}});
    t.user("ops").post("/notify", notify).await?.expect(StatusCode::ACCEPTED)?;
    let path = format!("/admin/dead-letters?tenant_id={}", t.id);
    eventually("a dead letter", || async {
        let res = stack.admin(Method::GET, &path, None).await?;
        Ok(res.body["failed_notifications"].as_array().is_some_and(|a| !a.is_empty()))
    })
    .await?;
    let dead = stack.admin(Method::GET, &path, None).await?.expect(StatusCode::OK)?;
    let error = dead.body["failed_notifications"][0]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.starts_with("destination not allowed"), "{error}");
    assert!(hook.received().is_empty(), "nothing reached the loopback receiver");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn avatar_urls_are_web_addresses() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack, 100_000).await?;
    let put = |url: &str| {
        t.user("server").request(Method::PUT, "/users/bob").json(&json!({"name": "Bob", "avatar_url": url})).send()
    };
    for bad in ["javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:image/png;base64,AAAA", "ftp://x/y.png", "http://"]
    {
        let res = chat_test_support::Response::from(put(bad).await?).await?;
        res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("avatar_url"))?;
    }
    assert!(put("https://cdn.example.com/bob.png").await?.status().is_success());
    assert!(put("HTTP://cdn.example.com/bob.png").await?.status().is_success());
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_bounds_recipients_and_counts_each_against_the_limit() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    // Over the bound: refused whatever the limit.
    let roomy = tenant(&stack, 100_000).await?;
    let many: Vec<String> = (0..1_001).map(|i| format!("made-up-{i}")).collect();
    let body = json!({"topic": "t", "payload": {}, "targets": {"user_ids": many}});
    roomy.user("ops").post("/notify", body).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("targets.user_ids"),
    )?;
    let fits: Vec<String> = (0..1_000).map(|i| format!("made-up-{i}")).collect();
    let body = json!({"topic": "t", "payload": {}, "targets": {"user_ids": fits}});
    roomy.user("ops").post("/notify", body).await?.expect(StatusCode::ACCEPTED)?;
    // 50 recipients are 50 requests: more than a tenant of 20 a second may make.
    let small = tenant(&stack, 20).await?;
    let fifty: Vec<String> = (0..50).map(|i| format!("made-up-{i}")).collect();
    let body = json!({"topic": "t", "payload": {}, "targets": {"user_ids": fifty}});
    small.user("ops").post("/notify", body).await?.expect_error(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMIT_EXCEEDED",
        None,
    )?;
    let inbox = small.user("made-up-1").get("/notifications").await?;
    // (The limit may still be spent from the refused call; a 429 here is fine too.)
    if inbox.status == StatusCode::OK {
        assert_eq!(inbox.body, json!([]), "nothing was stored for the refused call");
    }
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_credentials_are_limited_per_address() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack, 100_000).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let bad =
        |i: usize| chat_test_support::Client::raw(&stack.base_url(0)).with_header("X-API-Key", &format!("sk_bad{i}"));
    for i in 0..20 {
        bad(i).get("/rooms").await?.expect_error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_ERROR", None)?;
    }
    // The 21st failure from this address is refused without a lookup.
    bad(20).get("/rooms").await?.expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED", None)?;
    // (That a key which failed moments ago is answered `401` from memory for 5 s is a
    // matter of time, checked by the unit tests of `auth_failures`, not here: on a slow
    // machine the 20 requests above can take longer than that.)
    let mut ws = WsClient::connect(&format!("{}/ws/{room}?token=sk_bad99&user_id=alice", stack.ws_url(0))).await?;
    assert_eq!(ws.ended().await?, Ended::Closed(4004), "a socket with an unknown key is rate limited");
    // Socket.IO (the stock client) too: its namespace connect is refused as rate limited.
    let mut node = Node::start(json!({"url": stack.base_url(0), "auth": {"token": "sk_bad98", "userId": "alice"}}))?;
    let refused = node.until("connect", |l| l["type"] == "connect" || l["type"] == "connect_error").await?;
    assert_eq!(refused, json!({"type": "connect_error", "message": "Rate limit exceeded"}));
    // The tenant's key, verified before, still works from here.
    t.user("alice").get("/rooms").await?.expect(StatusCode::OK)?;
    let mut ok = WsClient::connect(&format!("{}/ws/{room}?token={}&user_id=alice", stack.ws_url(0), t.api_key)).await?;
    ok.expect("connection_status").await?;
    stack.stop().await
}
