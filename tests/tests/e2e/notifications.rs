//! Notifications: `/notify` to users, rooms, topic subscribers or the whole tenant;
//! live frames for online users and the inbox for offline ones; signed webhooks that
//! retry with backoff and end as dead letters an admin can list and replay.

use chat_test_support::{TestStack, TestTenant, WebhookReceiver, WsClient, eventually};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": "n", "rate_limit_per_sec": 100_000})).await
}

async fn set_webhook(stack: &TestStack, t: &TestTenant, url: &str, attempts: u32) -> anyhow::Result<()> {
    let body = json!({
        "webhook_url": url,
        "webhook_secret": "s3cret-s3cret-s3cret",
        "retry": {"max_attempts": attempts, "backoff_ms": 20},
    });
    stack.admin(Method::PATCH, &format!("/admin/tenants/{}", t.id), Some(body)).await?.expect(StatusCode::OK)?;
    Ok(())
}

fn verify_signature(r: &chat_test_support::Received) -> anyhow::Result<()> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret-s3cret-s3cret")?;
    mac.update(&r.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    anyhow::ensure!(r.headers.get("x-chat-signature") == Some(&expected), "bad signature: {:?}", r.headers);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn online_users_get_frames_offline_users_an_inbox() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let mut alice =
        WsClient::connect(&format!("{}/ws/{room}?token={}&user_id=alice", stack.ws_url(0), t.api_key)).await?;
    alice.expect("connection_status").await?;

    let res = t
        .user("ops")
        .post(
            "/notify",
            json!({"topic": "order.shipped", "payload": {"title": "Shipped", "order_id": "12345"}, "targets": {"user_ids": ["alice", "bob"]}}),
        )
        .await?
        .expect(StatusCode::ACCEPTED)?;
    assert!(res.str("notification_id")?.starts_with("notif_"));
    assert!(res.str("created_at")?.ends_with('Z'));
    assert_eq!(res.body["recipients"], 2);

    let frame = alice.expect("notification").await?;
    assert_eq!(frame["data"]["id"], res.body["notification_id"]);
    assert_eq!(frame["data"]["title"], "Shipped");
    assert_eq!(frame["data"]["topic"], "order.shipped");
    assert_eq!(frame["data"]["payload"]["order_id"], "12345");

    // Bob was offline: it waits in his inbox, and comes on his next connect.
    let inbox = t.user("bob").get("/notifications").await?.expect(StatusCode::OK)?;
    assert_eq!(inbox.body[0]["id"], res.body["notification_id"]);
    assert_eq!(inbox.body[0]["delivered"], false);
    let mut bob = WsClient::connect(&format!("{}/ws/{room}?token={}&user_id=bob", stack.ws_url(0), t.api_key)).await?;
    let frame = bob.expect("notification").await?;
    assert_eq!(frame["data"]["id"], res.body["notification_id"]);
    let inbox = t.user("bob").get("/notifications").await?.expect(StatusCode::OK)?;
    assert_eq!(inbox.body[0]["delivered"], true);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_rooms_subscribers_and_everyone() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    t.user("carol").create_room("group", &["dave"]).await?;
    let count = |r: &chat_test_support::Response| r.body["recipients"].as_u64();
    let ops = t.user("ops");
    let notify = |targets: Value| ops.post("/notify", json!({"topic": "t", "payload": {}, "targets": targets}));
    assert_eq!(count(&notify(json!({"room_id": room})).await?.expect(StatusCode::ACCEPTED)?), Some(2));

    // Subscriptions.
    let carol = t.user("carol");
    carol.post("/subscriptions", json!({"topic": "t"})).await?.expect(StatusCode::CREATED)?;
    carol.post("/subscriptions", json!({"topic": "t"})).await?.expect(StatusCode::CREATED)?;
    carol.post("/subscriptions", json!({"topic": "u"})).await?.expect(StatusCode::CREATED)?;
    let subs = carol.get("/subscriptions").await?.expect(StatusCode::OK)?;
    assert_eq!(subs.body["topics"], json!(["t", "u"]));
    assert_eq!(count(&notify(json!({"topic_subscribers": true})).await?.expect(StatusCode::ACCEPTED)?), Some(1));
    // Union of targets, each user once.
    let both = notify(json!({"topic_subscribers": true, "room_id": room, "user_ids": ["alice"]})).await?;
    assert_eq!(count(&both.expect(StatusCode::ACCEPTED)?), Some(3));
    carol.delete("/subscriptions/u").await?.expect(StatusCode::OK)?;
    carol.delete("/subscriptions/u").await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    // No targets: the whole tenant (everyone with a room).
    let all =
        t.user("ops").post("/notify", json!({"topic": "all", "payload": {}})).await?.expect(StatusCode::ACCEPTED)?;
    assert_eq!(count(&all), Some(4));

    // Bad input.
    for (body, field) in [
        (json!({"payload": {}}), "topic"),
        (json!({"topic": "", "payload": {}}), "topic"),
        (json!({"topic": "x", "payload": [1]}), "payload"),
        (json!({"topic": "x", "payload": {"t": "nul \u{0}"}}), "payload"),
        (json!({"topic": "x", "targets": {"user_ids": ["a.b"]}}), "targets.user_ids"),
        (json!({"topic": "x", "targets": {"topic_subscribers": "yes"}}), "targets.topic_subscribers"),
    ] {
        t.user("ops").post("/notify", body).await?.expect_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        )?;
    }
    let other = tenant(&stack).await?;
    other.user("ops").post("/notify", json!({"topic": "x", "targets": {"room_id": room}})).await?.expect_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    )?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_retry_until_they_succeed_once() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let hook = WebhookReceiver::start(Some(2)).await?;
    set_webhook(&stack, &t, &hook.url, 5).await?;
    t.user("ops")
        .post("/notify", json!({"topic": "ping", "payload": {"n": 1}, "targets": {"user_ids": ["bob"]}}))
        .await?;
    eventually("a successful delivery", || async { Ok(hook.received().iter().any(|r| r.status == 200)) }).await?;
    let got = hook.received();
    assert_eq!(got.iter().map(|r| r.status).collect::<Vec<_>>(), vec![500, 500, 200], "two failures, then one success");
    let ids: std::collections::BTreeSet<_> = got.iter().map(|r| r.headers.get("x-chat-delivery").cloned()).collect();
    assert_eq!(ids.len(), 1, "every retry carries the same delivery id");
    for r in &got {
        verify_signature(r)?;
    }
    let body: Value = serde_json::from_slice(&got[2].body)?;
    assert_eq!(body["type"], "notification");
    assert_eq!(body["user_id"], "bob");
    assert_eq!(body["attempt"], 3);
    assert_eq!(body["notification"]["payload"]["n"], 1);
    // Delivered once: nothing more comes, and nothing is a dead letter.
    let dead = stack
        .admin(Method::GET, &format!("/admin/dead-letters?tenant_id={}", t.id), None)
        .await?
        .expect(StatusCode::OK)?;
    assert_eq!(dead.body["failed_notifications"], json!([]));
    stack.stop().await?;
    assert_eq!(hook.received().len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_webhooks_become_dead_letters_that_can_be_replayed() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let hook = WebhookReceiver::start(None).await?;
    set_webhook(&stack, &t, &hook.url, 3).await?;
    let sent = t
        .user("ops")
        .post("/notify", json!({"topic": "doomed", "payload": {}, "targets": {"user_ids": ["bob"]}}))
        .await?;
    let path = format!("/admin/dead-letters?tenant_id={}", t.id);
    eventually("a dead letter", || async {
        let res = stack.admin(Method::GET, &path, None).await?;
        Ok(res.body["failed_notifications"].as_array().is_some_and(|a| !a.is_empty()))
    })
    .await?;
    let dead = stack.admin(Method::GET, &path, None).await?.expect(StatusCode::OK)?;
    let letter = dead.body["failed_notifications"][0].clone();
    assert_eq!(letter["notification_id"], sent.body["notification_id"]);
    assert_eq!(letter["topic"], "doomed");
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["error"], "HTTP 500");
    assert!(letter["last_attempt_at"].is_string());
    assert_eq!(hook.received().len(), 3, "exactly max_attempts tries");
    // It went out on the bus too.
    let js = async_nats::jetstream::new(stack.bus.client().clone());
    let mut dlq = js.get_stream(stack.bus.subjects().dead_letter_stream()).await?;
    assert_eq!(dlq.info().await?.state.messages, 1);

    // Replay, now with a receiver that succeeds.
    let good = WebhookReceiver::start(Some(0)).await?;
    set_webhook(&stack, &t, &good.url, 3).await?;
    let id = letter["id"].as_str().unwrap_or_default();
    stack.admin(Method::POST, &format!("/admin/dead-letters/{id}/retry"), None).await?.expect(StatusCode::ACCEPTED)?;
    eventually("the replay", || async { Ok(good.received().len() == 1) }).await?;
    let dead = stack.admin(Method::GET, &path, None).await?.expect(StatusCode::OK)?;
    assert_eq!(dead.body["failed_notifications"], json!([]));
    // Bad requests.
    stack.admin(Method::POST, "/admin/dead-letters/dlv_nope/retry", None).await?.expect_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    )?;
    stack.admin(Method::GET, "/admin/dead-letters", None).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("tenant_id"),
    )?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_members_are_notified_of_messages() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let hook = WebhookReceiver::start(Some(0)).await?;
    set_webhook(&stack, &t, &hook.url, 3).await?;
    let room = t.user("alice").create_room("group", &["bob", "carol"]).await?;
    let mut carol =
        WsClient::connect(&format!("{}/ws/{room}?token={}&user_id=carol", stack.ws_url(0), t.api_key)).await?;
    carol.expect("connection_status").await?;
    let sent = t.user("alice").send(&room, "are you there?").await?;
    carol.expect("message").await?;

    // Bob (offline) gets a webhook call and an inbox entry for the room's window: one
    // message, listed by id. Carol (online) and the sender get neither.
    eventually("the offline webhook", || async { Ok(!hook.received().is_empty()) }).await?;
    let got = hook.received();
    assert_eq!(got.len(), 1, "one offline member, one delivery: {got:?}");
    verify_signature(&got[0])?;
    let body: Value = serde_json::from_slice(&got[0].body)?;
    assert_eq!(body["type"], "message");
    assert_eq!(body["user_id"], "bob");
    assert_eq!(body["room_id"], room.as_str());
    assert_eq!(body["count"], 1);
    assert_eq!(body["message_ids"], json!([sent["message_id"]]));
    assert_eq!(body["first_seq"], sent["seq"]);
    assert_eq!(body["latest"]["message_id"], sent["message_id"]);
    assert_eq!(body["latest"]["content"], "are you there?");
    assert!(body["window_start"].is_string() && body["window_end"].is_string(), "{body}");
    assert_eq!(got[0].headers.get("x-chat-event").map(String::as_str), Some("message"));
    let inbox = t.user("bob").get("/notifications").await?.expect(StatusCode::OK)?;
    assert_eq!(inbox.body.as_array().map(Vec::len), Some(1), "{}", inbox.body);
    assert_eq!(inbox.body[0]["kind"], "message");
    let payload = &inbox.body[0]["body"]["payload"];
    assert_eq!(payload["count"], 1);
    assert_eq!(payload["message_ids"], json!([sent["message_id"]]));
    for user in ["carol", "alice"] {
        let inbox = t.user(user).get("/notifications").await?.expect(StatusCode::OK)?;
        assert_eq!(inbox.body, json!([]), "{user} was online or sent it");
    }
    // On his next connect bob gets it as a notification frame.
    let mut bob = WsClient::connect(&format!("{}/ws/{room}?token={}&user_id=bob", stack.ws_url(0), t.api_key)).await?;
    let frame = bob.expect("notification").await?;
    assert_eq!(frame["data"]["id"], inbox.body[0]["id"]);
    assert_eq!(frame["data"]["kind"], "message");
    assert_eq!(frame["data"]["title"], "New message from alice");
    assert_eq!(frame["data"]["content"], "are you there?");
    assert_eq!(frame["data"]["action_url"], format!("/rooms/{room}"));
    assert_eq!(frame["data"]["payload"]["count"], 1);
    assert_eq!(frame["room_id"], room.as_str());
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_offline_webhooks_are_dead_letters_naming_a_message() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let hook = WebhookReceiver::start(None).await?;
    set_webhook(&stack, &t, &hook.url, 2).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let sent = t.user("alice").send(&room, "anyone?").await?;
    let path = format!("/admin/dead-letters?tenant_id={}", t.id);
    eventually("a dead letter", || async {
        let res = stack.admin(Method::GET, &path, None).await?;
        Ok(res.body["failed_messages"].as_array().is_some_and(|a| !a.is_empty()))
    })
    .await?;
    let dead = stack.admin(Method::GET, &path, None).await?.expect(StatusCode::OK)?;
    let letter = &dead.body["failed_messages"][0];
    assert_eq!(letter["message_id"], sent["message_id"], "the first message the delivery lists");
    assert_eq!(letter["user_id"], "bob");
    assert_eq!(letter["room_id"], room.as_str());
    assert_eq!(letter["attempts"], 2);
    assert_eq!(hook.received().len(), 2, "exactly max_attempts tries");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_deliveries_survive_a_restart_of_the_notification_service() -> anyhow::Result<()> {
    let mut stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let hook = WebhookReceiver::start(Some(2)).await?;
    // Slow retries, so the restart lands between attempts.
    let body = json!({
        "webhook_url": hook.url,
        "webhook_secret": "s3cret-s3cret-s3cret",
        "retry": {"max_attempts": 5, "backoff_ms": 700},
    });
    stack.admin(Method::PATCH, &format!("/admin/tenants/{}", t.id), Some(body)).await?.expect(StatusCode::OK)?;
    t.user("ops").post("/notify", json!({"topic": "survive", "targets": {"user_ids": ["bob"]}})).await?;
    eventually("the first failed attempt", || async { Ok(!hook.received().is_empty()) }).await?;
    stack.restart_notification().await?;
    eventually("delivery after the restart", || async { Ok(hook.received().iter().any(|r| r.status == 200)) }).await?;
    let got = hook.received();
    assert_eq!(got.iter().filter(|r| r.status == 200).count(), 1, "delivered exactly once: {got:?}");
    let ids: std::collections::BTreeSet<_> = got.iter().map(|r| r.headers.get("x-chat-delivery").cloned()).collect();
    assert_eq!(ids.len(), 1, "the redelivery kept its delivery id");
    let last: Value = serde_json::from_slice(&got[got.len() - 1].body)?;
    assert_eq!(last["attempt"], got.len(), "attempts were counted across the restart");
    stack.stop().await
}
