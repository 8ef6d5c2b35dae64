//! Room moderation across two gateways: a ban closes the banned user's sockets on every
//! dialect (`/ws`, `/conversations`, Socket.IO), refuses adding them back (`403
//! BANNED`) and hides the room from their search; a mute refuses sends and typing on
//! every dialect while the member still reads; slow mode holds across two gateways
//! (`429` with `Retry-After`) with moderators exempt; flags are reviewed and resolved
//! (also tenant-wide through the operator API); the moderation log lists each action;
//! the permission table is enforced; bad input is `400`. Needs PostgreSQL, Redis, NATS
//! and, for the Socket.IO client, Node.js.

use chat_test_support::{Client, Ended, Response, TestStack, TestTenant, WsClient, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::socketio::{Node, connected, token};

async fn busy_tenant(stack: &TestStack) -> anyhow::Result<TestTenant> {
    stack.tenant_with(json!({"name": chat_test_support::unique("mod-"), "rate_limit_per_sec": 100_000})).await
}

fn ws_url(stack: &TestStack, gw: usize, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/ws/{room}?token={}&user_id={user}&user_name={user}", stack.ws_url(gw), t.api_key)
}

fn conv_url(stack: &TestStack, gw: usize, room: &str, t: &TestTenant, user: &str) -> String {
    format!("{}/conversations/{room}/?token={}&user_id={user}", stack.ws_url(gw), t.api_key)
}

async fn patch(client: &Client, path: &str, body: Value) -> anyhow::Result<Response> {
    Response::from(client.request(Method::PATCH, path).json(&body).send().await?).await
}

/// A `/ws` socket whose session answered once (it is registered in the room).
async fn ws_open(url: &str) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(url).await?;
    ws.expect("connection_status").await?;
    ws.send(json!({"type": "ping"})).await?;
    ws.expect("pong").await?;
    Ok(ws)
}

/// A `/conversations` socket whose session answered once.
async fn conv_open(url: &str) -> anyhow::Result<WsClient> {
    let mut c = WsClient::connect(url).await?;
    c.send(json!({"action": "fetch_messages", "limit": 1})).await?;
    c.expect("messages_fetched").await?;
    Ok(c)
}

fn search_hits(res: &Response) -> usize {
    res.body["results"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ban_closes_every_dialects_sockets_refuses_readding_and_hides_the_room_from_search() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let owner = t.user("olga");
    let room = owner.create_room("group", &["mia", "max"]).await?;
    // Mia moderates; Max is the troll.
    patch(&owner, &format!("/rooms/{room}/members/mia"), json!({"role": "moderator"})).await?.expect(StatusCode::OK)?;
    t.user("max").send(&room, "zanzibarquux spam").await?;
    let found = t.user_on(1, "max").get("/search?q=zanzibarquux").await?.expect(StatusCode::OK)?;
    assert_eq!(search_hits(&found), 1, "before the ban Max finds his message: {}", found.body);

    // Max on every dialect, over both gateways.
    let mut ws = ws_open(&ws_url(&stack, 0, &room, &t, "max")).await?;
    let mut conv = conv_open(&conv_url(&stack, 1, &room, &t, "max")).await?;
    let mut sio = Node::start(json!({"url": stack.base_url(1), "auth": {"token": token(&t, "max").await?}}))?;
    connected(&mut sio).await?;
    assert_eq!(sio.call("join-chat-room", json!([room])).await?, json!({"ok": true}));

    let ban = t
        .user_on(1, "mia")
        .post(&format!("/rooms/{room}/bans"), json!({"user_id": "max", "reason": "spam"}))
        .await?
        .expect(StatusCode::CREATED)?;
    assert_eq!((ban.body["user_id"].as_str(), ban.body["reason"].as_str()), (Some("max"), Some("spam")));
    assert_eq!(ban.body["created_by"], "mia");
    assert!(ban.body["expires_at"].is_null());

    // Every socket of his in the room closes (the removal's close code per dialect).
    assert_eq!(ws.ended().await?, Ended::Closed(4003), "/ws");
    assert_eq!(conv.ended().await?, Ended::Closed(4004), "/conversations");
    let gone = sio.event("participant-removed", |e| e["participantId"] == "max").await?;
    assert_eq!(gone["chatId"], room.as_str());
    let typing = sio.call("typing-start", json!([room])).await?;
    assert_eq!(typing["ok"], false, "Socket.IO: out of the chat: {typing}");
    // He cannot come back: not over a socket, not by being added again.
    assert_eq!(sio.call("join-chat-room", json!([room])).await?["code"], "FORBIDDEN");
    assert!(matches!(WsClient::connect(&ws_url(&stack, 1, &room, &t, "max")).await?.ended().await?, Ended::Closed(_)));
    let res = owner.post(&format!("/rooms/{room}/members"), json!({"user_id": "max"})).await?;
    res.expect_error(StatusCode::FORBIDDEN, "BANNED", None)?;
    // His search finds nothing of the room, on either gateway.
    for client in [t.user("max"), t.user_on(1, "max")] {
        let res = client.get("/search?q=zanzibarquux").await?.expect(StatusCode::OK)?;
        assert_eq!(search_hits(&res), 0, "a banned user finds nothing: {}", res.body);
    }
    // Listed for moderators, not for members.
    let bans = t.user("mia").get(&format!("/rooms/{room}/bans")).await?.expect(StatusCode::OK)?;
    assert_eq!(bans.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(bans.body["items"][0]["user_id"], "max");
    t.user("max").get(&format!("/rooms/{room}/bans")).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;

    // Lifted: he can be added back, and searches what he saw again.
    t.user("mia").delete(&format!("/rooms/{room}/bans/max")).await?.expect(StatusCode::OK)?;
    t.user("mia").delete(&format!("/rooms/{room}/bans/max")).await?.expect(StatusCode::OK)?;
    let bans = t.user("mia").get(&format!("/rooms/{room}/bans")).await?.expect(StatusCode::OK)?;
    assert_eq!(bans.body["items"], json!([]));
    owner.post(&format!("/rooms/{room}/members"), json!({"user_id": "max"})).await?.expect(StatusCode::CREATED)?;
    let found = t.user("max").get("/search?q=zanzibarquux").await?.expect(StatusCode::OK)?;
    assert_eq!(search_hits(&found), 1, "{}", found.body);

    // A ban that expires ends by itself; a user not in the room can be banned ahead.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    t.user("mia")
        .post(&format!("/rooms/{room}/bans"), json!({"user_id": "zed", "expires_at": soon}))
        .await?
        .expect(StatusCode::CREATED)?;
    owner.post(&format!("/rooms/{room}/members"), json!({"user_id": "zed"})).await?.expect_error(
        StatusCode::FORBIDDEN,
        "BANNED",
        None,
    )?;
    eventually("the ban to expire", || async {
        Ok(owner.post(&format!("/rooms/{room}/members"), json!({"user_id": "zed"})).await?.status
            == StatusCode::CREATED)
    })
    .await?;
    drop(sio);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_muted_member_reads_but_cannot_send_or_type_on_any_dialect() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let owner = t.user("olga");
    let room = owner.create_room("group", &["max", "ann"]).await?;
    let mut ws = ws_open(&ws_url(&stack, 0, &room, &t, "max")).await?;
    let mut conv = conv_open(&conv_url(&stack, 1, &room, &t, "max")).await?;
    let mut sio = Node::start(json!({"url": stack.base_url(1), "auth": {"token": token(&t, "max").await?}}))?;
    connected(&mut sio).await?;
    assert_eq!(sio.call("join-chat-room", json!([room])).await?, json!({"ok": true}));

    let mute = t
        .user_on(1, "olga")
        .post(&format!("/rooms/{room}/mutes"), json!({"user_id": "max", "reason": "flooding"}))
        .await?
        .expect(StatusCode::CREATED)?;
    assert_eq!(mute.body["user_id"], "max");
    // The room hears it: a `moderation` frame on /ws, `chat-moderation` on Socket.IO.
    let frame = ws.expect("moderation").await?;
    assert_eq!(
        (frame["data"]["action"].as_str(), frame["data"]["user_id"].as_str(), frame["data"]["actor_id"].as_str()),
        (Some("mute"), Some("max"), Some("olga")),
        "{frame}"
    );
    assert_eq!(frame["data"]["reason"], "flooding");
    let event = sio.event("chat-moderation", |e| e["action"] == "mute").await?;
    assert_eq!((event["chatId"].as_str(), event["userId"].as_str()), (Some(room.as_str()), Some("max")), "{event}");

    // REST, both gateways.
    for client in [t.user("max"), t.user_on(1, "max")] {
        let res = client.post(&format!("/rooms/{room}/messages"), json!({"content": "let me talk"})).await?;
        res.expect_error(StatusCode::FORBIDDEN, "MUTED", None)?;
    }
    // /ws: the send's error frame, and typing's.
    ws.send(json!({"type": "send_message", "data": {"content": "over ws", "local_id": "m-1"}})).await?;
    let err = ws.expect("error").await?;
    assert_eq!((err["data"]["code"].as_str(), err["data"]["local_id"].as_str()), (Some("MUTED"), Some("m-1")));
    ws.send(json!({"type": "typing", "data": {"is_typing": true}})).await?;
    assert_eq!(ws.expect("error").await?["data"]["code"], "MUTED");
    // /conversations: message.failed, and an error frame for typing.
    conv.send(json!({"action": "send_message", "content": "over conv", "local_id": "c-1"})).await?;
    let failed = conv.expect("message.failed").await?;
    assert_eq!(failed["code"], "MUTED", "{failed}");
    conv.send(json!({"action": "typing", "is_typing": true})).await?;
    assert_eq!(conv.expect("error").await?["code"], "MUTED");
    // Socket.IO: typing's ack.
    let ack = sio.call("typing-start", json!([room])).await?;
    assert_eq!((ack["ok"].as_bool(), ack["code"].as_str()), (Some(false), Some("MUTED")), "{ack}");
    assert_eq!(sio.call("typing-stop", json!([room])).await?, json!({"ok": true}), "stopping is always fine");

    // He still reads, live and in history.
    t.user("ann").send(&room, "you can still read this").await?;
    let live = ws.expect_where("message", |f| f["data"]["content"] == "you can still read this").await?;
    assert_eq!(live["data"]["sender_id"], "ann");
    let history = t.user("max").get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
    let contents: Vec<_> = history.body.as_array().into_iter().flatten().map(|m| m["content"].clone()).collect();
    assert_eq!(contents, vec![json!("you can still read this")], "nothing of his got in");
    let mutes = owner.get(&format!("/rooms/{room}/mutes")).await?.expect(StatusCode::OK)?;
    assert_eq!(mutes.body["items"][0]["reason"], "flooding");

    // Lifted: every path works again.
    owner.delete(&format!("/rooms/{room}/mutes/max")).await?.expect(StatusCode::OK)?;
    let unmuted = ws.expect("moderation").await?;
    assert_eq!(
        (unmuted["data"]["action"].as_str(), unmuted["data"]["user_id"].as_str()),
        (Some("unmute"), Some("max"))
    );
    t.user_on(1, "max").send(&room, "back").await?;
    ws.send(json!({"type": "send_message", "data": {"content": "ws again", "local_id": "m-2"}})).await?;
    assert_eq!(ws.expect("message_sent").await?["data"]["local_id"], "m-2");
    assert_eq!(sio.call("typing-start", json!([room])).await?, json!({"ok": true}));

    // A mute that expires ends by itself.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    owner
        .post(&format!("/rooms/{room}/mutes"), json!({"user_id": "max", "expires_at": soon}))
        .await?
        .expect(StatusCode::CREATED)?;
    t.user("max").post(&format!("/rooms/{room}/messages"), json!({"content": "muted again"})).await?.expect_error(
        StatusCode::FORBIDDEN,
        "MUTED",
        None,
    )?;
    eventually("the mute to expire", || async {
        let res = t.user("max").post(&format!("/rooms/{room}/messages"), json!({"content": "free"})).await?;
        Ok(res.status == StatusCode::CREATED)
    })
    .await?;
    drop(sio);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_mode_holds_across_two_gateways_and_spares_moderators() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let owner = t.user("olga");
    let room = owner.create_room("group", &["max", "mia"]).await?;
    patch(&owner, &format!("/rooms/{room}/members/mia"), json!({"role": "moderator"})).await?.expect(StatusCode::OK)?;
    let path = format!("/rooms/{room}/settings");
    assert_eq!(t.user("max").get(&path).await?.expect(StatusCode::OK)?.body, json!({"slow_mode_secs": 0}));
    patch(&t.user("max"), &path, json!({"slow_mode_secs": 5})).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;
    let set = patch(&owner, &path, json!({"slow_mode_secs": 3600})).await?.expect(StatusCode::OK)?;
    assert_eq!(set.body, json!({"slow_mode_secs": 3600}));
    assert_eq!(t.user_on(1, "max").get(&path).await?.expect(StatusCode::OK)?.body["slow_mode_secs"], 3600);

    // Gateway 0, then gateway 1 inside the window: 429 with Retry-After.
    t.user("max").send(&room, "first").await?;
    let res = t.user_on(1, "max").post(&format!("/rooms/{room}/messages"), json!({"content": "second"})).await?;
    res.expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED", None)?;
    let wait: u64 = res.header("retry-after").ok_or_else(|| anyhow::anyhow!("no Retry-After"))?.parse()?;
    assert!((1..=3600).contains(&wait), "Retry-After {wait}");
    assert_eq!(res.body["error"]["retry_after"], json!(wait));
    // A socket's send gets the rate-limit error form.
    let mut ws = ws_open(&ws_url(&stack, 1, &room, &t, "max")).await?;
    ws.send(json!({"type": "send_message", "data": {"content": "third", "local_id": "s-1"}})).await?;
    let err = ws.expect("error").await?;
    assert_eq!(err["data"]["code"], "RATE_LIMIT_EXCEEDED", "{err}");
    // Moderators and the owner are exempt.
    for (who, gw) in [("mia", 0), ("mia", 1), ("olga", 1), ("olga", 0)] {
        t.user_on(gw, who).send(&room, &format!("{who} on {gw}")).await?;
    }
    // Off again: members send freely.
    patch(&owner, &path, json!({"slow_mode_secs": 0})).await?.expect(StatusCode::OK)?;
    t.user("max").send(&room, "free again").await?;
    t.user_on(1, "max").send(&room, "and again").await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_are_reviewed_and_every_action_is_in_the_moderation_log() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = busy_tenant(&stack).await?;
    let owner = t.user("olga");
    let room = owner.create_room("group", &["mia", "max", "ann", "bea"]).await?;
    patch(&owner, &format!("/rooms/{room}/members/mia"), json!({"role": "moderator"})).await?.expect(StatusCode::OK)?;
    let bad = t.user("max").send(&room, "something nasty").await?;
    let id = bad["message_id"].as_str().unwrap_or_default().to_owned();

    // Any member flags; again is the same flag.
    let flags = format!("/rooms/{room}/flags");
    let flag = t
        .user_on(1, "ann")
        .post(&flags, json!({"message_id": id, "reason": "abusive"}))
        .await?
        .expect(StatusCode::CREATED)?;
    let flag_id = flag.str("flag_id")?.to_owned();
    assert_eq!((flag.body["sender_id"].as_str(), flag.body["flagged_by"].as_str()), (Some("max"), Some("ann")));
    let again = t.user("ann").post(&flags, json!({"message_id": id, "reason": "again"})).await?;
    assert_eq!(again.expect(StatusCode::CREATED)?.body["flag_id"], flag_id.as_str());
    // Moderators see them; members do not.
    t.user("ann").get(&flags).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    let queue = t.user("mia").get(&flags).await?.expect(StatusCode::OK)?;
    assert_eq!(queue.body["flags"].as_array().map(Vec::len), Some(1));
    // The operator sees the tenant's queue.
    let admin_flags = stack.admin(Method::GET, &format!("/admin/tenants/{}/flags", t.id), None).await?;
    assert_eq!(admin_flags.expect(StatusCode::OK)?.body["flags"][0]["flag_id"], flag_id.as_str());

    // Moderators delete anyone's message; members cannot.
    let msg = format!("/rooms/{room}/messages/{id}");
    t.user("ann").delete(&msg).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    t.user_on(1, "mia").delete(&msg).await?.expect(StatusCode::OK)?;
    // Resolved: out of the open queue, in `status=all`; resolving again keeps the first.
    let resolved = t
        .user("mia")
        .post(&format!("{flags}/{flag_id}/resolve"), json!({"resolution": "deleted"}))
        .await?
        .expect(StatusCode::OK)?;
    assert_eq!(
        (resolved.body["resolved_by"].as_str(), resolved.body["resolution"].as_str()),
        (Some("mia"), Some("deleted"))
    );
    let second = t.user("olga").post(&format!("{flags}/{flag_id}/resolve"), json!({})).await?.expect(StatusCode::OK)?;
    assert_eq!(second.body["resolved_by"], "mia");
    assert_eq!(t.user("mia").get(&flags).await?.expect(StatusCode::OK)?.body["flags"], json!([]));
    let all = t.user("mia").get(&format!("{flags}?status=all")).await?.expect(StatusCode::OK)?;
    assert_eq!(all.body["flags"].as_array().map(Vec::len), Some(1));

    // The other actions.
    let mutes = format!("/rooms/{room}/mutes");
    t.user("mia").post(&mutes, json!({"user_id": "max", "reason": "cool off"})).await?.expect(StatusCode::CREATED)?;
    t.user("mia").delete(&format!("/rooms/{room}/mutes/max")).await?.expect(StatusCode::OK)?;
    let bans = format!("/rooms/{room}/bans");
    t.user("mia").post(&bans, json!({"user_id": "max", "reason": "again"})).await?.expect(StatusCode::CREATED)?;
    t.user("mia").delete(&format!("/rooms/{room}/bans/max")).await?.expect(StatusCode::OK)?;
    patch(&owner, &format!("/rooms/{room}/settings"), json!({"slow_mode_secs": 10})).await?.expect(StatusCode::OK)?;
    owner.delete(&format!("/rooms/{room}/members/bea")).await?.expect(StatusCode::OK)?;

    // Admins read the log; moderators and members do not.
    let log_path = format!("/rooms/{room}/moderation-log");
    t.user("mia").get(&log_path).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    let log = t.user_on(1, "olga").get(&log_path).await?.expect(StatusCode::OK)?;
    let entries = log.body["entries"].as_array().cloned().unwrap_or_default();
    let actions: Vec<&str> = entries.iter().rev().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "role",
            "flag",
            "delete_message",
            "resolve_flag",
            "mute",
            "unmute",
            "ban",
            "unban",
            "settings",
            "remove_member"
        ],
        "{}",
        log.body
    );
    let find = |a: &str| entries.iter().find(|e| e["action"] == a).cloned().unwrap_or_default();
    assert_eq!(find("role")["detail"], json!({"from": "member", "to": "moderator"}));
    assert_eq!(
        (find("role")["actor_id"].as_str(), find("role")["target_user_id"].as_str()),
        (Some("olga"), Some("mia"))
    );
    assert_eq!(find("mute")["reason"], "cool off");
    assert_eq!(find("delete_message")["message_id"], id.as_str());
    assert_eq!(find("flag")["actor_id"], "ann");
    assert!(entries.iter().all(|e| e["created_at"].is_string()));
    let tenant_log = stack.admin(Method::GET, &format!("/admin/tenants/{}/moderation-log", t.id), None).await?;
    assert_eq!(tenant_log.expect(StatusCode::OK)?.body["entries"].as_array().map(Vec::len), Some(entries.len()));
    // Another tenant sees none of it.
    let other = busy_tenant(&stack).await?;
    let theirs = stack.admin(Method::GET, &format!("/admin/tenants/{}/flags?status=all", other.id), None).await?;
    assert_eq!(theirs.expect(StatusCode::OK)?.body["flags"], json!([]));
    other.user("olga").get(&log_path).await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_permission_table_is_enforced() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let owner = t.user("olga");
    let room = owner.create_room("group", &["ada", "mia", "max", "ann"]).await?;
    let member = |u: &str| format!("/rooms/{room}/members/{u}");
    let forbidden = |res: Response| res.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None);
    // The owner makes an admin and a moderator; nobody gives `owner`.
    patch(&owner, &member("ada"), json!({"role": "admin"})).await?.expect(StatusCode::OK)?;
    patch(&owner, &member("mia"), json!({"role": "moderator"})).await?.expect(StatusCode::OK)?;
    let owner_role = patch(&owner, &member("ann"), json!({"role": "owner"})).await?;
    owner_role.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("role"))?;
    let ada = t.user("ada");
    // An admin: moderators and members only, roles below its own.
    forbidden(patch(&ada, &member("ann"), json!({"role": "admin"})).await?)?;
    forbidden(patch(&ada, &member("olga"), json!({"role": "member"})).await?)?;
    forbidden(ada.post(&format!("/rooms/{room}/bans"), json!({"user_id": "olga"})).await?)?;
    forbidden(ada.delete(&member("olga")).await?)?;
    forbidden(ada.post(&format!("/rooms/{room}/members"), json!({"user_id": "new1", "role": "admin"})).await?)?;
    ada.post(&format!("/rooms/{room}/members"), json!({"user_id": "new2", "role": "moderator"}))
        .await?
        .expect(StatusCode::CREATED)?;
    // A moderator cannot change roles, settings, members or read the log; bans members only.
    let mia = t.user("mia");
    forbidden(patch(&mia, &member("ann"), json!({"role": "moderator"})).await?)?;
    forbidden(patch(&mia, &format!("/rooms/{room}/settings"), json!({"slow_mode_secs": 5})).await?)?;
    forbidden(mia.post(&format!("/rooms/{room}/members"), json!({"user_id": "new3"})).await?)?;
    forbidden(mia.delete(&member("ann")).await?)?;
    forbidden(mia.get(&format!("/rooms/{room}/moderation-log")).await?)?;
    forbidden(mia.post(&format!("/rooms/{room}/bans"), json!({"user_id": "new2"})).await?)?;
    forbidden(mia.post(&format!("/rooms/{room}/mutes"), json!({"user_id": "ada"})).await?)?;
    mia.post(&format!("/rooms/{room}/mutes"), json!({"user_id": "ann"})).await?.expect(StatusCode::CREATED)?;
    // A member: none of it.
    let max = t.user("max");
    forbidden(max.post(&format!("/rooms/{room}/bans"), json!({"user_id": "ann"})).await?)?;
    forbidden(max.post(&format!("/rooms/{room}/mutes"), json!({"user_id": "ann"})).await?)?;
    forbidden(max.delete(&format!("/rooms/{room}/mutes/ann")).await?)?;
    forbidden(max.get(&format!("/rooms/{room}/mutes")).await?)?;
    forbidden(max.get(&format!("/rooms/{room}/flags")).await?)?;
    forbidden(patch(&max, &member("ann"), json!({"role": "member"})).await?)?;
    // Nobody outside the room, and no moderation in DMs.
    forbidden(t.user("eve").post(&format!("/rooms/{room}/bans"), json!({"user_id": "max"})).await?)?;
    let dm = owner.create_room("dm", &["max"]).await?;
    forbidden(owner.post(&format!("/rooms/{dm}/mutes"), json!({"user_id": "max"})).await?)?;
    // The roles read back.
    let members = owner.get(&format!("/rooms/{room}/members")).await?.expect(StatusCode::OK)?;
    let find = |u: &str| members.body.as_array().into_iter().flatten().find(|m| m["user_id"] == u).cloned();
    let role = |u: &str| find(u).map(|m| m["role"].clone());
    // The owner reads as an admin (as rest-rooms.md shows a creator), marked `owner`.
    let owners: Vec<Value> = members
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["owner"] == true)
        .map(|m| m["user_id"].clone())
        .collect();
    assert_eq!(owners, [json!("olga")], "{}", members.body);
    assert_eq!(
        [role("olga"), role("ada"), role("mia"), role("max"), role("new2")],
        [
            Some(json!("admin")),
            Some(json!("admin")),
            Some(json!("moderator")),
            Some(json!("member")),
            Some(json!("moderator"))
        ]
    );
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_moderation_requests_are_400() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let owner = t.user("olga");
    let room = owner.create_room("group", &["max"]).await?;
    let bans = format!("/rooms/{room}/bans");
    let bad = |res: Response, field: &str| res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some(field));
    bad(owner.post(&bans, json!({})).await?, "user_id")?;
    bad(owner.post(&bans, json!({"user_id": "bad!id"})).await?, "user_id")?;
    bad(owner.post(&bans, json!({"user_id": "olga"})).await?, "user_id")?;
    bad(owner.post(&bans, json!({"user_id": "max", "reason": 5})).await?, "reason")?;
    bad(owner.post(&bans, json!({"user_id": "max", "reason": "x".repeat(501)})).await?, "reason")?;
    bad(owner.post(&bans, json!({"user_id": "max", "expires_at": "tomorrow"})).await?, "expires_at")?;
    bad(owner.post(&bans, json!({"user_id": "max", "expires_at": "2001-01-01T00:00:00Z"})).await?, "expires_at")?;
    bad(owner.delete(&format!("{bans}/bad!id")).await?, "user_id")?;
    let settings = format!("/rooms/{room}/settings");
    for v in [json!(-1), json!(86_401), json!("10"), json!(1.5)] {
        bad(patch(&owner, &settings, json!({"slow_mode_secs": v})).await?, "slow_mode_secs")?;
    }
    bad(patch(&owner, &format!("/rooms/{room}/members/max"), json!({"role": "king"})).await?, "role")?;
    bad(patch(&owner, &format!("/rooms/{room}/members/max"), json!({})).await?, "role")?;
    let flags = format!("/rooms/{room}/flags");
    bad(owner.post(&flags, json!({"reason": "x"})).await?, "message_id")?;
    bad(owner.post(&flags, json!({"message_id": "bad!id", "reason": "x"})).await?, "message_id")?;
    let msg = t.user("max").send(&room, "hello").await?;
    bad(owner.post(&flags, json!({"message_id": msg["message_id"], "reason": "  "})).await?, "reason")?;
    bad(owner.get(&format!("{flags}?status=maybe")).await?, "status")?;
    bad(owner.post(&format!("{flags}/flag_xyz/resolve"), json!({})).await?, "flag_id")?;
    let missing = format!("{flags}/flag_{}/resolve", "0".repeat(32));
    owner.post(&missing, json!({})).await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    let unknown = json!({"message_id": format!("msg_{}", "0".repeat(32)), "reason": "x"});
    owner.post(&flags, unknown).await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    // Nothing was changed by any of it.
    assert_eq!(owner.get(&settings).await?.expect(StatusCode::OK)?.body["slow_mode_secs"], 0);
    assert_eq!(owner.get(&bans).await?.expect(StatusCode::OK)?.body["items"], json!([]));
    stack.stop().await
}

/// Opens `path` and waits for its script (which sets `window.{global}`) to have run.
async fn load(
    browser: &chat_test_support::browser::Browser,
    stack: &TestStack,
    path: &str,
    global: &str,
) -> anyhow::Result<chat_test_support::browser::Page> {
    let page = browser.page(&stack.url(path)).await?;
    page.wait_for(&format!("{path} to load"), &format!("document.readyState === 'complete' && !!window.{global}"))
        .await?;
    Ok(page)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_owner_moderates_and_the_operator_reviews_in_the_browser() -> anyhow::Result<()> {
    use chat_test_support::browser::{Browser, js, text_of};
    let stack = TestStack::start().await?;
    let t = busy_tenant(&stack).await?;
    let room = t.user("olga").create_room("group", &["max", "ann"]).await?;
    let bad = t.user("max").send(&room, "tiramisu for everyone").await?;
    let flag = json!({"message_id": bad["message_id"], "reason": "off topic"});
    t.user("ann").post(&format!("/rooms/{room}/flags"), flag).await?.expect(StatusCode::CREATED)?;

    // The owner signs in with the API key and opens the room: the panel is hers.
    let browser = Browser::launch().await?;
    let page = load(&browser, &stack, "/", "chatApp").await?;
    page.fill("paste-key", &t.api_key).await?;
    page.fill("paste-user", "olga").await?;
    page.click("#paste-signin").await?;
    page.click(&format!("li.room[data-room=\"{room}\"]")).await?;
    page.wait_for("the moderation panel", "!document.getElementById('moderation').hidden").await?;
    page.wait_for("slow mode's value", "document.getElementById('slow-secs').value === '0'").await?;

    // Mute Max for 10 minutes: his sends are refused.
    page.fill("mod-user", "max").await?;
    page.fill("mod-reason", "flooding").await?;
    page.fill("mod-minutes", "10").await?;
    page.click("#mod-mute").await?;
    page.wait_for("the mute to show", &format!("{}.includes('muted')", text_of("#mod-status"))).await?;
    let res = t.user("max").post(&format!("/rooms/{room}/messages"), json!({"content": "hey"})).await?;
    res.expect_error(StatusCode::FORBIDDEN, "MUTED", None)?;
    let mutes = t.user("olga").get(&format!("/rooms/{room}/mutes")).await?.expect(StatusCode::OK)?;
    assert_eq!(mutes.body["items"][0]["reason"], "flooding");
    assert!(mutes.body["items"][0]["expires_at"].is_string(), "{}", mutes.body);

    // Slow mode.
    page.fill("slow-secs", "30").await?;
    page.click("#slow-set").await?;
    page.wait_for("slow mode to show", &format!("{}.includes('30 s')", text_of("#mod-status"))).await?;
    let settings = t.user("ann").get(&format!("/rooms/{room}/settings")).await?.expect(StatusCode::OK)?;
    assert_eq!(settings.body["slow_mode_secs"], 30);

    // Ban him: he is out.
    page.fill("mod-minutes", "").await?;
    page.click("#mod-ban").await?;
    page.wait_for("the ban to show", &format!("{}.includes('banned')", text_of("#mod-status"))).await?;
    let bans = t.user("olga").get(&format!("/rooms/{room}/bans")).await?.expect(StatusCode::OK)?;
    assert_eq!(bans.body["items"][0]["user_id"], "max");
    t.user("max").get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::FORBIDDEN)?;

    // Block someone, hiding their messages in groups too; the list shows the choice and
    // its checkbox changes it. Then search a member's messages.
    page.eval("document.getElementById('people').open = true; true").await?;
    page.fill("block-user", "zed").await?;
    page.click("#block-hide").await?;
    page.click("#block").await?;
    let zed = "#blocks li[data-blocked=\"zed\"]";
    let shown = |hide: bool| {
        format!(
            "document.querySelector({})?.dataset.hideInGroups === '{hide}' \
             && document.querySelector({}).checked === {hide} && {}.includes({})",
            js(zed),
            js(&format!("{zed} input.hide-in-groups")),
            text_of(zed),
            js(if hide { "messages hidden in groups" } else { "DMs, typing, presence" }),
        )
    };
    page.wait_for("the block in the list, hiding in groups", &shown(true)).await?;
    let blocks = t.user("olga").get("/blocks").await?.expect(StatusCode::OK)?;
    assert_eq!(blocks.body["blocks"][0]["user_id"], "zed");
    assert_eq!(blocks.body["blocks"][0]["hide_in_groups"], true, "{}", blocks.body);
    page.click(&format!("{zed} input.hide-in-groups")).await?;
    page.wait_for("the block no longer hiding in groups", &shown(false)).await?;
    let blocks = t.user("olga").get("/blocks").await?.expect(StatusCode::OK)?;
    assert_eq!(blocks.body["blocks"][0]["hide_in_groups"], false, "{}", blocks.body);
    t.user("ann").send(&room, "tiramisu recipe, anyone?").await?;
    page.fill("search-q", "tiramisu").await?;
    page.fill("search-sender", "ann").await?;
    page.click("#search-go").await?;
    page.wait_for("one hit", "document.querySelectorAll('#search-results li.hit').length === 1").await?;
    let hit = page.eval("document.querySelector('#search-results li.hit').innerHTML").await?;
    assert!(hit.as_str().is_some_and(|h| h.contains("<mark>tiramisu</mark>") && h.contains("ann")), "{hit}");

    // The operator sees the flag and the log in the console.
    let admin = load(&browser, &stack, "/admin", "adminConsole").await?;
    admin.fill("admin-key", &stack.admin_key).await?;
    admin.click("#admin-signin").await?;
    admin.wait_for("the console", "!document.getElementById('console').hidden").await?;
    admin.fill("find-id", &t.id).await?;
    admin.click("#find").await?;
    admin.wait_for("the flag", "document.querySelectorAll('#flags tbody tr[data-flag]').length === 1").await?;
    let flag_row = admin.eval(&text_of("#flags tbody tr[data-flag]")).await?;
    assert!(flag_row.as_str().is_some_and(|r| r.contains("off topic") && r.contains("ann")), "{flag_row}");
    let actions = admin
        .wait_for(
            "the log",
            "[...document.querySelectorAll('#moderation-log tbody tr[data-entry] .action')].map(a => a.textContent).join(' ')",
        )
        .await?;
    assert_eq!(actions, json!("ban settings mute flag"), "newest first");
    drop(browser);
    stack.stop().await
}
