//! The socket side of the security review (issue 25, findings 2–5 and the socket parts of
//! 7), on every dialect — `/ws`, `/conversations`, Socket.IO (the stock npm
//! `socket.io-client`, `tests/socketio-client`) — with two gateway replicas: a read
//! reaches the reader's own other sockets; a rotated key or an expired token closes
//! the sockets opened with it, whichever replica made the change; anonymous Socket.IO
//! handshakes cannot lock authenticated clients out; every socket action counts per
//! user and per tenant; a user token's client cannot pick its display name; sockets
//! per user and per tenant are capped. Needs Node.js and the machine's PostgreSQL,
//! Redis and NATS.

use anyhow::{anyhow, ensure};
use chat_test_support::{Client, Ended, TestStack, TestTenant, WsClient, bounded, unique};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::socketio::{Node, connected, token};

fn ws_url(stack: &TestStack, gw: usize, room: &str, credential: &str, extra: &str) -> String {
    format!("{}/ws/{room}?token={credential}{extra}", stack.ws_url(gw))
}

fn conv_url(stack: &TestStack, gw: usize, room: &str, credential: &str, extra: &str) -> String {
    format!("{}/conversations/{room}/?token={credential}{extra}", stack.ws_url(gw))
}

async fn tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": unique("sec-"), "rate_limit_per_sec": 100_000})).await
}

async fn open_ws(url: &str) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(url).await?;
    bounded("a frame", ws.expect("connection_status")).await??;
    Ok(ws)
}

/// A `/conversations` socket, once the server has greeted it (its first frame).
async fn open_conv(url: &str) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(url).await?;
    // The greeting (who is online) comes first on every dialect; on this one it is a
    // `user_status` per online participant or nothing, so a ping proves the session runs.
    ws.send(json!({"action": "heartbeat"})).await?;
    Ok(ws)
}

/// A Socket.IO client of `gw` connected with `auth`, joined to `room`.
async fn open_sio(stack: &TestStack, gw: usize, auth: Value, room: &str) -> anyhow::Result<Node> {
    let mut node = Node::start(json!({"url": stack.base_url(gw), "auth": auth, "transports": ["websocket"]}))?;
    connected(&mut node).await?;
    let joined = node.call("join-chat-room", json!([room])).await?;
    ensure!(joined == json!({"ok": true}), "join refused: {joined}");
    Ok(node)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_reaches_the_readers_own_other_sockets_on_every_dialect() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice"]).await?;
    let key = t.api_key.clone();
    // alice's devices: /ws on gateway 0 reads; /ws and /conversations on gateway 1 and
    // Socket.IO on gateway 0 must all hear it.
    let mut reader = open_ws(&ws_url(&stack, 0, &room, &key, "&user_id=alice")).await?;
    let mut ws_other = open_ws(&ws_url(&stack, 1, &room, &key, "&user_id=alice")).await?;
    let mut conv_other = open_conv(&conv_url(&stack, 1, &room, &key, "&user_id=alice")).await?;
    let mut sio_other = open_sio(&stack, 0, json!({"token": token(&t, "alice").await?}), &room).await?;
    let sent = t.user("bob").send(&room, "read me on every device").await?;
    let seq = sent["seq"].as_i64().ok_or_else(|| anyhow!("no seq in {sent}"))?;
    let id = sent["message_id"].as_str().ok_or_else(|| anyhow!("no message_id in {sent}"))?.to_owned();
    bounded("a frame", ws_other.expect("message")).await??;

    reader.send(json!({"type": "read", "data": {"seq": seq}})).await?;
    bounded("a frame", reader.expect("cursor")).await??;
    let read = bounded("a frame", ws_other.take_where("read", |f| f["data"]["user_id"] == "alice")).await??;
    assert_eq!(read["data"]["seq"], seq, "{read}");
    let read = bounded("a frame", conv_other.take_where("read", |f| f["user_id"] == "alice")).await??;
    assert_eq!(read["message_ids"], json!([id]), "{read}");
    let read = sio_other.event("messages-read", |r| r["userId"] == "alice").await?;
    assert_eq!((read["chatId"].as_str(), read["seq"].as_i64()), (Some(room.as_str()), Some(seq)));

    // A read through REST (rest-chat.md's PATCH) reaches them all the same way.
    let sent = t.user("bob").send(&room, "and this one").await?;
    let seq = sent["seq"].as_i64().ok_or_else(|| anyhow!("no seq in {sent}"))?;
    let path = format!("/api/chat/{room}/messages/read");
    let res = t.user_on(1, "alice").request(Method::PATCH, &path).json(&json!({})).send().await?;
    ensure!(res.status() == StatusCode::OK, "read: {}", res.status());
    bounded("a frame", ws_other.take_where("read", |f| f["data"]["user_id"] == "alice" && f["data"]["seq"] == seq))
        .await??;
    bounded("a frame", reader.take_where("read", |f| f["data"]["user_id"] == "alice" && f["data"]["seq"] == seq))
        .await??;
    sio_other.event("messages-read", |r| r["userId"] == "alice" && r["seq"] == seq).await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_key_closes_sockets_opened_with_it_on_every_gateway() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = tenant(&stack).await?;
    let other = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice"]).await?;
    let other_room = other.user("bob").create_room("group", &[]).await?;
    let key = t.api_key.clone();
    let user_token = token(&t, "alice").await?;
    // Opened with the key, and with a user token (rotation replaces the token secret
    // too), on gateway 1; the rotation goes through gateway 0's admin API.
    let mut ws_key = open_ws(&ws_url(&stack, 1, &room, &key, "&user_id=alice")).await?;
    let mut ws_token = open_ws(&ws_url(&stack, 1, &room, &user_token, "")).await?;
    let mut conv_key = open_conv(&conv_url(&stack, 1, &room, &key, "&user_id=bob")).await?;
    let mut sio_key = open_sio(&stack, 1, json!({"token": key, "userId": "bob"}), &room).await?;
    let mut sio_token = open_sio(&stack, 0, json!({"token": user_token}), &room).await?;
    // Another tenant's socket is not touched.
    let mut bystander = open_ws(&ws_url(&stack, 1, &other_room, &other.api_key, "&user_id=bob")).await?;

    let rotated = stack.admin(Method::POST, &format!("/admin/tenants/{}/rotate-key", t.id), None).await?;
    let new_key = rotated.expect(StatusCode::OK)?.str("api_key")?.to_owned();

    assert_eq!(bounded("the socket to close", ws_key.ended()).await??, Ended::Closed(4001), "/ws closes with 4001");
    assert_eq!(
        bounded("the socket to close", ws_token.ended()).await??,
        Ended::Closed(4001),
        "the token was signed with the old secret"
    );
    assert_eq!(
        bounded("the socket to close", conv_key.ended()).await??,
        Ended::Closed(4003),
        "/conversations closes with 4003"
    );
    for (name, sio) in [("key", &mut sio_key), ("token", &mut sio_token)] {
        let refused = sio.until("connect_error", |l| l["type"] == "connect_error").await?;
        let message = refused["message"].as_str().unwrap_or_default();
        ensure!(message.starts_with("credential revoked"), "Socket.IO with the {name}: {refused}");
    }
    // The new key opens sockets that stay (a later change that keeps them valid
    // closes nothing), and the other tenant's socket never noticed.
    let mut fresh = open_ws(&ws_url(&stack, 0, &room, &new_key, "&user_id=alice")).await?;
    let limit = json!({"rate_limit_per_sec": 100_001});
    stack.admin(Method::PATCH, &format!("/admin/tenants/{}", t.id), Some(limit)).await?.expect(StatusCode::OK)?;
    let with_new_key =
        Client::raw(&stack.base_url(1)).with_header("X-API-Key", &new_key).with_header("X-User-Id", "bob");
    let sent = with_new_key.send(&room, "still here").await?;
    bounded("a frame", fresh.expect_where("message", |m| m["data"]["id"] == sent["message_id"])).await??;
    let sent = other.user("bob").send(&other_room, "still here").await?;
    bounded("a frame", bystander.expect_where("message", |m| m["data"]["id"] == sent["message_id"])).await??;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_closes_its_sockets() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice", "carol"]).await?;
    let short = |user: &str| {
        let t = t.clone();
        let user = user.to_owned();
        async move {
            let res = t.user(&user).post("/tokens", json!({"ttl_secs": 3})).await?.expect(StatusCode::CREATED)?;
            anyhow::Ok(res.str("token")?.to_owned())
        }
    };
    let mut ws = open_ws(&ws_url(&stack, 1, &room, &short("alice").await?, "")).await?;
    let mut conv = open_conv(&conv_url(&stack, 0, &room, &short("alice").await?, "")).await?;
    let mut sio = open_sio(&stack, 1, json!({"token": short("bob").await?}), &room).await?;
    // A socket opened with the API key has no expiry.
    let mut keyed = open_ws(&ws_url(&stack, 0, &room, &t.api_key, "&user_id=carol")).await?;

    assert_eq!(
        bounded("the socket to close", ws.ended()).await??,
        Ended::Closed(4001),
        "/ws: 4001 once the token expired"
    );
    assert_eq!(bounded("the socket to close", conv.ended()).await??, Ended::Closed(4003), "/conversations: 4003");
    let refused = sio.until("connect_error", |l| l["type"] == "connect_error").await?;
    assert_eq!(refused["message"], "token expired", "{refused}");
    keyed.send(json!({"type": "ping", "data": {}})).await?;
    bounded("a frame", keyed.expect("pong")).await??;
    stack.stop().await
}

fn anonymous_bounds(cfg: &mut gateway::Config) {
    // Few places of each kind, so that the flood below is many times more than all of
    // them: before the fix it filled `max_sessions` and nobody could connect.
    cfg.socketio.max_sessions = 20;
    cfg.socketio.max_anonymous = 16;
    cfg.socketio.anon_per_address = 8;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_anonymous_handshakes_does_not_lock_out_authenticated_clients() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).gateway_config(anonymous_bounds).start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice"]).await?;
    // Handshakes from four other loopback addresses, 40 each, to both gateways; none
    // of them ever connects the namespace.
    let mut refused = 0;
    let mut opened = 0;
    for n in 2..6u8 {
        let http = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, n])).build()?;
        for i in 0..80 {
            let url = format!("{}/socket.io/?EIO=4&transport=polling", stack.base_url(i % 2));
            let res = bounded("a handshake", http.get(&url).send()).await??;
            match res.status() {
                StatusCode::OK => opened += 1,
                StatusCode::SERVICE_UNAVAILABLE => refused += 1,
                other => anyhow::bail!("handshake answered {other}"),
            }
        }
    }
    ensure!(refused > 0, "one address's anonymous sessions are bounded ({opened} opened)");
    ensure!(opened > 2 * 20, "the flood opened more sessions than there are places ({opened})");
    // Authenticated clients still get in, on both gateways, with the default
    // transports (a polling handshake first), and chat.
    for gw in 0..2 {
        let mut node = Node::start(json!({"url": stack.base_url(gw), "auth": {"token": token(&t, "alice").await?}}))?;
        connected(&mut node).await?;
        assert_eq!(node.call("join-chat-room", json!([room])).await?, json!({"ok": true}));
        let sent = t.user("bob").send(&room, &format!("through gateway {gw}")).await?;
        node.event("new-message", |m| m["_id"] == sent["message_id"]).await?;
    }
    stack.stop().await
}

fn few_actions(cfg: &mut gateway::Config) {
    cfg.ws.user_actions_per_sec = 5;
}

/// Sends `n` frames at once and returns the `error` frames' (code, message) answered
/// to them, reading until `done` frames were answered either way.
async fn flood(ws: &mut WsClient, frame: Value, n: usize, answer: &str) -> anyhow::Result<Vec<(String, String)>> {
    for _ in 0..n {
        ws.send(frame.clone()).await?;
    }
    let mut errors = Vec::new();
    let mut answered = 0;
    bounded("answers to every frame", async {
        while answered < n {
            let f = ws.next().await?.map_err(|e| anyhow!("socket ended: {e:?}"))?;
            if f["type"] == "error" {
                let (code, message) = match f.get("data") {
                    Some(d) => (&d["code"], &d["message"]),
                    None => (&f["code"], &f["error"]),
                };
                errors.push((
                    code.as_str().unwrap_or_default().to_owned(),
                    message.as_str().unwrap_or_default().to_owned(),
                ));
                answered += 1;
            } else if f["type"] == answer {
                answered += 1;
            }
        }
        anyhow::Ok(())
    })
    .await??;
    Ok(errors)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_socket_action_counts_per_user_and_per_tenant() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).gateway_config(few_actions).start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice"]).await?;
    let key = t.api_key.clone();
    let is_user_limit =
        |(code, message): &(String, String)| code == "RATE_LIMIT_EXCEEDED" && message.starts_with("Too many actions");

    // Per user: 20 online-user queries on /ws (gateway 0), 20 history fetches on
    // /conversations (gateway 1), 20 typing events on Socket.IO (gateway 1).
    let mut ws = open_ws(&ws_url(&stack, 0, &room, &key, "&user_id=alice")).await?;
    let errors = flood(&mut ws, json!({"type": "get_online_users", "data": {}}), 20, "connection_status").await?;
    ensure!(errors.iter().any(is_user_limit), "/ws: {errors:?}");
    let mut conv = open_conv(&conv_url(&stack, 1, &room, &key, "&user_id=alice")).await?;
    let errors = flood(&mut conv, json!({"action": "fetch_messages"}), 20, "messages_fetched").await?;
    ensure!(errors.iter().any(is_user_limit), "/conversations: {errors:?}");
    let mut sio = open_sio(&stack, 1, json!({"token": key, "userId": "bob"}), &room).await?;
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(sio.call("typing-start", json!([room])).await?);
    }
    ensure!(codes.iter().any(|a| a["code"] == "RATE_LIMIT_EXCEEDED"), "Socket.IO: {codes:?}");
    ensure!(codes.iter().any(|a| a["ok"] == true), "the first ones go through: {codes:?}");

    // Per tenant: a tenant limited to 3 requests per second refuses frames of users
    // far below their own limit.
    let slow = stack.tenant_with(json!({"name": unique("sec-"), "rate_limit_per_sec": 1000})).await?;
    let room = slow.user("bob").create_room("group", &["alice", "carol"]).await?;
    let limit = json!({"rate_limit_per_sec": 3});
    stack.admin(Method::PATCH, &format!("/admin/tenants/{}", slow.id), Some(limit)).await?.expect(StatusCode::OK)?;
    // Connects count against the limit too: a refused one (4004) is tried again.
    let mut sockets = Vec::new();
    for (gw, user) in [(0, "alice"), (1, "bob"), (0, "carol")] {
        let url = ws_url(&stack, gw, &room, &slow.api_key, &format!("&user_id={user}"));
        let mut opened = None;
        for _ in 0..100 {
            let mut ws = WsClient::connect(&url).await?;
            if ws.next().await?.is_ok_and(|f| f["type"] == "connection_status") {
                opened = Some(ws);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        sockets.push(opened.ok_or_else(|| anyhow!("{user} never got a socket"))?);
    }
    // What a gateway leased under the old limit lasts to the end of its window: keep
    // asking (a few frames per user per round, within their own budget) until the
    // tenant's limit answers. The rounds only bound the wait.
    let mut tenant_refusals = 0;
    for _ in 0..50 {
        for ws in &mut sockets {
            let errors = flood(ws, json!({"type": "get_online_users", "data": {}}), 2, "connection_status").await?;
            tenant_refusals +=
                errors.iter().filter(|(c, m)| c == "RATE_LIMIT_EXCEEDED" && m.starts_with("Rate limit")).count();
        }
        if tenant_refusals > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    ensure!(tenant_refusals > 0, "frames of a tenant limited to 3 per second were all let through");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_tokens_client_cannot_pick_its_display_name() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice", "carol"]).await?;
    let res = t.user("bob").request(Method::PUT, "/users/alice").json(&json!({"name": "Alice Real"})).send().await?;
    ensure!(res.status().is_success(), "PUT /users/alice: {}", res.status());
    let mut bob = open_ws(&ws_url(&stack, 0, &room, &t.api_key, "&user_id=bob")).await?;
    // alice asks for another name with her token: the directory's is shown.
    let alice_token = token(&t, "alice").await?;
    let mut alice = open_ws(&ws_url(&stack, 1, &room, &alice_token, "&user_name=The%20Admin")).await?;
    alice.send(json!({"type": "send_message", "data": {"content": "who am I?"}})).await?;
    let m = bounded("a frame", bob.expect_where("message", |m| m["data"]["content"] == "who am I?")).await??;
    assert_eq!(m["data"]["sender_name"], "Alice Real", "{m}");
    alice.send(json!({"type": "typing", "data": {"is_typing": true}})).await?;
    let typing = bounded("a frame", bob.expect_where("typing", |f| f["data"]["user_id"] == "alice")).await??;
    assert_eq!(typing["data"]["user_name"], "Alice Real", "{typing}");
    // Without a directory name there is none; the request's is still not taken.
    let mut carol = open_ws(&ws_url(&stack, 1, &room, &token(&t, "carol").await?, "&user_name=The%20Admin")).await?;
    carol.send(json!({"type": "send_message", "data": {"content": "and me?"}})).await?;
    let m = bounded("a frame", bob.expect_where("message", |m| m["data"]["content"] == "and me?")).await??;
    ensure!(m["data"]["sender_name"] != "The Admin", "{m}");
    // The API key (the tenant's own server) still names its users.
    let mut server = open_ws(&ws_url(&stack, 1, &room, &t.api_key, "&user_id=carol&user_name=Carol")).await?;
    server.send(json!({"type": "send_message", "data": {"content": "from the server"}})).await?;
    let m = bounded("a frame", bob.expect_where("message", |m| m["data"]["content"] == "from the server")).await??;
    assert_eq!(m["data"]["sender_name"], "Carol", "{m}");
    stack.stop().await
}

fn few_sockets(cfg: &mut gateway::Config) {
    cfg.ws.max_sockets_per_user = 2;
    cfg.ws.max_sockets_per_tenant = 3;
}

#[tokio::test(flavor = "multi_thread")]
async fn open_sockets_are_capped_per_user_and_per_tenant() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).gateway_config(few_sockets).start().await?;
    let t = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice", "carol"]).await?;
    let key = t.api_key.clone();
    let _a1 = open_ws(&ws_url(&stack, 0, &room, &key, "&user_id=alice")).await?;
    let _a2 = open_conv(&conv_url(&stack, 0, &room, &key, "&user_id=alice")).await?;
    // alice's third socket on gateway 0, on each dialect.
    let mut third = WsClient::connect(&ws_url(&stack, 0, &room, &key, "&user_id=alice")).await?;
    assert_eq!(
        bounded("the socket to close", third.ended()).await??,
        Ended::Closed(4004),
        "/ws refuses as rate limited"
    );
    let mut third = WsClient::connect(&conv_url(&stack, 0, &room, &key, "&user_id=alice")).await?;
    assert_eq!(
        bounded("the socket to close", third.ended()).await??,
        Ended::Closed(1013),
        "/conversations: try again later"
    );
    let mut node = Node::start(json!({"url": stack.base_url(0), "auth": {"token": key, "userId": "alice"}}))?;
    let refused = node.until("connect", |l| l["type"] == "connect" || l["type"] == "connect_error").await?;
    assert_eq!(refused, json!({"type": "connect_error", "message": "too many open sockets"}));
    // The cap is per gateway: gateway 1 has room for alice.
    let _a3 = open_ws(&ws_url(&stack, 1, &room, &key, "&user_id=alice")).await?;
    // The tenant's third socket on gateway 0 is its last.
    let b1 = open_ws(&ws_url(&stack, 0, &room, &key, "&user_id=bob")).await?;
    let mut carol = WsClient::connect(&ws_url(&stack, 0, &room, &key, "&user_id=carol")).await?;
    assert_eq!(
        bounded("the socket to close", carol.ended()).await??,
        Ended::Closed(4004),
        "the tenant's fourth socket"
    );
    // A closed socket gives its place back.
    drop(b1);
    chat_test_support::eventually("a place given back", || {
        let url = ws_url(&stack, 0, &room, &key, "&user_id=carol");
        async move {
            let mut ws = WsClient::connect(&url).await?;
            Ok(ws.next().await?.is_ok_and(|f| f["type"] == "connection_status"))
        }
    })
    .await?;
    stack.stop().await
}

fn short_auth_cache(cfg: &mut gateway::Config) {
    cfg.auth_cache_ttl = std::time::Duration::from_secs(1);
}

/// A revocation whose `tenant.changed` a gateway never hears (here: the key is revoked
/// in PostgreSQL behind the services' back, so nothing is announced) still closes the
/// sockets opened with it: every gateway checks its sockets' credentials again every
/// `GATEWAY_AUTH_CACHE_SECS`. Before the sweep such a socket stayed open for good.
#[tokio::test(flavor = "multi_thread")]
async fn a_missed_revocation_still_closes_sockets_within_a_period() -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let stack = TestStack::builder().gateways(2).gateway_config(short_auth_cache).start().await?;
    let t = tenant(&stack).await?;
    let other = tenant(&stack).await?;
    let room = t.user("bob").create_room("group", &["alice"]).await?;
    let other_room = other.user("bob").create_room("group", &[]).await?;
    let mut ws = open_ws(&ws_url(&stack, 1, &room, &t.api_key, "&user_id=alice")).await?;
    let mut conv = open_conv(&conv_url(&stack, 0, &room, &t.api_key, "&user_id=bob")).await?;
    let mut bystander = open_ws(&ws_url(&stack, 1, &other_room, &other.api_key, "&user_id=bob")).await?;

    let mut db = AsyncPgConnection::establish(&chat_test_support::database_url()).await?;
    diesel::sql_query("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL")
        .bind::<diesel::sql_types::Text, _>(&t.id)
        .execute(&mut db)
        .await?;

    assert_eq!(bounded("the socket to close", ws.ended()).await??, Ended::Closed(4001), "/ws closes with 4001");
    assert_eq!(
        bounded("the socket to close", conv.ended()).await??,
        Ended::Closed(4003),
        "/conversations closes with 4003"
    );
    // The other tenant's socket is untouched: it still answers.
    bystander.send(json!({"type": "ping", "data": {}})).await?;
    bounded("a pong", bystander.expect("pong")).await??;
    stack.stop().await
}
