//! Redis under Sentinel loses its master. The handle services share
//! (`chat_redis::connect` on a `redis+sentinel://` URL) moves to the master Sentinel
//! promotes; presence keeps what it acknowledged before the failover (it waits for the
//! replica, `PRESENCE_REDIS_REPLICAS=1`) and goes on serving sockets, online lists and
//! typing from the new master, without a restart.

use std::time::Instant;

use chat_domain::ids::{RoomId, TenantId};
use chat_domain::proto::presence::GetOnline;
use chat_test_support::Endpoints;
use chat_test_support::cluster::redis::RedisSentinels;
use chat_test_support::eventually_within;
use chat_test_support::{TestStack, WsClient};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_and_the_shared_handle_follow_a_sentinel_failover() -> anyhow::Result<()> {
    let mut rs = RedisSentinels::start().await?;
    let ends = Endpoints {
        redis: rs.url(),
        gateway_redis: rs.master_url().await?,
        presence_redis_replicas: 1,
        ..Endpoints::local()
    };
    let stack = TestStack::builder().without_notification().on(ends).start().await?;
    let handle = chat_redis::connect(&rs.url(), "test").await?;
    let key = format!("{}:failover-probe", stack.prefix);
    let mut conn = handle.clone();
    let _: () = redis::cmd("SET").arg(&key).arg("before").query_async(&mut conn).await?;

    let t = stack.tenant().await?;
    let room = t.user("alice").create_room("group", &["bob", "carol"]).await?;
    let ws = |user: &str| format!("{}/ws/{room}?token={}&user_id={user}&user_name={user}", stack.ws_url(0), t.api_key);
    let mut alice = WsClient::connect(&ws("alice")).await?;
    alice.expect("connection_status").await?;
    let mut bob = WsClient::connect(&ws("bob")).await?;
    let status = bob.expect("connection_status").await?;
    assert_eq!(status["data"]["online_users"], json!(["alice", "bob"]), "{status}");

    let old = rs.kill_master().await?;
    let killed = Instant::now();
    let new = rs.wait_failover(old).await?;
    let promoted = killed.elapsed();
    eventually_within("the shared handle to write to the new master", 60, || async {
        let mut conn = handle.clone();
        let wrote: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg("after").query_async(&mut conn).await;
        Ok(wrote.is_ok())
    })
    .await?;
    let followed = killed.elapsed();
    assert_eq!(handle.current_addr().map(|(_, p)| p), Some(new), "the handle talks to the promoted node");
    let mut conn = handle.clone();
    let value: String = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
    assert_eq!(value, "after");

    // Presence follows the new master by itself (on its first failed command, or
    // within a second) and still has the two sockets acknowledged before the
    // failover: asked over the bus until it answers again.
    let (tenant, room_id) = (TenantId::parse(t.id.clone())?, RoomId::parse(room.clone())?);
    let ask = GetOnline { tenant_id: tenant, room_id };
    eventually_within("presence to answer from the new master", 60, || async {
        Ok(stack.bus.request(&ask).await.is_ok())
    })
    .await?;
    let online: Vec<String> =
        stack.bus.request(&ask).await?.online_users.into_iter().map(|u| u.as_str().to_owned()).collect();
    assert_eq!(online, ["alice", "bob"], "what presence acknowledged before the failover is still there");
    let followed_presence = killed.elapsed();
    // A new socket is registered on the new master, beside them.
    let mut carol = WsClient::connect(&ws("carol")).await?;
    let status = carol.expect("connection_status").await?;
    assert_eq!(status["data"]["online_users"], json!(["alice", "bob", "carol"]), "{status}");
    // Typing goes through presence (Redis) too.
    bob.send(json!({"type": "typing", "data": {"is_typing": true}})).await?;
    let typing = carol.expect_where("typing", |f| f["data"]["user_id"] == "bob").await?;
    assert_eq!(typing["data"]["is_typing"], true);
    println!(
        "Redis master :{old} killed; Sentinel promoted :{new} after {promoted:?}; the handle followed after \
         {followed:?}, presence answered again after {followed_presence:?}"
    );
    drop((alice, bob, carol));
    stack.stop().await
}
