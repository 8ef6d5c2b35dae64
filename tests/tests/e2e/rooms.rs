//! Rooms and membership through `rest-rooms.md`: create (dm | group | channel), get,
//! members, add and remove; tenant isolation and membership checks.

use chat_test_support::TestStack;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn group_room_lifecycle() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let alice = t.user("alice");
    let res = alice.post("/rooms", json!({"type": "group", "members": ["bob", "carol"], "name": "Team Chat"})).await?;
    let res = res.expect(StatusCode::CREATED)?;
    let room = res.str("room_id")?.to_owned();
    assert_eq!(res.body["type"], "group");
    assert_eq!(res.body["name"], "Team Chat");
    assert_eq!(res.body["last_seq"], 0);
    assert!(res.body["unique_key"].is_null());
    assert!(res.str("created_at")?.ends_with('Z'));

    let got = alice.get(&format!("/rooms/{room}")).await?.expect(StatusCode::OK)?;
    assert_eq!(got.body["room_id"], room.as_str());
    // Every route is also served under /v1/.
    let v1 = alice.get(&format!("/v1/rooms/{room}")).await?.expect(StatusCode::OK)?;
    assert_eq!(v1.body["room_id"], room.as_str());

    let members = alice.get(&format!("/rooms/{room}/members")).await?.expect(StatusCode::OK)?;
    let list = members.body.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 3);
    let role = |u: &str| list.iter().find(|m| m["user_id"] == u).map(|m| (m["role"].clone(), m["owner"].clone()));
    // rest-rooms.md shows the creator as `admin`: the owner reads as one, marked `owner`.
    assert_eq!(role("alice"), Some((json!("admin"), json!(true))), "the creator is the owner, shown as admin");
    assert_eq!(role("bob"), Some((json!("member"), json!(false))));
    assert!(list.iter().all(|m| m["joined_at"].is_string()));

    // Paging the member list.
    let page = alice.get(&format!("/rooms/{room}/members?limit=2&offset=2")).await?.expect(StatusCode::OK)?;
    assert_eq!(page.body.as_array().map(Vec::len), Some(1));

    // Add: admins only; a repeat is not an error.
    let added = alice.post(&format!("/rooms/{room}/members"), json!({"user_id": "dave"})).await?;
    assert_eq!(added.expect(StatusCode::CREATED)?.body["role"], "member");
    alice.post(&format!("/rooms/{room}/members"), json!({"user_id": "dave"})).await?.expect(StatusCode::OK)?;
    let bob = t.user("bob");
    bob.post(&format!("/rooms/{room}/members"), json!({"user_id": "erin"})).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;

    // Remove: a member may leave; only admins remove others.
    bob.delete(&format!("/rooms/{room}/members/carol")).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;
    bob.delete(&format!("/rooms/{room}/members/bob")).await?.expect(StatusCode::OK)?;
    bob.get(&format!("/rooms/{room}")).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    alice.delete(&format!("/rooms/{room}/members/carol")).await?.expect(StatusCode::OK)?;
    alice.delete(&format!("/rooms/{room}/members/carol")).await?.expect_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    )?;
    let members = alice.get(&format!("/rooms/{room}/members")).await?.expect(StatusCode::OK)?;
    let ids: Vec<_> = members.body.as_array().into_iter().flatten().map(|m| m["user_id"].clone()).collect();
    assert_eq!(ids, vec![json!("alice"), json!("dave")]);
    // The count on the room (kept on its row) followed every add, re-add and removal,
    // in the room, the room list and a socket's greeting.
    let shown = alice.get(&format!("/rooms/{room}")).await?.expect(StatusCode::OK)?.body;
    assert_eq!(shown["member_count"], 2, "{shown}");
    let listed = alice.get("/rooms").await?.expect(StatusCode::OK)?.body;
    let listed = listed.as_array().into_iter().flatten().find(|r| r["room_id"] == room.as_str()).cloned();
    assert_eq!(listed.map(|r| r["member_count"].clone()), Some(json!(2)));
    let url = format!("{}/ws/{room}?token={}&user_id=dave", stack.ws_url(0), t.api_key);
    let mut ws = chat_test_support::WsClient::connect(&url).await?;
    assert_eq!(ws.expect("connection_status").await?["data"]["total_participants"], 2);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn dm_has_a_sorted_unique_key_and_no_second_copy() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let zed = t.user("zed");
    let res = zed.post("/rooms", json!({"type": "dm", "members": ["amy"]})).await?.expect(StatusCode::CREATED)?;
    assert_eq!(res.body["unique_key"], "dm:amy:zed");
    assert_eq!(res.body["type"], "dm");
    let room = res.str("room_id")?.to_owned();

    // The same pair, from either side and listing both, is a conflict.
    let amy = t.user("amy");
    amy.post("/rooms", json!({"type": "dm", "members": ["zed"]})).await?.expect_error(
        StatusCode::CONFLICT,
        "CONFLICT",
        None,
    )?;
    let again = zed.post("/rooms", json!({"type": "dm", "members": ["amy", "zed"]})).await?;
    again.expect_error(StatusCode::CONFLICT, "CONFLICT", None)?;
    assert!(again.body["error"]["message"].as_str().unwrap_or_default().contains(&room), "names the existing DM");

    // A DM is exactly two people, and its membership is fixed.
    zed.post("/rooms", json!({"type": "dm", "members": ["a", "b"]})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("members"),
    )?;
    zed.post("/rooms", json!({"type": "dm", "members": []})).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("members"),
    )?;
    zed.post(&format!("/rooms/{room}/members"), json!({"user_id": "x"})).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;

    // Another tenant may have its own DM between users with the same ids.
    let other = stack.tenant().await?;
    other.user("zed").post("/rooms", json!({"type": "dm", "members": ["amy"]})).await?.expect(StatusCode::CREATED)?;
    // Channels work like groups.
    let ch = zed.post("/rooms", json!({"type": "channel", "name": "news"})).await?.expect(StatusCode::CREATED)?;
    assert_eq!(ch.body["type"], "channel");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_are_isolated_and_members_only() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let (a, b) = (stack.tenant().await?, stack.tenant().await?);
    let room = a.user("alice").create_room("group", &["bob"]).await?;
    a.user("alice").send(&room, "secret").await?;

    // Another tenant's room does not exist for you, even for a user with the same id.
    for user in ["alice", "mallory"] {
        let c = b.user(user);
        c.get(&format!("/rooms/{room}")).await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
        c.get(&format!("/rooms/{room}/messages")).await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
        c.get(&format!("/rooms/{room}/members")).await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
        c.post(&format!("/rooms/{room}/messages"), json!({"content": "hi"})).await?.expect_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
        )?;
        c.post(&format!("/rooms/{room}/members"), json!({"user_id": user})).await?.expect_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
        )?;
    }
    // A non-member of the right tenant is forbidden.
    let eve = a.user("eve");
    eve.get(&format!("/rooms/{room}")).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    eve.get(&format!("/rooms/{room}/messages")).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    eve.get(&format!("/rooms/{room}/members")).await?.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?;
    eve.post(&format!("/rooms/{room}/messages"), json!({"content": "hi"})).await?.expect_error(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    )?;
    // A missing room is not found.
    a.user("alice").get("/rooms/room_doesnotexist").await?.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None)?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn rooms_and_chats_start_with_at_most_a_thousand_members() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let alice = t.user("alice");
    let many = |n: usize| (0..n).map(|i| format!("u{i}")).collect::<Vec<_>>();
    // 999 others and the creator: the most a room may start with.
    let res = alice.post("/rooms", json!({"type": "group", "members": many(999)})).await?;
    res.expect(StatusCode::CREATED)?;
    // One more is refused, naming the field (duplicates and the creator do not count).
    let mut over = many(1000);
    over.extend(["alice".to_owned(), "u0".to_owned()]);
    let res = alice.post("/rooms", json!({"type": "group", "members": over})).await?;
    res.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("members"))?;
    // The same limit on rest-chat.md's chats, in its error shape.
    let res = alice.post("/api/chat", json!({"type": "group", "participantIds": many(1000)})).await?;
    anyhow::ensure!(
        res.status == StatusCode::BAD_REQUEST && res.body["success"] == false && res.body["field"] == "participantIds",
        "{} {}",
        res.status,
        res.body
    );
    Ok(())
}
