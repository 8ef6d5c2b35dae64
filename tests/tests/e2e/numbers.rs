//! Numbers read back as written, or are refused when written (issue 25, finding 1): a
//! JSON number such as `1.7976931348623157e308` in user metadata, a message's `meta`, a
//! chat's metadata or a notification's payload reads back equal through every list
//! that holds it, and numbers that would change on the way (`-0`, an integer past 64
//! bits, more digits than a double keeps) are `400` on REST and an error frame on
//! `/ws` and `/conversations`. And one stored value that cannot be read (put there
//! behind the services' back) never breaks the list it is in. Needs PostgreSQL, Redis
//! and NATS.

use chat_test_support::{Client, Response, TestStack, TestTenant, WsClient};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Awkward numbers that read back exactly (as the JSON text a client sends).
const FAITHFUL: &str = r#"{"max":1.7976931348623157e308,"min":-1.7976931348623157e308,"tiny":5e-324,"sum":0.30000000000000004,"big":1e300,"i64":-9223372036854775808,"u64":18446744073709551615,"zero":0.0}"#;

/// Numbers that would not read back as written.
const UNFAITHFUL: [&str; 5] = ["-0", "-0.0", "18446744073709551616", "0.12345678901234567890123", "1e-400"];

async fn put(c: &Client, path: &str, body: String) -> anyhow::Result<Response> {
    Response::from(
        c.request(reqwest::Method::PUT, path).header("Content-Type", "application/json").body(body).send().await?,
    )
    .await
}

async fn tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": "numbers", "rate_limit_per_sec": 100_000})).await
}

#[tokio::test(flavor = "multi_thread")]
async fn awkward_numbers_read_back_or_are_refused() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let faithful: Value = serde_json::from_str(FAITHFUL)?;
    let server = t.user("server");

    // The user directory.
    let body = format!(r#"{{"name":"Alice","metadata":{FAITHFUL}}}"#);
    put(&server, "/users/alice", body).await?.expect(StatusCode::CREATED)?;
    put(&server, "/users/bob", r#"{"name":"Bob"}"#.to_owned()).await?.expect(StatusCode::CREATED)?;
    let alice = server.get("/users/alice").await?.expect(StatusCode::OK)?;
    assert_eq!(alice.body["metadata"], faithful, "the directory entry reads back");
    for n in UNFAITHFUL {
        let body = format!(r#"{{"name":"Alice","metadata":{{"n":{n}}}}}"#);
        put(&server, "/users/alice", body).await?.expect_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some("body"),
        )?;
    }
    assert_eq!(server.get("/users/alice").await?.expect(StatusCode::OK)?.body["metadata"], faithful, "unchanged");

    // A message's meta, over REST, then the history every dialect reads.
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let path = format!("/rooms/{room}/messages");
    let sent = t.user("alice").post_raw(&path, format!(r#"{{"content":"n","meta":{FAITHFUL}}}"#)).await?;
    assert_eq!(sent.expect(StatusCode::CREATED)?.body["meta"], faithful);
    for n in UNFAITHFUL {
        let body = format!(r#"{{"content":"x","meta":{{"n":{n}}}}}"#);
        t.user("alice").post_raw(&path, body).await?.expect_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some("body"),
        )?;
    }
    let page = t.user("bob").get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(page.body.as_array().map(Vec::len), Some(1), "only the faithful message is stored: {}", page.body);
    assert_eq!(page.body[0]["meta"], faithful);
    let api = t.user("bob").get(&format!("/api/v1/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
    assert_eq!(api.body["data"]["messages"][0]["meta"], faithful);

    // Over `/ws` and `/conversations`: an error frame naming the frame, nothing stored.
    let ws_url = format!("{}/ws/{room}?token={}&user_id=alice", stack.ws_url(0), t.api_key);
    let mut ws = WsClient::connect(&ws_url).await?;
    ws.expect("connection_status").await?;
    ws.send_text(r#"{"type":"send_message","data":{"content":"x","local_id":"z1","meta":{"n":-0}}}"#.to_owned())
        .await?;
    let refused = ws.expect("error").await?;
    assert_eq!(refused["data"]["code"], "VALIDATION_ERROR", "{refused}");
    ws.send_text(format!(r#"{{"type":"send_message","data":{{"content":"ws","local_id":"z2","meta":{FAITHFUL}}}}}"#))
        .await?;
    let sent = ws.expect("message_sent").await?;
    assert_eq!(sent["data"]["seq"], 2, "{sent}");
    let conv_url = format!("{}/conversations/{room}/?token={}&user_id=alice", stack.ws_url(0), t.api_key);
    let mut conv = WsClient::connect(&conv_url).await?;
    conv.send(json!({"action": "fetch_messages", "limit": 1})).await?;
    conv.expect("messages_fetched").await?;
    conv.send_text(
        r#"{"action":"send_message","content":"x","local_id":"z3","meta":{"n":18446744073709551616}}"#.to_owned(),
    )
    .await?;
    let refused = conv.expect("error").await?;
    assert_eq!((refused["code"].as_str(), refused["field"].as_str()), (Some("VALIDATION_ERROR"), Some("frame")));
    let page = t.user("bob").get(&path).await?.expect(StatusCode::OK)?;
    assert_eq!(page.body.as_array().map(Vec::len), Some(2), "{}", page.body);
    assert_eq!(page.body[1]["meta"], faithful, "what /ws sent reads back");

    // A context chat's metadata, in the chat list of every participant.
    let chat = t
        .user("alice")
        .post_raw(
            "/api/chat",
            format!(r#"{{"participantIds":["bob"],"type":"group","title":"n","metadata":{FAITHFUL}}}"#),
        )
        .await?
        .expect(StatusCode::CREATED)?;
    let chat_id = chat.body["data"]["chat"]["_id"].as_str().unwrap_or_default().to_owned();
    let list = t.user("bob").get("/api/chat").await?.expect(StatusCode::OK)?;
    let listed = list.body["data"]["chats"].as_array().cloned().unwrap_or_default();
    let ours = listed.iter().find(|c| c["_id"] == json!(chat_id)).cloned().unwrap_or_default();
    assert_eq!(ours["metadata"], faithful, "bob's list shows alice's chat as written: {}", list.body);

    // A notification's payload, in the inbox.
    let body = format!(r#"{{"topic":"n","payload":{FAITHFUL},"targets":{{"user_ids":["bob"]}}}}"#);
    server.post_raw("/notify", body).await?.expect(StatusCode::ACCEPTED)?;
    for n in UNFAITHFUL {
        let body = format!(r#"{{"topic":"n","payload":{{"n":{n}}},"targets":{{"user_ids":["bob"]}}}}"#);
        server.post_raw("/notify", body).await?.expect_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some("body"),
        )?;
    }
    let inbox = t.user("bob").get("/notifications").await?.expect(StatusCode::OK)?;
    let items = inbox.body["notifications"].as_array().or_else(|| inbox.body.as_array()).cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{}", inbox.body);
    assert_eq!(items[0]["body"]["payload"], faithful, "the inbox reads the payload back: {}", inbox.body);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn one_unreadable_value_never_breaks_a_list() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let server = t.user("server");
    put(&server, "/users/bob", r#"{"name":"Bob"}"#.to_owned()).await?.expect(StatusCode::CREATED)?;
    put(&server, "/users/alice", r#"{"name":"Alice","metadata":{"ok":1}}"#.to_owned())
        .await?
        .expect(StatusCode::CREATED)?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let path = format!("/rooms/{room}/messages");
    for content in ["one", "two"] {
        t.user("alice")
            .post(&path, json!({"content": content, "meta": {"ok": 1}}))
            .await?
            .expect(StatusCode::CREATED)?;
    }
    let chat = t
        .user("alice")
        .post("/api/chat", json!({"participantIds": ["bob"], "type": "group", "title": "c", "metadata": {"ok": 1}}))
        .await?
        .expect(StatusCode::CREATED)?;
    let chat_id = chat.body["data"]["chat"]["_id"].as_str().unwrap_or_default().to_owned();
    // Behind the services' back: numbers PostgreSQL keeps and no double holds.
    let mut db = AsyncPgConnection::establish(&chat_test_support::database_url()).await?;
    let bad = r#"{"n": 1e400}"#;
    diesel::sql_query(format!("UPDATE messages SET meta = '{bad}'::jsonb WHERE room_id = '{room}' AND seq = 1"))
        .execute(&mut db)
        .await?;
    diesel::sql_query(format!("UPDATE rooms SET metadata = '{bad}'::jsonb WHERE id = '{chat_id}'"))
        .execute(&mut db)
        .await?;
    diesel::sql_query(format!(
        "UPDATE users SET metadata = '{bad}'::jsonb WHERE tenant_id = '{}' AND id = 'alice'",
        t.id
    ))
    .execute(&mut db)
    .await?;

    let page = t.user("bob").get(&path).await?.expect(StatusCode::OK)?;
    let contents: Vec<&str> =
        page.body.as_array().into_iter().flatten().filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(contents, vec!["one", "two"], "both messages are listed: {}", page.body);
    assert_eq!(page.body[1]["meta"], json!({"ok": 1}));
    let list = t.user("bob").get("/api/chat").await?.expect(StatusCode::OK)?;
    assert!(list.body.to_string().contains(&chat_id), "the chat is listed: {}", list.body);
    t.user("bob").get(&format!("/api/chat/{chat_id}/messages")).await?.expect(StatusCode::OK)?;
    let alice = server.get("/users/alice").await?.expect(StatusCode::OK)?;
    assert_eq!(alice.body["name"], "Alice", "{}", alice.body);
    stack.stop().await
}
