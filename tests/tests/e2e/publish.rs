//! Messages are published from the message log, not from an outbox row per message:
//! a message-store that dies between committing a batch and publishing it still has
//! every one of those messages delivered exactly once — live, by the relay of another
//! replica once the dead one's lease runs out, and on resume. Needs the machine's
//! PostgreSQL and NATS.

use chat_test_support::{TestStack, WsClient};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_commit_and_publish_loses_and_repeats_nothing() -> anyhow::Result<()> {
    // The only message-store commits sends but never publishes them (as a process that
    // dies right after each commit would look from outside).
    let mut stack = TestStack::builder().message_store_config(|c| c.crash_before_publish = true).start().await?;
    let t = stack.tenant_with(json!({"name": "crash", "rate_limit_per_sec": 100_000})).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let base = format!("{}/ws/{room}?token={}&user_id=bob", stack.ws_url(0), t.api_key);
    let url = |last_seq: &str| format!("{base}{last_seq}");
    let mut bob = WsClient::connect(&url("")).await?;
    bob.expect("connection_status").await?;
    for i in 1..=5 {
        let sent = alice.send(&room, &format!("committed {i}")).await?;
        assert_eq!(sent["seq"], i, "every send is committed and acknowledged");
    }
    // The process dies; another replica starts, finds the dead lease and republishes.
    stack.kill_message_store(0)?;
    stack.add_message_store(|_| {}).await?;
    for i in 1..=5 {
        let m = bob.expect("message").await?;
        assert_eq!(m["data"]["seq"], i, "delivered live, in order, once");
        assert_eq!(m["data"]["content"], format!("committed {i}"));
    }
    // The next message follows directly: nothing was delivered twice in between.
    alice.send(&room, "after the crash").await?;
    let m = bob.expect("message").await?;
    assert_eq!(m["data"]["seq"], 6);
    // Resume from the start: each message once, then the live stream.
    let mut again = WsClient::connect(&url("&last_seq=0")).await?;
    again.expect("connection_status").await?;
    for i in 1..=6 {
        assert_eq!(again.expect("message").await?["data"]["seq"], i);
    }
    alice.send(&room, "live again").await?;
    assert_eq!(again.expect("message").await?["data"]["seq"], 7);
    assert_eq!(bob.expect("message").await?["data"]["seq"], 7);
    stack.stop().await
}
