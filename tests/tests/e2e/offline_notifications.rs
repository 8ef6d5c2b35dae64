//! Offline notifications follow the message log and are decided from presence history
//! as of each message's time: a member whose socket was open across a message and its
//! grace period is never notified of it, however late the pass runs; what members
//! missed is coalesced into one inbox entry and one webhook per member, room and window;
//! a room's size does not multiply the writes per message; and a restart of the
//! notification service loses and repeats nothing. Needs the full stack (real sockets,
//! presence, PostgreSQL, NATS); the window is lengthened where a burst must fit in one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chat_test_support::{Client, Received, TestStack, TestTenant, WebhookReceiver, WsClient, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The window of the tests that send a burst that must fall into one window.
const LONG_WINDOW: Duration = Duration::from_secs(10);

async fn tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": "offline", "rate_limit_per_sec": 100_000})).await
}

async fn webhook(stack: &TestStack, t: &TestTenant) -> anyhow::Result<WebhookReceiver> {
    let hook = WebhookReceiver::start(Some(0)).await?;
    let body = json!({"webhook_url": hook.url, "webhook_secret": "s3cret-s3cret-s3cret", "retry": {"max_attempts": 3, "backoff_ms": 20}});
    stack.admin(Method::PATCH, &format!("/admin/tenants/{}", t.id), Some(body)).await?.expect(StatusCode::OK)?;
    Ok(hook)
}

async fn socket(stack: &TestStack, t: &TestTenant, room: &str, user: &str) -> anyhow::Result<WsClient> {
    let mut ws =
        WsClient::connect(&format!("{}/ws/{room}?token={}&user_id={user}", stack.ws_url(0), t.api_key)).await?;
    ws.expect("connection_status").await?;
    Ok(ws)
}

/// A user's offline-message entries (newest first).
async fn entries(user: &Client) -> anyhow::Result<Vec<Value>> {
    let inbox = user.get("/notifications?limit=100").await?.expect(StatusCode::OK)?;
    let all = inbox.body.as_array().cloned().unwrap_or_default();
    Ok(all.into_iter().filter(|e| e["kind"] == "message").collect())
}

/// The ids an entry or webhook body lists.
fn listed(ids: &Value) -> Vec<String> {
    ids.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// The JSON bodies of the webhook requests received.
fn bodies(got: &[Received]) -> anyhow::Result<Vec<Value>> {
    got.iter().map(|r| Ok(serde_json::from_slice(&r.body)?)).collect()
}

/// Waits, when the current window is nearly over, for the next one to begin, so that a
/// burst sent now falls into one window.
async fn start_of_a_window(window: Duration) {
    let ms = window.as_millis() as i64;
    let into = chat_domain::time::now().timestamp_millis().rem_euclid(ms);
    if into > ms / 2 {
        tokio::time::sleep(Duration::from_millis((ms - into + 50) as u64)).await;
    }
}

/// Sends `n` messages at once; returns them in `seq` order.
async fn burst(user: &Client, room: &str, n: usize) -> anyhow::Result<Vec<Value>> {
    let contents: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    let mut sent = futures_util::future::try_join_all(contents.iter().map(|c| user.send(room, c))).await?;
    sent.sort_by_key(|m| m["seq"].as_i64());
    Ok(sent)
}

fn ids(sent: &[Value]) -> Vec<String> {
    sent.iter().filter_map(|m| m["message_id"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_pass_never_notifies_members_who_were_online() -> anyhow::Result<()> {
    let mut stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let hook = webhook(&stack, &t).await?;
    let room = t.user("alice").create_room("group", &["bob", "carol"]).await?;
    let mut bob = socket(&stack, &t, &room, "bob").await?;

    // The pass is held back from before the message until long after bob has left.
    stack.stop_notification().await?;
    let sent = t.user("alice").send(&room, "seen live").await?;
    bob.expect_where("message", |f| f["data"]["message_id"] == sent["message_id"]).await?;
    // Bob's socket stays open past the message's window and grace period (1 s and
    // 0.4 s in tests), then closes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    bob.close().await?;
    tokio::time::sleep(Duration::from_secs(120)).await;
    stack.start_notification().await?;

    // Carol, offline throughout, is notified: the pass ran and closed that window...
    eventually("carol's entry", || async { Ok(!entries(&t.user("carol")).await?.is_empty()) }).await?;
    let carol = entries(&t.user("carol")).await?;
    assert_eq!(carol.len(), 1, "{carol:?}");
    assert_eq!(listed(&carol[0]["body"]["payload"]["message_ids"]), ids(std::slice::from_ref(&sent)));
    eventually("carol's webhook", || async { Ok(!hook.received().is_empty()) }).await?;
    // ...in the same transaction as anything for bob, who was online when it arrived.
    assert_eq!(entries(&t.user("bob")).await?, Vec::<Value>::new(), "bob had a socket open throughout");
    assert_eq!(entries(&t.user("alice")).await?, Vec::<Value>::new(), "alice sent it");
    stack.stop().await?;
    let users: Vec<Value> = bodies(&hook.received())?.into_iter().map(|b| b["user_id"].clone()).collect();
    assert_eq!(users, vec![json!("carol")], "only carol's webhook");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_messages_to_an_offline_member_make_one_entry_and_one_webhook() -> anyhow::Result<()> {
    let stack = TestStack::builder().notification_config(|c| c.offline_window = LONG_WINDOW).start().await?;
    let t = tenant(&stack).await?;
    let hook = webhook(&stack, &t).await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    start_of_a_window(LONG_WINDOW).await;
    let sent = burst(&t.user("alice"), &room, 50).await?;

    eventually("bob's entry", || async { Ok(!entries(&t.user("bob")).await?.is_empty()) }).await?;
    let bob = entries(&t.user("bob")).await?;
    assert_eq!(bob.len(), 1, "one entry for the window: {bob:?}");
    let payload = &bob[0]["body"]["payload"];
    assert_eq!(payload["count"], 50);
    assert_eq!(listed(&payload["message_ids"]), ids(&sent), "every id, in seq order");
    assert_eq!(payload["title"], "50 new messages");
    assert_eq!(payload["content"], sent[49]["content"], "the newest message as the preview");
    assert_eq!(entries(&t.user("alice")).await?, Vec::<Value>::new());

    eventually("the webhook", || async { Ok(!hook.received().is_empty()) }).await?;
    stack.stop().await?;
    let got = bodies(&hook.received())?;
    assert_eq!(got.len(), 1, "one webhook for the window: {got:?}");
    assert_eq!(got[0]["user_id"], "bob");
    assert_eq!(got[0]["count"], 50);
    assert_eq!(listed(&got[0]["message_ids"]), ids(&sent));
    assert_eq!(got[0]["latest"]["message_id"], sent[49]["message_id"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_room_costs_one_entry_per_offline_member_not_one_per_message() -> anyhow::Result<()> {
    let stack = TestStack::builder().notification_config(|c| c.offline_window = LONG_WINDOW).start().await?;
    let t = tenant(&stack).await?;
    let hook = webhook(&stack, &t).await?;
    let others: Vec<String> = (1..100).map(|i| format!("u{i:02}")).collect();
    let refs: Vec<&str> = others.iter().map(String::as_str).collect();
    let room = t.user("alice").create_room("group", &refs).await?;
    // Alice and four others are online; 95 members are not.
    let mut online = Vec::new();
    for user in ["alice", "u01", "u02", "u03", "u04"] {
        online.push(socket(&stack, &t, &room, user).await?);
    }
    let offline: Vec<&str> = refs[4..].to_vec();
    assert_eq!(offline.len(), 95);

    start_of_a_window(LONG_WINDOW).await;
    let mut sent = burst(&t.user("alice"), &room, 20).await?;
    // One offline member writes too: their entry does not count their own message.
    sent.push(t.user("u99").send(&room, "from u99").await?);

    eventually("95 webhooks", || async { Ok(hook.received().len() >= 95) }).await?;
    for user in &offline {
        let got = entries(&t.user(user)).await?;
        assert_eq!(got.len(), 1, "{user}: one entry for 21 messages: {got:?}");
        let expected = if *user == "u99" { 20 } else { 21 };
        assert_eq!(got[0]["body"]["payload"]["count"], expected, "{user}");
    }
    for user in ["alice", "u01", "u02", "u03", "u04"] {
        assert_eq!(entries(&t.user(user)).await?, Vec::<Value>::new(), "{user} was online");
    }
    stack.stop().await?;
    let got = bodies(&hook.received())?;
    let users: BTreeSet<&str> = got.iter().filter_map(|b| b["user_id"].as_str()).collect();
    assert_eq!(got.len(), 95, "one webhook per offline member");
    assert_eq!(users, offline.iter().copied().collect::<BTreeSet<_>>());
    drop(online);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_the_notification_service_loses_and_repeats_nothing() -> anyhow::Result<()> {
    let mut stack = TestStack::start().await?;
    let t = tenant(&stack).await?;
    let hook = webhook(&stack, &t).await?;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        rooms.push(t.user("alice").create_room("group", &["bob", "carol"]).await?);
    }
    // Messages keep coming while the service restarts twice, so each restart finds
    // windows open, windows due and pages not read yet.
    let alice = t.user("alice");
    let rooms_for_sender = rooms.clone();
    let sender = tokio::spawn(async move {
        let mut sent = Vec::new();
        for i in 0..60 {
            sent.push(alice.send(&rooms_for_sender[i % 3], &format!("m{i}")).await?);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::Ok(sent)
    });
    tokio::time::sleep(Duration::from_millis(900)).await;
    stack.restart_notification().await?;
    tokio::time::sleep(Duration::from_millis(900)).await;
    stack.restart_notification().await?;
    let sent = sender.await??;
    let all: BTreeSet<String> = ids(&sent).into_iter().collect();

    // Each member's entries list every message once: counted across entries, and
    // listed without repeats.
    for user in ["bob", "carol"] {
        eventually(&format!("{user}'s entries to count 60"), || async {
            let got = entries(&t.user(user)).await?;
            Ok(got.iter().filter_map(|e| e["body"]["payload"]["count"].as_u64()).sum::<u64>() >= 60)
        })
        .await?;
        let got = entries(&t.user(user)).await?;
        let listed: Vec<String> = got.iter().flat_map(|e| listed(&e["body"]["payload"]["message_ids"])).collect();
        assert_eq!(listed.len(), 60, "{user}: no message twice");
        assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), all, "{user}: every message");
    }
    eventually("every webhook", || async {
        let got = bodies(&hook.received())?;
        Ok(got.iter().filter_map(|b| b["count"].as_u64()).sum::<u64>() >= 120)
    })
    .await?;
    stack.stop().await?;
    let got = bodies(&hook.received())?;
    let mut per_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in &got {
        per_user
            .entry(b["user_id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .extend(listed(&b["message_ids"]));
    }
    assert_eq!(per_user.keys().map(String::as_str).collect::<Vec<_>>(), ["bob", "carol"]);
    for (user, listed) in per_user {
        assert_eq!(listed.len(), 60, "{user}: webhooks list no message twice");
        assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), all, "{user}: webhooks list every message");
    }
    let deliveries: BTreeSet<_> = hook.received().iter().map(|r| r.headers.get("x-chat-delivery").cloned()).collect();
    assert_eq!(deliveries.len(), got.len(), "each delivery once");
    Ok(())
}
