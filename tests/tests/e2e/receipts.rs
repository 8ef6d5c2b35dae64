//! Delivered and read cursors: they only move forward (read implies delivered), the
//! room sees `delivered` / `read`, and WebSocket clients can move them by frame.

use chat_test_support::{TestStack, WsClient};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn cursors_only_move_forward() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant_with(json!({"name": "r", "rate_limit_per_sec": 100_000})).await?;
    let (alice, bob) = (t.user("alice"), t.user("bob"));
    let room = alice.create_room("dm", &["bob"]).await?;
    for i in 0..5 {
        alice.send(&room, &format!("m{i}")).await?;
    }
    let ack = |seq: i64| bob.post("/acks", json!({"room_id": room, "seq": seq}));
    let res = ack(3).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["success"], true);
    assert_eq!(res.body["delivered_seq"], 3);
    assert_eq!(res.body["read_seq"], 0);
    // Backwards is a no-op, not an error.
    let res = ack(1).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["delivered_seq"], 3);
    // Past the newest message counts as the newest.
    let res = ack(99).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["delivered_seq"], 5);

    let read_path = format!("/rooms/{room}/read");
    let read = |seq: i64| bob.post(&read_path, json!({"seq": seq}));
    let res = read(2).await?.expect(StatusCode::OK)?;
    assert_eq!((res.body["delivered_seq"].clone(), res.body["read_seq"].clone()), (json!(5), json!(2)));
    let res = read(1).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["read_seq"], 2);
    let res = read(5).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["read_seq"], 5);

    // Errors.
    bob.post("/acks", json!({"room_id": room})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("seq"),
    )?;
    bob.post("/acks", json!({"room_id": room, "seq": -1})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("seq"),
    )?;
    bob.post("/acks", json!({"seq": 1})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("room_id"),
    )?;
    t.user("eve").post("/acks", json!({"room_id": room, "seq": 1})).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;
    let other = stack.tenant().await?;
    other.user("bob").post("/acks", json!({"room_id": room, "seq": 1})).await?.expect_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    )?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn read_frames_reach_the_room() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack.tenant_with(json!({"name": "r", "rate_limit_per_sec": 100_000})).await?;
    let room = t.user("alice").create_room("dm", &["bob"]).await?;
    let sent = t.user("alice").send(&room, "hello").await?;
    let ws = |gw: usize, user: &str| format!("{}/ws/{room}?token={}&user_id={user}", stack.ws_url(gw), t.api_key);
    let mut alice = WsClient::connect(&ws(0, "alice")).await?;
    alice.expect("connection_status").await?;
    let mut bob = WsClient::connect(&ws(1, "bob")).await?;
    bob.expect("connection_status").await?;
    bob.send(json!({"type": "ack", "data": {"seq": sent["seq"]}})).await?;
    let cursor = bob.expect("cursor").await?;
    assert_eq!(cursor["data"]["delivered_seq"], 1);
    let delivered = alice.expect("delivered").await?;
    assert_eq!(delivered["data"]["user_id"], "bob");
    assert_eq!(delivered["data"]["seq"], 1);
    bob.send(json!({"type": "read", "data": {"seq": 1}})).await?;
    assert_eq!(bob.expect("cursor").await?["data"]["read_seq"], 1);
    let read = alice.expect("read").await?;
    assert_eq!(read["data"], json!({"user_id": "bob", "seq": 1, "at": read["data"]["at"]}));
    // A bad read frame is an error frame.
    bob.send(json!({"type": "read", "data": {"seq": "x"}})).await?;
    assert_eq!(bob.expect("error").await?["data"]["code"], "VALIDATION_ERROR");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn unread_counts_follow_sends_acks_and_reads() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant_with(json!({"name": "u", "rate_limit_per_sec": 100_000})).await?;
    let (alice, bob) = (t.user("alice"), t.user("bob"));
    let quiet = alice.create_room("group", &["bob"]).await?;
    let busy = alice.create_room("dm", &["bob"]).await?;
    let rooms = |c: &chat_test_support::Client| {
        let c = c.clone();
        async move {
            let res = c.get("/rooms").await?.expect(StatusCode::OK)?;
            anyhow::Ok(res.body.as_array().cloned().unwrap_or_default())
        }
    };
    let unread = |list: &[serde_json::Value], room: &str| {
        list.iter().find(|r| r["room_id"] == room).map(|r| r["unread_count"].as_i64().unwrap_or(-1))
    };
    let list = rooms(&bob).await?;
    assert_eq!(unread(&list, &quiet), Some(0));
    assert_eq!(unread(&list, &busy), Some(0));

    for i in 0..3 {
        alice.send(&busy, &format!("m{i}")).await?;
    }
    let list = rooms(&bob).await?;
    assert_eq!(unread(&list, &busy), Some(3));
    assert_eq!(list[0]["room_id"], busy.as_str(), "the active room comes first");
    assert_eq!(list[0]["last_message"]["content"], "m2");
    assert_eq!(list[0]["last_message"]["seq"], 3);
    assert!(list[0]["last_activity_at"].is_string());
    // The sender has nothing unread in a room they just wrote to.
    assert_eq!(unread(&rooms(&alice).await?, &busy), Some(0));

    // Delivery is not reading.
    bob.post("/acks", json!({"room_id": busy, "seq": 3})).await?.expect(StatusCode::OK)?;
    assert_eq!(unread(&rooms(&bob).await?, &busy), Some(3));
    bob.post(&format!("/rooms/{busy}/read"), json!({"seq": 2})).await?.expect(StatusCode::OK)?;
    assert_eq!(unread(&rooms(&bob).await?, &busy), Some(1));
    // A read cursor never moves back, so the count never grows from an old read.
    bob.post(&format!("/rooms/{busy}/read"), json!({"seq": 1})).await?.expect(StatusCode::OK)?;
    assert_eq!(unread(&rooms(&bob).await?, &busy), Some(1));
    alice.send(&busy, "m3").await?;
    assert_eq!(unread(&rooms(&bob).await?, &busy), Some(2));
    // Bob replies: everything before his message counts as seen.
    bob.send(&busy, "reply").await?;
    assert_eq!(unread(&rooms(&bob).await?, &busy), Some(0));
    assert_eq!(unread(&rooms(&alice).await?, &busy), Some(1));

    // Paging and isolation.
    let page = bob.get("/rooms?limit=1").await?.expect(StatusCode::OK)?;
    assert_eq!(page.body.as_array().map(Vec::len), Some(1));
    let stranger = stack.tenant().await?;
    let res = stranger.user("bob").get("/rooms").await?.expect(StatusCode::OK)?;
    assert_eq!(res.body, json!([]));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sender_sees_sent_then_delivered_then_read() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack.tenant_with(json!({"name": "s", "rate_limit_per_sec": 100_000})).await?;
    let room = t.user("alice").create_room("dm", &["bob"]).await?;
    let mut alice =
        WsClient::connect(&format!("{}/ws/{room}?token={}&user_id=alice", stack.ws_url(0), t.api_key)).await?;
    alice.expect("connection_status").await?;
    alice.send(json!({"type": "send_message", "data": {"content": "ping?", "local_id": "l1"}})).await?;
    let sent = alice.expect("message_sent").await?;
    assert_eq!(sent["data"]["status"], "sent");
    let id = sent["data"]["id"].clone();

    let bob = t.user_on(1, "bob");
    bob.post("/acks", json!({"room_id": room, "seq": 1})).await?.expect(StatusCode::OK)?;
    let delivered = alice.expect("message_status").await?;
    assert_eq!(delivered["data"]["status"], "delivered");
    assert_eq!(delivered["data"]["message_ids"], json!([id]));
    assert_eq!(delivered["data"]["user_id"], "bob");
    assert_eq!(delivered["data"]["up_to_seq"], 1);
    // Moving a cursor backwards (or to where it is) says nothing.
    bob.post("/acks", json!({"room_id": room, "seq": 1})).await?.expect(StatusCode::OK)?;
    bob.post(&format!("/rooms/{room}/read"), json!({"seq": 1})).await?.expect(StatusCode::OK)?;
    let read = alice.expect("message_status").await?;
    assert_eq!(read["data"]["status"], "read");
    assert_eq!(read["data"]["message_ids"], json!([id]));
    assert!(
        alice.seen.iter().all(|f| f["type"] != "message_status"),
        "no status frame besides delivered and read: {:?}",
        alice.seen
    );
    stack.stop().await
}
