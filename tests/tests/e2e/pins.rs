//! Pins (issue 23) across two gateways: a room admin pins over REST and `/ws`,
//! `/conversations` and the stock `socket.io-client` each get the pin and the unpin;
//! every read path shows `pinned_at` / `pinned_by` (camelCase under `/api/chat`);
//! `GET /rooms/{id}/pins` lists most recent first; pinning is idempotent. Needs
//! PostgreSQL, Redis, NATS, and Node.js for the Socket.IO client.

use chat_test_support::{TestStack, WsClient};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::reactions::{busy_tenant, call, conv_open, conv_url, ws_url};
use crate::socketio::{Node, connected, token};

#[tokio::test(flavor = "multi_thread")]
async fn a_pin_reaches_every_dialect_and_reads_back() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob", "carol", "dave"]).await?;
    let first = t.user("bob").send(&room, "pin me").await?;
    let second = t.user("bob").send(&room, "pin me too").await?;
    let (one, two) =
        (first["message_id"].as_str().unwrap_or_default(), second["message_id"].as_str().unwrap_or_default());

    let mut bob = WsClient::connect(&ws_url(&stack, 1, &room, &t, "bob")).await?;
    bob.expect("connection_status").await?;
    let mut carol = conv_open(&conv_url(&stack, 1, &room, &t, "carol")).await?;
    let mut dave = Node::start(json!({"url": stack.base_url(1), "auth": {"token": token(&t, "dave").await?}}))?;
    connected(&mut dave).await?;
    assert_eq!(dave.call("join-chat-room", json!([room])).await?, json!({"ok": true}));

    // Alice (the room's admin) pins over gateway 0; again keeps the first pin.
    let pinned = call(&alice, Method::PUT, &format!("/rooms/{room}/pins/{one}")).await?.expect(StatusCode::OK)?;
    assert_eq!(pinned.body["pinned_by"], "alice", "{}", pinned.body);
    let at = pinned.body["pinned_at"].clone();
    assert!(at.is_string());
    let again = call(&alice, Method::PUT, &format!("/rooms/{room}/pins/{one}")).await?.expect(StatusCode::OK)?;
    assert_eq!(again.body["pinned_at"], at, "a second pin keeps the first");

    let f = bob.expect("message_pinned").await?;
    assert_eq!((f["data"]["id"].as_str(), f["data"]["pinned_by"].as_str()), (Some(one), Some("alice")), "{f}");
    assert_eq!(f["data"]["pinned_at"], at);
    let f = carol.expect("message.pinned").await?;
    assert_eq!((f["message_id"].as_str(), f["user_id"].as_str()), (Some(one), Some("alice")), "{f}");
    let e = dave.event("message-pinned", |d| d["messageId"] == one).await?;
    assert_eq!((e["chatId"].as_str(), e["pinnedBy"].as_str()), (Some(room.as_str()), Some("alice")), "{e}");
    assert_eq!(e["message"]["pinnedBy"], "alice", "the event carries the message: {e}");
    assert!(bob.seen.iter().all(|f| f["type"] != "message_pinned"), "one event for two pins");

    // The second message, pinned over /api/chat: listed first.
    let res = call(&t.user_on(1, "alice"), Method::PUT, &format!("/api/chat/{room}/pins/{two}")).await?;
    let res = res.expect(StatusCode::OK)?;
    assert_eq!(res.body["data"]["message"]["pinnedBy"], "alice", "{}", res.body);
    let list = t.user("bob").get(&format!("/rooms/{room}/pins")).await?.expect(StatusCode::OK)?.body;
    let ids: Vec<&str> =
        list["pins"].as_array().into_iter().flatten().filter_map(|m| m["message_id"].as_str()).collect();
    assert_eq!(ids, vec![two, one], "most recently pinned first");
    let chat = t.user("bob").get(&format!("/api/chat/{room}/pins")).await?.expect(StatusCode::OK)?.body;
    assert_eq!(chat["data"]["pins"][1]["_id"], one, "{chat}");
    assert_eq!(chat["data"]["pins"][1]["pinnedAt"], at, "{chat}");
    // History shows it on the message.
    let page = t.user("carol").get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?.body;
    assert_eq!(page[0]["pinned_by"], "alice", "{page}");
    assert_eq!(page[0]["pinned_at"], at, "{page}");

    // Unpin: every dialect hears; the list shrinks; again is fine.
    let res = alice.delete(&format!("/rooms/{room}/pins/{one}")).await?.expect(StatusCode::OK)?;
    assert!(res.body.get("pinned_at").is_none(), "{}", res.body);
    let f = bob.expect("message_unpinned").await?;
    assert_eq!((f["data"]["id"].as_str(), f["data"]["unpinned_by"].as_str()), (Some(one), Some("alice")));
    carol.expect_where("message.unpinned", |f| f["message_id"] == one).await?;
    dave.event("message-unpinned", |d| d["messageId"] == one && d["unpinnedBy"] == "alice").await?;
    alice.delete(&format!("/rooms/{room}/pins/{one}")).await?.expect(StatusCode::OK)?;
    let list = alice.get(&format!("/rooms/{room}/pins")).await?.expect(StatusCode::OK)?.body;
    assert_eq!(list["pins"].as_array().map(Vec::len), Some(1), "{list}");
    // A member who is not an admin may not unpin in a group.
    t.user("bob").delete(&format!("/rooms/{room}/pins/{two}")).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;
    stack.stop().await
}
