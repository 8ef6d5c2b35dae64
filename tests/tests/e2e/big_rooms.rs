//! Big rooms are linear (issue 21): n members joining a room cost O(n) frames, not one
//! presence frame per join to every member already there. Presence's big-room threshold
//! is lowered so a room of a few dozen members is big. Also: a user's arrival and
//! departure within a room's presence window cancel, and a small room's presence is
//! as before. Needs the servers of `TestStack` (NATS, Redis, PostgreSQL).

use std::time::Duration;

use chat_test_support::{TestStack, TestTenant, WsClient, eventually};
use reqwest::StatusCode;
use serde_json::Value;

/// Presence's threshold in these tests: a room with more users online is big.
const BIG: u64 = 5;

fn url(stack: &TestStack, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/ws/{room}?token={}&user_id={user}&user_name={user}", stack.ws_url(0), t.api_key)
}

/// Users presence counts in the room (online, or closing within the grace, until the
/// sweeper has removed them), read straight from its Redis layout.
async fn users_in_redis(stack: &TestStack, t: &TestTenant, room: &str) -> anyhow::Result<u64> {
    let mut redis = chat_redis::connect(&chat_test_support::redis_url(), "test").await?;
    let key = format!("{}:pr:users:{}:{room}", stack.prefix, t.id);
    Ok(redis::cmd("HLEN").arg(key).query_async(&mut redis).await?)
}

/// Reads each socket up to the message `marker` (sent after everything the test
/// counts); the frames of `kind` each had before it.
async fn frames_before(sockets: &mut [WsClient], marker: &str, kind: &str) -> anyhow::Result<Vec<Vec<Value>>> {
    let mut found = Vec::new();
    for ws in sockets.iter_mut() {
        ws.seen.clear();
        ws.expect_where("message", |f| f["data"]["content"] == marker).await?;
        found.push(ws.seen.iter().filter(|f| f["type"] == kind).cloned().collect());
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread")]
async fn joining_a_big_room_costs_frames_linear_in_its_members_and_the_list_stays_readable() -> anyhow::Result<()> {
    let stack = TestStack::builder().presence_config(|c| c.big_room = BIG).start().await?;
    let t = stack.tenant().await?;
    let n = 30usize;
    let users: Vec<String> = (0..n).map(|i| format!("m{i:02}")).collect();
    let others: Vec<&str> = users[1..].iter().map(String::as_str).collect();
    let room = t.user(&users[0]).create_room("group", &others).await?;

    // One at a time, so each join is told to exactly the sockets already there.
    let mut sockets = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let mut ws = WsClient::connect(&url(&stack, &room, &t, user)).await?;
        let status = ws.expect("connection_status").await?;
        let data = &status["data"];
        if i < BIG as usize {
            // A small room (so far): the whole list, as ever, and no count or flag.
            let listed: Vec<&str> =
                data["online_users"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            assert_eq!(listed, users[..=i].iter().map(String::as_str).collect::<Vec<_>>(), "{status}");
            assert!(data.get("total_online").is_none() && data.get("online_users_complete").is_none(), "{status}");
        } else {
            // A big room: the user alone, the count, and the flag that the list is partial.
            assert_eq!(data["online_users"], serde_json::json!([user]), "{status}");
            assert_eq!(data["total_online"], i + 1, "{status}");
            assert_eq!(data["online_users_complete"], false, "{status}");
        }
        sockets.push(ws);
    }

    // Everything the joins caused has reached each socket before this message.
    t.user(&users[0]).send(&room, "all here").await?;
    let joined = frames_before(&mut sockets, "all here", "user_joined").await?;
    let total: usize = joined.iter().map(Vec::len).sum();
    // The first BIG joins were announced (to 0, 1, .. BIG-1 sockets); none after: the
    // room was big. Announcing every join to everyone there would be n(n-1)/2 = 435.
    let small = BIG as usize;
    assert_eq!(total, small * (small - 1) / 2, "{joined:?}");
    for (i, frames) in joined.iter().enumerate() {
        assert!(frames.iter().all(|f| f["data"]["user_id"].as_str() < Some(users[small].as_str())), "{i}: {frames:?}");
    }

    // The whole list is still there on demand: over the socket and over REST.
    sockets[n - 1].send(serde_json::json!({"type": "get_online_users", "data": {}})).await?;
    let status = sockets[n - 1].expect("connection_status").await?;
    assert_eq!(status["data"]["online_users"].as_array().map(Vec::len), Some(n), "{status}");
    assert!(status["data"].get("online_users_complete").is_none(), "{status}");
    let res = t.user(&users[3]).get(&format!("/api/v1/rooms/{room}/online")).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["data"]["total_online"], n, "{:?}", res.body);

    // Departures from a room that stays big are not announced one by one either.
    let leaving = 10;
    for ws in sockets.drain(n - leaving..) {
        ws.close().await?;
    }
    eventually("presence to sweep the ten who left", || async {
        Ok(users_in_redis(&stack, &t, &room).await? == (n - leaving) as u64)
    })
    .await?;
    t.user(&users[0]).send(&room, "fewer now").await?;
    let left = frames_before(&mut sockets, "fewer now", "user_left").await?;
    assert!(left.iter().all(Vec::is_empty), "{left:?}");
    let res = t.user(&users[3]).get(&format!("/api/v1/rooms/{room}/online")).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["data"]["total_online"], n - leaving, "{:?}", res.body);
    drop(sockets);
    stack.stop().await
}

/// A user who arrives and leaves within a room's presence window is never announced:
/// the arrival and the departure cancel. One who arrives and stays is announced when
/// the window ends, as before.
#[tokio::test(flavor = "multi_thread")]
async fn an_arrival_and_departure_within_the_presence_window_cancel() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateway_config(|c| c.ws.presence_window = Duration::from_secs(5)).start().await?;
    let t = stack.tenant().await?;
    let room = t.user("alice").create_room("group", &["xavier", "yann"]).await?;
    let mut alice = WsClient::connect(&url(&stack, &room, &t, "alice")).await?;
    alice.expect("connection_status").await?;

    // Xavier comes and goes; presence announces both once his grace is over.
    let mut xavier = WsClient::connect(&url(&stack, &room, &t, "xavier")).await?;
    xavier.expect("connection_status").await?;
    xavier.close().await?;
    eventually("presence to sweep xavier", || async { Ok(users_in_redis(&stack, &t, &room).await? == 1) }).await?;

    // Yann comes and stays.
    let mut yann = WsClient::connect(&url(&stack, &room, &t, "yann")).await?;
    yann.expect("connection_status").await?;
    alice.expect_where("user_joined", |f| f["data"]["user_id"] == "yann").await?;
    let about_xavier: Vec<&Value> = alice.seen.iter().filter(|f| f["data"]["user_id"] == "xavier").collect();
    assert!(about_xavier.is_empty(), "{about_xavier:?}");
    // Counted: the two changes that cancelled (the gateway's `/metrics` takes the operator key).
    let metrics = stack.http.get(stack.url("/metrics")).header("X-API-Key", &stack.admin_key).send().await?;
    let metrics = metrics.text().await?;
    let coalesced = metrics
        .lines()
        .find_map(|l| l.strip_prefix("chat_gateway_presence_coalesced_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(coalesced.is_some_and(|c| c >= 2.0), "{coalesced:?}");

    // A small room otherwise as before: yann's departure reaches alice.
    drop(yann);
    alice.expect_where("user_left", |f| f["data"]["user_id"] == "yann").await?;
    stack.stop().await
}
