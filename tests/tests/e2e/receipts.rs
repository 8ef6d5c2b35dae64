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
