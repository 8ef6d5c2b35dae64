//! Every documented error in the documented shape: authentication, validation naming
//! the field, malformed JSON, oversized bodies, unknown routes.

use chat_test_support::{Client, TestStack};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn authentication_errors() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let base = stack.base_url(0);
    let none = Client::raw(&base).with_header("X-User-Id", "alice");
    let res = none.post("/rooms", json!({"type": "group"})).await?;
    res.expect_error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_ERROR", None)?;
    assert!(res.header("X-RateLimit-Limit").is_none(), "no tenant, no rate-limit headers");
    let wrong = Client::raw(&base).with_header("X-API-Key", "sk_wrong").with_header("X-User-Id", "alice");
    let res = wrong.get("/rooms/room_x").await?;
    res.expect_error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_ERROR", None)?;
    assert_eq!(res.body["error"]["message"], "Invalid API key");
    assert!(res.body["error"].get("field").is_none(), "authentication errors carry no field");

    // The admin key is not a tenant key, and a tenant key is not an admin key.
    Client::raw(&base)
        .with_header("X-API-Key", &stack.admin_key)
        .with_header("X-User-Id", "a")
        .post("/rooms", json!({"type": "group"}))
        .await?
        .expect_error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_ERROR", None)?;
    Client::raw(&base).with_header("X-API-Key", &t.api_key).get("/admin/tenants").await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;

    // A valid key without a user.
    t.user("x").without_header("X-User-Id").post("/rooms", json!({"type": "group"})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("X-User-Id"),
    )?;
    t.user("bad.user").post("/rooms", json!({"type": "group"})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("X-User-Id"),
    )?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_errors_name_the_field() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let alice = t.user("alice");
    let bad = alice.post("/rooms", json!({"type": "party"})).await?;
    bad.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("type"))?;
    assert_eq!(bad.body["error"]["message"], "Invalid room type. Must be one of: dm, group, channel");
    alice.post("/rooms", json!({})).await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("type"))?;
    alice.post("/rooms", json!({"type": "group", "members": "bob"})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("members"),
    )?;
    alice.post("/rooms", json!({"type": "group", "members": ["a.b"]})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("members"),
    )?;
    alice.post("/rooms", json!({"type": "group", "name": 7})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("name"),
    )?;
    alice.post("/rooms", json!({"type": "group", "name": "a\u{0}b"})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("name"),
    )?;
    alice.post("/rooms", json!({"type": "group", "name": "x".repeat(201)})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("name"),
    )?;

    let room = alice.create_room("group", &[]).await?;
    let msgs = format!("/rooms/{room}/messages");
    for (body, field) in [
        (json!({}), "content"),
        (json!({"content": "   "}), "content"),
        (json!({"content": 5}), "content"),
        (json!({"content": "x".repeat(16_001)}), "content"),
        (json!({"content": "ok", "meta": [1]}), "meta"),
        (json!({"content": "ok", "client_msg_id": ""}), "client_msg_id"),
        // PostgreSQL text and jsonb cannot hold U+0000: refused up front, not a 500.
        (json!({"content": "nul \u{0} inside"}), "content"),
        (json!({"content": "ok", "meta": {"k": ["a\u{0}"]}}), "meta"),
        (json!({"content": "ok", "meta": {"a\u{0}": 1}}), "meta"),
    ] {
        alice.post(&msgs, body).await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some(field))?;
    }
    for (query, field) in [
        ("after_seq=-1", "after_seq"),
        ("after_seq=abc", "after_seq"),
        ("limit=0", "limit"),
        ("before_seq=0", "before_seq"),
    ] {
        alice.get(&format!("{msgs}?{query}")).await?.expect_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        )?;
    }
    alice.get("/rooms/bad.room/messages").await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("room_id"),
    )?;
    alice.post(&format!("/rooms/{room}/members"), json!({})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("user_id"),
    )?;
    alice.post(&format!("/rooms/{room}/members"), json!({"user_id": "bob", "role": "owner"})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("role"),
    )?;
    // Nothing invalid was stored.
    let list = alice.get(&msgs).await?.expect(StatusCode::OK)?;
    assert_eq!(list.body, json!([]));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_bodies() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let alice = t.user("alice");
    for raw in ["{", "not json", "[1,2]", "", "\"str\""] {
        let res = alice.post_raw("/rooms", raw.to_owned()).await?;
        res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("body"))?;
    }
    let room = alice.create_room("group", &[]).await?;
    let huge = json!({"content": "x".repeat(100 * 1024)}).to_string();
    let res = alice.post_raw(&format!("/rooms/{room}/messages"), huge).await?;
    res.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", None)?;
    // A chunked body without Content-Length is cut off too.
    let chunks = futures_util::stream::iter((0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let req = alice
        .request(reqwest::Method::POST, &format!("/rooms/{room}/messages"))
        .body(reqwest::Body::wrap_stream(chunks));
    let res = chat_test_support::Response::from(req.send().await?).await?;
    res.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", None)?;
    // The service is undisturbed.
    alice.send(&room, "still fine").await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_are_json_404s() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let res = Client::raw(&stack.base_url(0)).get("/nope").await?;
    res.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    // A known path with a method it does not have is the same JSON 404, at the root
    // and under /v1.
    for path in ["/rooms/room_x/messages", "/v1/rooms/room_x/messages", "/acks", "/api/v1/rooms/room_x/messages/"] {
        let res = chat_test_support::Response::from(
            Client::raw(&stack.base_url(0)).request(reqwest::Method::PUT, path).send().await?,
        )
        .await?;
        res.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    }
    stack.stop().await
}
