//! One-call sync (`GET /sync`) across two gateways: after a "disconnect" (a token kept
//! while others act), a chain of syncs returns exactly the changes made meanwhile —
//! new messages, edits, deletions, cursors, members joined and left, rooms joined and
//! left — and nothing twice; `limit_per_room` with `has_more`/`from_seq`; tampered,
//! foreign and malformed tokens are `400`. Needs PostgreSQL, Redis and NATS.
//!
//! A sync returns what transactions below the oldest one still running wrote, so a
//! change can arrive one sync later while another transaction (of any test) is open:
//! the test therefore syncs until what it expects has arrived, and checks that the
//! union of the answers holds each change exactly once.

use std::collections::BTreeMap;

use chat_test_support::{Client, TestStack};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Everything a chain of syncs returned, flattened to comparable strings.
#[derive(Default)]
struct Seen {
    token: String,
    /// change -> times seen
    changes: BTreeMap<String, u32>,
    /// Cursors are state, not events: one that moved twice may come in two syncs; the
    /// last value seen for each.
    cursors: BTreeMap<String, i64>,
}

impl Seen {
    async fn sync(&mut self, user: &Client, limit: u32) -> anyhow::Result<Value> {
        let path = format!("/sync?since={}&limit_per_room={limit}", self.token);
        let res = user.get(&path).await?.expect(StatusCode::OK)?;
        self.token = res.str("token")?.to_owned();
        for room in res.body["rooms"].as_array().into_iter().flatten() {
            let id = room["room"]["room_id"].as_str().unwrap_or_default();
            let mut note = |what: String| *self.changes.entry(what).or_default() += 1;
            if room["joined"] == true {
                note(format!("joined {id}"));
            }
            for m in room["messages"].as_array().into_iter().flatten() {
                note(format!("new {id} {} {}", m["seq"], m["content"]));
            }
            for m in room["updated"].as_array().into_iter().flatten() {
                let state = if m["deleted_at"].is_string() { "deleted".to_owned() } else { m["content"].to_string() };
                note(format!("updated {id} {} {state}", m["seq"]));
            }
            for c in room["cursors"].as_array().into_iter().flatten() {
                self.cursors.insert(format!("{id} {}", c["user_id"]), c["read_seq"].as_i64().unwrap_or(-1));
            }
            for m in room["members_added"].as_array().into_iter().flatten() {
                note(format!("added {id} {}", m["user_id"]));
            }
            for u in room["members_removed"].as_array().into_iter().flatten() {
                note(format!("removed {id} {u}"));
            }
        }
        for r in res.body["left"].as_array().into_iter().flatten() {
            *self.changes.entry(format!("left {}", r.as_str().unwrap_or_default())).or_default() += 1;
        }
        Ok(res.body)
    }

    /// Syncs until every expected change has arrived (bounded), then checks that
    /// nothing arrived twice and nothing else arrived.
    async fn until(&mut self, user: &Client, expected: &[String], cursors: &[(String, i64)]) -> anyhow::Result<()> {
        for _ in 0..100 {
            if expected.iter().all(|e| self.changes.contains_key(e))
                && cursors.iter().all(|(k, v)| self.cursors.get(k) == Some(v))
            {
                break;
            }
            self.sync(user, 50).await?;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut got: Vec<&String> = self.changes.keys().collect();
        got.sort();
        let mut want: Vec<&String> = expected.iter().collect();
        want.sort();
        assert_eq!(got, want, "exactly the changes made meanwhile");
        let twice: Vec<_> = self.changes.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "returned more than once: {twice:?}");
        let moved: Vec<(String, i64)> = self.cursors.iter().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(moved, cursors.to_vec(), "the cursors that moved, as they are now");
        self.changes.clear();
        self.cursors.clear();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_after_a_disconnect_returns_exactly_the_changes_made_meanwhile() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack.tenant().await?;
    let (alice, bob) = (t.user_on(0, "alice"), t.user_on(1, "bob"));
    let r1 = alice.create_room("group", &["bob"]).await?;
    let r2 = alice.create_room("group", &["bob"]).await?;
    let m1 = alice.send(&r1, "one").await?;
    let m2 = alice.send(&r1, "two").await?;

    // A fresh start: every room, its newest messages, the caller's own cursors.
    let mut seen = Seen::default();
    let fresh = bob.get("/sync").await?.expect(StatusCode::OK)?;
    seen.token = fresh.str("token")?.to_owned();
    let rooms = fresh.body["rooms"].as_array().cloned().unwrap_or_default();
    assert_eq!(rooms.len(), 2);
    let first = rooms.iter().find(|r| r["room"]["room_id"] == r1.as_str()).cloned().unwrap_or_default();
    assert_eq!(first["joined"], true);
    assert_eq!(first["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["messages"][0]["content"], "one", "the same message object as history");
    assert!(first["messages"][0]["message_id"].is_string() && first["messages"][0]["created_at"].is_string());

    // Bob is away; the others act (on the other gateway).
    let m1_id = m1["message_id"].as_str().unwrap_or_default().to_owned();
    let m2_id = m2["message_id"].as_str().unwrap_or_default().to_owned();
    alice.send(&r1, "three").await?;
    alice.send(&r1, "four").await?;
    alice
        .request(reqwest::Method::PATCH, &format!("/rooms/{r1}/messages/{m1_id}"))
        .json(&json!({"content": "one, edited"}))
        .send()
        .await?
        .error_for_status()?;
    alice.delete(&format!("/rooms/{r1}/messages/{m2_id}")).await?.expect(StatusCode::OK)?;
    alice.post(&format!("/rooms/{r1}/members"), json!({"user_id": "carol"})).await?.expect(StatusCode::CREATED)?;
    let r3 = alice.create_room("group", &["bob"]).await?;
    alice.delete(&format!("/rooms/{r2}/members/bob")).await?.expect(StatusCode::OK)?;

    seen.until(
        &bob,
        &[
            format!("new {r1} 3 \"three\""),
            format!("new {r1} 4 \"four\""),
            format!("updated {r1} 1 \"one, edited\""),
            format!("updated {r1} 2 deleted"),
            format!("added {r1} \"carol\""),
            format!("joined {r3}"),
            // R3's creation: its members joined (bob's own join shows as `joined`).
            format!("added {r3} \"alice\""),
            format!("added {r3} \"bob\""),
            format!("left {r2}"),
        ],
        // Alice's cursor moved with each send.
        &[(format!("{r1} \"alice\""), 4)],
    )
    .await?;

    // Nothing happened since: nothing comes back.
    let quiet = seen.sync(&bob, 50).await?;
    assert_eq!(quiet["rooms"], json!([]));
    assert_eq!(quiet["left"], json!([]));

    // limit_per_room: the newest, with has_more and from_seq to page from.
    for i in 0..5 {
        alice.send(&r3, &format!("burst {i}")).await?;
    }
    let mut page = Value::Null;
    for _ in 0..100 {
        page = bob.get(&format!("/sync?since={}&limit_per_room=2", seen.token)).await?.expect(StatusCode::OK)?.body;
        if page["rooms"].as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let room = &page["rooms"][0];
    let contents: Vec<&str> =
        room["messages"].as_array().into_iter().flatten().filter_map(|m| m["content"].as_str()).collect();
    assert!(!contents.is_empty() && contents.len() <= 2, "at most limit_per_room: {contents:?}");
    // The bursts' transactions are sequential, so a window holds a first run of them
    // (all five unless another transaction was open): from the first, the newest two.
    assert_eq!(room["from_seq"], 0);
    if contents.last() == Some(&"burst 4") {
        assert_eq!(contents, vec!["burst 3", "burst 4"]);
        assert_eq!(room["has_more"], true);
    }

    // Refused tokens.
    let token = page["token"].as_str().unwrap_or_default().to_owned();
    let mut tampered = token.clone().into_bytes();
    tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered)?;
    for (who, since) in [(&bob, tampered.as_str()), (&t.user("carol"), token.as_str()), (&bob, "garbage")] {
        who.get(&format!("/sync?since={since}")).await?.expect_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some("since"),
        )?;
    }
    // Another tenant's user of the same name.
    let other = stack.tenant().await?;
    other.user("bob").get(&format!("/sync?since={token}")).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("since"),
    )?;
    bob.get("/sync?limit_per_room=0").await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("limit_per_room"),
    )?;
    stack.stop().await
}
