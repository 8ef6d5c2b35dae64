//! Presence through real sockets and the bus: the history of when users were online
//! (`online_history`, many spans in one request, incomplete before the history began,
//! bad spans refused), and gateway leases (renewals keep a gateway's sockets; a lease
//! that runs out closes them at its end, and the users whose last socket it was leave),
//! and presence rebuilding from the gateways what its Redis lost. Needs the servers of
//! `TestStack` (NATS, Redis, PostgreSQL).

use std::time::Duration;

use chat_domain::ids::{GatewayId, RoomId, TenantId, UserId};
use chat_domain::proto::presence::{
    Connect, ConnectMany, GatewayLease, GetOnline, HistorySpan, OnlineHistory, RoomHistory, SocketOpen,
};
use chat_test_support::{TestStack, TestTenant, WsClient, eventually};
use chrono::{DateTime, TimeDelta, Utc};

fn url(stack: &TestStack, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/ws/{room}?token={}&user_id={user}&user_name={user}", stack.ws_url(0), t.api_key)
}

/// Now, to the millisecond (the precision presence keeps).
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn span(t: &TestTenant, room: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<HistorySpan> {
    Ok(HistorySpan { tenant_id: TenantId::parse(t.id.as_str())?, room_id: RoomId::parse(room)?, from, to })
}

async fn history(stack: &TestStack, spans: Vec<HistorySpan>) -> anyhow::Result<Vec<RoomHistory>> {
    stack.bus.request(&OnlineHistory { spans }).await.map_err(|e| anyhow::anyhow!("online_history: {e}"))
}

/// One user's intervals, as `(from, to)`.
type Found = (String, Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>);

/// `user → [(from, to)]` of one answer.
fn intervals(h: &RoomHistory) -> Vec<Found> {
    h.users.iter().map(|u| (u.user_id.to_string(), u.intervals.iter().map(|i| (i.from, i.to)).collect())).collect()
}

async fn online(stack: &TestStack, t: &TestTenant, room: &str) -> anyhow::Result<Vec<String>> {
    let cmd = GetOnline { tenant_id: TenantId::parse(t.id.as_str())?, room_id: RoomId::parse(room)? };
    let online = stack.bus.request(&cmd).await.map_err(|e| anyhow::anyhow!("online: {e}"))?;
    Ok(online.online_users.iter().map(ToString::to_string).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn history_shows_when_a_socket_was_open_for_many_spans_at_once() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let empty_room = t.user("alice").create_room("group", &["bob"]).await?;

    let before = now();
    let mut alice = WsClient::connect(&url(&stack, &room, &t, "alice")).await?;
    alice.expect("connection_status").await?;
    let opened = now();
    let mut bob = WsClient::connect(&url(&stack, &room, &t, "bob")).await?;
    bob.expect("connection_status").await?;
    let closing = now();
    drop(alice);
    bob.expect_where("user_left", |f| f["data"]["user_id"] == "alice").await?;
    let left = now();

    let answers = history(
        &stack,
        vec![
            span(&t, &room, before - TimeDelta::hours(2), before - TimeDelta::hours(1))?,
            span(&t, &room, before, left)?,
            span(&t, &room, left, left + TimeDelta::seconds(1))?,
            span(&t, &empty_room, before, left)?,
        ],
    )
    .await?;
    assert_eq!(answers.len(), 4);
    // Before this stack's presence started: nothing known, and it says so.
    assert!(!answers[0].complete);
    assert!(answers[0].users.is_empty());
    // Alice's one interval: opened with her socket, ended when it closed (not after
    // the grace); bob is still online.
    assert!(answers[1].complete);
    let found = intervals(&answers[1]);
    assert_eq!(found.len(), 2, "{found:?}");
    let (user, alice_intervals) = &found[0];
    assert_eq!(user, "alice");
    let [(from, Some(to))] = alice_intervals.as_slice() else { anyhow::bail!("one closed interval: {found:?}") };
    assert!(before <= *from && *from <= opened, "{before} <= {from} <= {opened}");
    assert!(closing <= *to && *to < left, "{closing} <= {to} < {left}");
    assert_eq!(found[1].0, "bob");
    assert!(matches!(found[1].1.as_slice(), [(_, None)]), "{found:?}");
    // A span after she left misses her interval.
    assert_eq!(intervals(&answers[2]).iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(), ["bob"]);
    assert!(answers[3].complete && answers[3].users.is_empty());
    assert_eq!(answers[3].room_id.as_str(), empty_room);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_history_requests_are_refused() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let at = now();
    let backwards = span(&t, "room_x", at, at - TimeDelta::seconds(1))?;
    let refused = |spans| async { stack.bus.request(&OnlineHistory { spans }).await.err() };
    let err = refused(vec![span(&t, "room_x", at, at)?, backwards]).await;
    assert!(err.as_ref().is_some_and(|e| e.field.as_deref() == Some("spans[1]")), "{err:?}");
    let many = (0..5_000).map(|_| span(&t, "room_x", at, at)).collect::<anyhow::Result<Vec<_>>>()?;
    let err = refused(many).await;
    assert!(err.as_ref().is_some_and(|e| e.field.as_deref() == Some("spans")), "{err:?}");
    assert!(history(&stack, Vec::new()).await?.is_empty());
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_lease_keeps_its_sockets_and_they_close_when_it_runs_out() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let room = t.user("carol").create_room("group", &["alice", "bob"]).await?;
    let other_room = t.user("carol").create_room("group", &["alice"]).await?;
    let mut carol = WsClient::connect(&url(&stack, &room, &t, "carol")).await?;
    carol.expect("connection_status").await?;

    // A gateway of our own: it renews a 5 s lease, well past the default lease.
    let gw = GatewayId::parse("gw_leased")?;
    let lease = GatewayLease { gateway_id: gw.clone(), ttl_ms: 5_000 };
    let subject = stack.bus.subjects().gateway_lease(&gw);
    let renew = || async { stack.bus.publish(subject.clone(), serde_json::to_vec(&lease)?.into()).await };
    renew().await?;
    let mut sockets = 0;
    let mut connect = |user: &str, room: &str| -> anyhow::Result<Connect> {
        sockets += 1;
        Ok(Connect {
            tenant_id: TenantId::parse(t.id.as_str())?,
            room_id: RoomId::parse(room)?,
            user_id: UserId::parse(user)?,
            user_name: None,
            gateway_id: gw.clone(),
            conn_id: format!("gw_leased-{sockets}"),
        })
    };
    for cmd in [connect("alice", &room)?, connect("bob", &room)?, connect("alice", &other_room)?] {
        stack.bus.request(&cmd).await.map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    }
    assert_eq!(online(&stack, &t, &room).await?, ["alice", "bob", "carol"]);

    // Renewed for longer than the default lease (3 s in tests): still online.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        renew().await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(online(&stack, &t, &room).await?, ["alice", "bob", "carol"]);

    // The gateway goes quiet: its lease runs out, alice and bob leave everywhere.
    let last_renewal = now();
    renew().await?;
    carol.expect_where("user_left", |f| f["data"]["user_id"] == "alice").await?;
    carol.expect_where("user_left", |f| f["data"]["user_id"] == "bob").await?;
    eventually("alice to leave the other room", || async { Ok(online(&stack, &t, &other_room).await?.is_empty()) })
        .await?;
    assert_eq!(online(&stack, &t, &room).await?, ["carol"]);

    // Every interval of that gateway ended at the same moment: when its lease ran out.
    let at = now();
    let answers = history(&stack, vec![span(&t, &room, at, at)?, span(&t, &other_room, last_renewal, at)?]).await?;
    assert_eq!(intervals(&answers[0]).iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(), ["carol"]);
    let answers =
        history(&stack, vec![span(&t, &room, last_renewal, at)?, span(&t, &other_room, last_renewal, at)?]).await?;
    let mut ends = Vec::new();
    for (user, found) in answers.iter().flat_map(intervals) {
        match found.as_slice() {
            [(_, None)] if user == "carol" => {}
            [(_, Some(to))] => ends.push(*to),
            other => anyhow::bail!("{user}: {other:?}"),
        }
    }
    assert_eq!(ends.len(), 3, "{answers:?}");
    assert!(ends.iter().all(|e| *e == ends[0]), "{ends:?}");
    assert!(ends[0] >= last_renewal + TimeDelta::milliseconds(5_000), "{} vs {last_renewal}", ends[0]);
    stack.stop().await
}

/// Presence keeps who is online in Redis, which can lose it (a restart without
/// persistence, a failover to a replica that missed the last writes); the gateways hold
/// the truth. A lease from a gateway presence has no lease for makes presence ask that
/// gateway to announce its sockets again: the users are online again, on both gateways,
/// and still leave when their sockets close.
#[tokio::test(flavor = "multi_thread")]
async fn presence_rebuilds_what_its_redis_lost_from_the_gateways() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack.tenant().await?;
    let room = t.user("carol").create_room("group", &["alice", "bob"]).await?;
    let on = |i: usize, user: &str| {
        format!("{}/ws/{room}?token={}&user_id={user}&user_name={user}", stack.ws_url(i), t.api_key)
    };
    let mut alice = WsClient::connect(&on(0, "alice")).await?;
    alice.expect("connection_status").await?;
    let mut bob = WsClient::connect(&on(1, "bob")).await?;
    bob.expect("connection_status").await?;
    eventually("both online", || async { Ok(online(&stack, &t, &room).await? == ["alice", "bob"]) }).await?;

    // Redis loses everything presence kept for this stack.
    let mut redis = chat_redis::connect(&chat_test_support::redis_url(), "test").await?;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}:pr:*", stack.prefix)).query_async(&mut redis).await?;
    anyhow::ensure!(!keys.is_empty(), "presence keeps its state under {}:pr:", stack.prefix);
    let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await?;
    assert!(online(&stack, &t, &room).await?.is_empty(), "presence forgot both sockets");

    // Each gateway's next lease is news to presence, which asks it to resync.
    eventually("presence to know both sockets again", || async {
        Ok(online(&stack, &t, &room).await? == ["alice", "bob"])
    })
    .await?;

    // Announced again, they are presence's sockets like any other: closing one is seen.
    alice.close().await?;
    eventually("alice to leave", || async { Ok(online(&stack, &t, &room).await? == ["bob"]) }).await?;
    drop(bob);
    stack.stop().await
}

/// A gateway announces its sockets again in batches (`connect_many`): each is registered
/// as one `connect` would be, and bad batches are refused naming what is wrong.
#[tokio::test(flavor = "multi_thread")]
async fn sockets_announced_in_a_batch_are_online_and_bad_batches_are_refused() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let room = t.user("carol").create_room("group", &["alice", "bob"]).await?;
    let gw = GatewayId::parse("gw_batch")?;
    let socket = |user: &str, conn: &str| -> anyhow::Result<SocketOpen> {
        Ok(SocketOpen {
            tenant_id: TenantId::parse(t.id.as_str())?,
            room_id: RoomId::parse(room.as_str())?,
            user_id: UserId::parse(user)?,
            user_name: None,
            conn_id: conn.to_owned(),
        })
    };
    let batch = ConnectMany {
        gateway_id: gw.clone(),
        sockets: vec![socket("alice", "gw_batch-1")?, socket("alice", "gw_batch-2")?, socket("bob", "gw_batch-3")?],
    };
    let done = stack.bus.request(&batch).await.map_err(|e| anyhow::anyhow!("connect_many: {e}"))?;
    assert_eq!((done.registered, done.came_online), (3, 2));
    assert_eq!(online(&stack, &t, &room).await?, ["alice", "bob"]);

    let too_many = ConnectMany {
        gateway_id: gw.clone(),
        sockets: (0..501).map(|i| socket("alice", &format!("gw_batch-{i}"))).collect::<anyhow::Result<_>>()?,
    };
    let err = stack.bus.request(&too_many).await.err();
    assert!(err.as_ref().is_some_and(|e| e.field.as_deref() == Some("sockets")), "{err:?}");
    let bad_conn = ConnectMany { gateway_id: gw, sockets: vec![socket("bob", "gw_batch-4")?, socket("bob", "")?] };
    let err = stack.bus.request(&bad_conn).await.err();
    assert!(err.as_ref().is_some_and(|e| e.field.as_deref() == Some("sockets[1].conn_id")), "{err:?}");
    stack.stop().await
}
