//! Message search (`GET /search`, `GET /api/chat/search`) across two gateways: it finds
//! only what the caller may read (not a non-member, not another tenant, and of a room
//! left only what was there while they were in it), phrase and prefix queries, the
//! highlighted snippet, edits re-indexed and deletions gone at once, the tenant's
//! language, paging, and the documented `400`s. Needs PostgreSQL, Redis and NATS.

use chat_test_support::TestStack;
use chat_test_support::{Client, Response};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The ids of the messages a search found, best first.
fn ids(res: &Response) -> Vec<String> {
    res.body["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["message"]["message_id"].as_str().map(str::to_owned))
        .collect()
}

async fn search(user: &Client, q: &str) -> anyhow::Result<Vec<String>> {
    let q = urlencode(q);
    Ok(ids(&user.get(&format!("/search?q={q}")).await?.expect(StatusCode::OK)?))
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
}

fn id(message: &Value) -> anyhow::Result<String> {
    message["message_id"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no message_id in {message}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_only_what_the_caller_may_read() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack.tenant().await?;
    let other = stack.tenant().await?;
    let (alice, bob) = (t.user_on(0, "alice"), t.user_on(1, "bob"));
    let room = alice.create_room("group", &["bob"]).await?;
    let elsewhere = t.user("carol").create_room("group", &["dave"]).await?;
    let address = id(&alice.send(&room, "The address is 12 Harbour Street, next to the blue bike shop").await?)?;
    let other_msg = id(&alice.send(&room, "A bike that is blue, and nothing else").await?)?;
    t.user("carol").send(&elsewhere, "carol's own blue bike").await?;

    // Words in any order; the phrase only in order; a prefix.
    let mut both = search(&bob, "blue bike").await?;
    both.sort();
    let mut expected = vec![address.clone(), other_msg.clone()];
    expected.sort();
    assert_eq!(both, expected, "bob (gateway 1) finds alice's messages, and not carol's room");
    assert_eq!(search(&bob, "\"blue bike\"").await?, vec![address.clone()]);
    assert_eq!(search(&bob, "harb* street").await?, vec![address.clone()]);
    assert!(search(&bob, "harbourside").await?.is_empty());

    // The result carries the message as history shows it, and an escaped snippet.
    let res = bob.get("/search?q=harbour").await?.expect(StatusCode::OK)?;
    let hit = &res.body["results"][0];
    assert_eq!(hit["message"]["room_id"], room.as_str());
    assert_eq!(hit["message"]["sender_id"], "alice");
    assert_eq!(hit["message"]["seq"], 1);
    assert!(hit["snippet"].as_str().is_some_and(|s| s.contains("<mark>Harbour</mark>")), "{hit}");
    assert!(hit["score"].as_f64().is_some_and(|s| s > 0.0));
    assert!(res.body["next_cursor"].is_null());

    // Not a member, another tenant: nothing of the room.
    assert!(search(&t.user_on(1, "mallory"), "harbour").await?.is_empty());
    assert!(search(&other.user("bob"), "harbour").await?.is_empty());
    assert!(search(&t.user("carol"), "harbour").await?.is_empty());
    // Filters.
    let q = format!("/search?q=blue&room_id={elsewhere}");
    assert!(ids(&bob.get(&q).await?.expect(StatusCode::OK)?).is_empty(), "bob is not in carol's room");
    let q = "/search?q=blue&sender_id=carol";
    assert_eq!(ids(&t.user("carol").get(q).await?.expect(StatusCode::OK)?).len(), 1);

    // Edited: found by its new words at once, not its old ones. Deleted: gone at once.
    alice
        .request(reqwest::Method::PATCH, &format!("/rooms/{room}/messages/{address}"))
        .json(&json!({"content": "Moved to 3 Quay Road"}))
        .send()
        .await?
        .error_for_status()?;
    assert_eq!(search(&bob, "quay").await?, vec![address.clone()]);
    assert!(search(&bob, "harbour").await?.is_empty());
    alice.delete(&format!("/rooms/{room}/messages/{other_msg}")).await?.expect(StatusCode::OK)?;
    assert!(search(&bob, "blue").await?.is_empty());

    // The same search in rest-chat.md's shape.
    let res = bob.get("/api/chat/search?q=quay").await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["success"], true);
    assert_eq!(res.body["data"]["results"][0]["message"]["_id"], address.as_str());
    assert!(res.body["data"]["results"][0]["snippet"].as_str().is_some_and(|s| s.contains("<mark>Quay</mark>")));
    assert!(res.body["data"]["nextCursor"].is_null());
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_who_left_keeps_only_what_they_could_read() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack.tenant().await?;
    let (alice, bob) = (t.user_on(0, "alice"), t.user_on(1, "bob"));
    let room = alice.create_room("group", &["bob"]).await?;
    let before = id(&alice.send(&room, "lighthouse before").await?)?;
    let edited = id(&alice.send(&room, "lighthouse edited later").await?)?;
    bob.delete(&format!("/rooms/{room}/members/bob")).await?.expect(StatusCode::OK)?;
    alice.send(&room, "lighthouse after").await?;
    alice
        .request(reqwest::Method::PATCH, &format!("/rooms/{room}/messages/{edited}"))
        .json(&json!({"content": "lighthouse changed after bob left"}))
        .send()
        .await?
        .error_for_status()?;
    assert_eq!(search(&bob, "lighthouse").await?, vec![before.clone()], "only what bob could read while in the room");
    // Back in the room: everything again.
    alice.post(&format!("/rooms/{room}/members"), json!({"user_id": "bob"})).await?.expect(StatusCode::CREATED)?;
    assert_eq!(search(&bob, "lighthouse").await?.len(), 3);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn language_paging_and_bad_input() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    alice.send(&room, "They were running quickly").await?;
    // `simple` (the default) does not stem; English does, for the messages already stored too.
    assert!(search(&alice, "run").await?.is_empty());
    let res =
        alice.request(reqwest::Method::PATCH, "/settings").json(&json!({"search_language": "english"})).send().await?;
    let res = Response::from(res).await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["search_language"], "english");
    let mut found = Vec::new();
    for _ in 0..100 {
        found = search(&alice, "run").await?;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found.len(), 1, "re-indexed in the tenant's language");
    alice.send(&room, "a runner").await?;
    assert_eq!(search(&alice, "runner").await?.len(), 1);
    let res =
        alice.request(reqwest::Method::PATCH, "/settings").json(&json!({"search_language": "klingon"})).send().await?;
    Response::from(res).await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("search_language"))?;

    // Paging: a cursor walks the results without repeats.
    for i in 0..5 {
        alice.send(&room, &format!("pager number {i}")).await?;
    }
    let first = alice.get("/search?q=pager&limit=3").await?.expect(StatusCode::OK)?;
    let cursor = first.str("next_cursor")?.to_owned();
    let second = alice.get(&format!("/search?q=pager&limit=3&cursor={cursor}")).await?.expect(StatusCode::OK)?;
    assert!(second.body["next_cursor"].is_null());
    let mut all = ids(&first);
    all.extend(ids(&second));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 5);

    for (q, field) in [
        ("/search", "q"),
        ("/search?q=%22%22", "q"),
        ("/search?q=a*", "q"),
        ("/search?q=ab*", "q"),
        ("/search?q=x&cursor=nope", "cursor"),
        ("/search?q=x&limit=51", "limit"),
        ("/search?q=x&before=yesterday", "before"),
        ("/search?q=x&room_id=bad%20id", "room_id"),
    ] {
        alice.get(q).await?.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some(field))?;
    }
    stack.stop().await
}

/// A search whose words are common reads a bounded share of a busy room (message-store's
/// `SEARCH_*` limits, made small here so a few messages make a room busy): the newest
/// matches, older ones through `before=`, every match when they are sparse among the
/// newest messages, and never what the caller may not read — the same rules as the
/// index path.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_room_gives_its_newest_matches_and_before_reaches_the_rest() -> anyhow::Result<()> {
    let stack = TestStack::builder()
        .gateways(2)
        .message_store_config(|c| {
            c.search = message_store::SearchLimits {
                busy_room_matches: 3,
                candidate_budget: 4,
                busy_room_floor: 2,
                walk_per_match: 2,
            }
        })
        .start()
        .await?;
    let t = stack.tenant().await?;
    let (alice, bob, carol) = (t.user_on(0, "alice"), t.user_on(1, "bob"), t.user_on(1, "carol"));
    let room = alice.create_room("group", &["bob", "carol"]).await?;
    let mut old = Vec::new();
    for i in 1..=6 {
        old.push(id(&alice.send(&room, &format!("apple old {i}")).await?)?);
    }
    for i in 1..=4 {
        alice.send(&room, &format!("banana {i}")).await?;
    }
    carol.delete(&format!("/rooms/{room}/members/carol")).await?.expect(StatusCode::OK)?;
    let mut new = Vec::new();
    for i in 1..=6 {
        new.push(id(&alice.send(&room, &format!("apple new {i}")).await?)?);
    }
    let newest = |v: &[String], n: usize| v.iter().rev().take(n).cloned().collect::<Vec<_>>();

    // 12 matches (busy): the walk over the newest 8 messages finds 6 and takes the newest
    // 4 (the budget for one busy room), equal in rank, so newest first.
    assert_eq!(search(&bob, "apple").await?, newest(&new, 4));
    // Older ones: before the first new apple, the walk passes the bananas.
    let first_new = bob.get(&format!("/rooms/{room}/messages?limit=100")).await?.expect(StatusCode::OK)?;
    let created = first_new
        .body
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["message_id"] == new[0].as_str())
        .and_then(|m| m["created_at"].as_str())
        .ok_or_else(|| anyhow::anyhow!("the first new apple is not in the history: {}", first_new.body))?
        .to_owned();
    let page = bob.get(&format!("/search?q=apple&before={}", urlencode(&created))).await?.expect(StatusCode::OK)?;
    assert_eq!(ids(&page), newest(&old, 4));
    // Carol left before the new apples: the walk starts where she left.
    assert_eq!(search(&carol, "apple").await?, newest(&old, 4));
    // A deleted message leaves the walk at once.
    alice.delete(&format!("/rooms/{room}/messages/{}", new[5])).await?.expect(StatusCode::OK)?;
    assert_eq!(search(&bob, "apple").await?, newest(&new[..5], 4));

    // Sparse: 5 pears, then more than the walk reads (2 messages per match wanted) of
    // other words: the walk finds none, so every pear is taken through the index.
    let orchard = alice.create_room("group", &["bob"]).await?;
    let mut pears = Vec::new();
    for i in 1..=5 {
        pears.push(id(&alice.send(&orchard, &format!("pear {i}")).await?)?);
    }
    for i in 1..=9 {
        alice.send(&orchard, &format!("plum {i}")).await?;
    }
    let mut found = ids(&bob.get(&format!("/search?q=pear&room_id={orchard}")).await?.expect(StatusCode::OK)?);
    found.sort();
    pears.sort();
    assert_eq!(found, pears);
    stack.stop().await
}
