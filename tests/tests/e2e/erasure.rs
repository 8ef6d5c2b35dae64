//! Deleting a tenant and erasing a user (issue 25, finding 8): after
//! `DELETE /admin/tenants/{id}` nothing of the tenant is left in PostgreSQL (any row of
//! any table of any service whose text mentions it), Redis (any key or member under the
//! stack's prefix), the dead letters in JetStream, or the attachments store, and its
//! open sockets are closed; after `DELETE /admin/tenants/{id}/users/{user}` the same
//! holds for the user, their messages stay as tombstones of `~deleted`, and everyone
//! else's data is untouched. Needs PostgreSQL, Redis and NATS.

use async_nats::jetstream::consumer;
use chat_test_support::{TestStack, TestTenant, WsClient, bounded, eventually_within, unique};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use gateway::attachments::Store;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A 1×1 PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xff\xff?\0\x05\xfe\x02\xfe\xa7\x35\x81\x84\0\0\0\0IEND\xaeB`\x82";

/// Long enough for the second presence pass and the rate-limit counters' expiry.
const SETTLE: u64 = 20;

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// `schema.table (rows)` of every table of every service with a row whose text holds
/// `needle`.
async fn pg_mentions(needle: &str) -> anyhow::Result<Vec<String>> {
    let mut db = AsyncPgConnection::establish(&chat_test_support::database_url()).await?;
    let tables: Vec<TableName> = diesel::sql_query(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name FROM information_schema.tables
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .load(&mut db)
    .await?;
    let mut found = Vec::new();
    for t in tables {
        let c: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {} r WHERE r::text LIKE $1", t.name))
            .bind::<Text, _>(format!("%{needle}%"))
            .get_result(&mut db)
            .await?;
        if c.n > 0 {
            found.push(format!("{} ({})", t.name, c.n));
        }
    }
    Ok(found)
}

/// Redis keys under the stack's prefix whose name or content holds `needle`.
async fn redis_mentions(stack: &TestStack, needle: &str) -> anyhow::Result<Vec<String>> {
    let mut r = chat_redis::connect(&chat_test_support::redis_url(), "test").await?;
    let mut cursor = 0u64;
    let mut found = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:*", stack.prefix))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut r)
            .await?;
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut r).await?;
            let content: Vec<String> = match kind.as_str() {
                "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut r).await?,
                "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut r).await?,
                "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut r).await?,
                "string" => {
                    vec![redis::cmd("GET").arg(&key).query_async::<Option<String>>(&mut r).await?.unwrap_or_default()]
                }
                _ => Vec::new(),
            };
            if key.contains(needle) || content.iter().any(|c| c.contains(needle)) {
                found.push(key);
            }
        }
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

/// Dead letters of `tenant` in the stack's dead-letter stream.
async fn dead_letters(stack: &TestStack, tenant: &str) -> anyhow::Result<u64> {
    let js = async_nats::jetstream::new(stack.bus.client().clone());
    let stream = js.get_stream(stack.bus.subjects().dead_letter_stream()).await?;
    let tenant = chat_domain::ids::TenantId::parse(tenant)?;
    let mut c = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: stack.bus.subjects().dead_letters_of(&tenant),
            ..Default::default()
        })
        .await?;
    Ok(c.info().await?.num_pending)
}

/// Objects in the attachments store under `prefix`.
async fn objects(stack: &TestStack, prefix: &str) -> anyhow::Result<Vec<String>> {
    Store::open(&stack.attachments.store)?.list(prefix).await
}

/// A `multipart/form-data` body with one PNG, and its `Content-Type`.
fn png_form() -> (String, Vec<u8>) {
    let boundary = format!("----chat{}", unique("b"));
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(PNG);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads a PNG into `room` as `user`.
async fn upload(stack: &TestStack, t: &TestTenant, user: &str, room: &str) -> anyhow::Result<()> {
    let token = t.user(user).post("/tokens", json!({})).await?.expect(StatusCode::CREATED)?.str("token")?.to_owned();
    let (content_type, body) = png_form();
    let res = stack
        .http
        .post(format!("{}/api/chat/{room}/messages/file", stack.base_url(0)))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(res.status().is_success(), "upload: {} {}", res.status(), res.text().await?);
    Ok(())
}

/// A tenant with data of every kind in every store: directory users, a room with
/// messages, cursors and an attachment, thread replies and mentions both ways, blocks both ways, reactions
/// both ways and a pin, moderation rows (slow mode, a mute, a flag, their log), an inbox entry, a
/// subscription, a dead letter
/// (a webhook that refuses), presence and a rate-limit counter. Returns the tenant, the
/// room and an open socket of `alice`.
async fn populated(stack: &TestStack, alice: &str, bob: &str) -> anyhow::Result<(TestTenant, String, WsClient)> {
    let t = stack.tenant_with(json!({"name": "erase", "rate_limit_per_sec": 100_000})).await?;
    for u in [alice, bob] {
        let put = t
            .user("server")
            .request(Method::PUT, &format!("/users/{u}"))
            .json(&json!({"name": u, "metadata": {"u": u}}));
        anyhow::ensure!(put.send().await?.status().is_success(), "registering {u}");
    }
    let room = t.user(alice).create_room("group", &[bob]).await?;
    let first = t.user(alice).send(&room, &format!("hello from {alice}")).await?;
    let second = t.user(bob).send(&room, &format!("hello from {bob}")).await?;
    // Reactions both ways, and a pin (by alice, the room's admin) of bob's message.
    for (who, message) in [(alice, &second), (bob, &first)] {
        let id = message["message_id"].as_str().unwrap_or_default();
        let react = t.user(who).request(Method::PUT, &format!("/rooms/{room}/messages/{id}/reactions/%F0%9F%91%8D"));
        anyhow::ensure!(react.send().await?.status() == StatusCode::CREATED, "{who} reacting to {id}");
    }
    let id = second["message_id"].as_str().unwrap_or_default();
    let pin = t.user(alice).request(Method::PUT, &format!("/rooms/{room}/pins/{id}"));
    anyhow::ensure!(pin.send().await?.status().is_success(), "{alice} pinning {id}");
    t.user(bob).post(&format!("/rooms/{room}/read"), json!({"seq": 2})).await?;
    // Threads and mentions (migration 0070): each replies in the other's thread naming
    // them, and reads it (a thread read cursor each).
    let first = t.user(alice).get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?.body;
    for (who, whom, i) in [(bob, alice, 0), (alice, bob, 1)] {
        let parent = first[i]["message_id"].as_str().unwrap_or_default().to_owned();
        let body = json!({"content": "a reply", "parent_id": parent, "mentions": [whom]});
        t.user(who).post(&format!("/rooms/{room}/messages"), body).await?.expect(StatusCode::CREATED)?;
        t.user(whom).get(&format!("/rooms/{room}/messages/{parent}/thread")).await?.expect(StatusCode::OK)?;
    }
    upload(stack, &t, alice, &room).await?;
    upload(stack, &t, bob, &room).await?;
    t.user(alice).post("/subscriptions", json!({"topic": "news"})).await?.expect(StatusCode::CREATED)?;
    // Blocks both ways (after the sends: a block does not affect group rooms anyway).
    for (who, whom) in [(alice, bob), (bob, alice)] {
        let block = t.user(who).request(Method::PUT, &format!("/blocks/{whom}"));
        anyhow::ensure!(block.send().await?.status().is_success(), "{who} blocking {whom}");
    }
    // Moderation: a slow-mode row, a mute and a flag naming the other, and their log rows.
    let slow =
        t.user(alice).request(Method::PATCH, &format!("/rooms/{room}/settings")).json(&json!({"slow_mode_secs": 1}));
    anyhow::ensure!(slow.send().await?.status().is_success(), "slow mode");
    t.user(bob).send(&room, "in slow mode").await?;
    let mute = json!({"user_id": bob, "reason": format!("quiet, {bob}")});
    t.user(alice).post(&format!("/rooms/{room}/mutes"), mute).await?.expect(StatusCode::CREATED)?;
    let history = t.user(bob).get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
    let first = history
        .body
        .as_array()
        .and_then(|a| a.iter().find(|m| m["content"] == format!("hello from {alice}").as_str()))
        .map(|m| m["message_id"].clone())
        .ok_or_else(|| anyhow::anyhow!("no message of {alice}"))?;
    let flag = json!({"message_id": first, "reason": format!("{alice} said hello")});
    t.user(bob).post(&format!("/rooms/{room}/flags"), flag).await?.expect(StatusCode::CREATED)?;
    let hook = json!({"webhook_url": "http://127.0.0.1:9/refused", "retry": {"max_attempts": 1, "backoff_ms": 10}});
    stack.admin(Method::PATCH, &format!("/admin/tenants/{}", t.id), Some(hook)).await?.expect(StatusCode::OK)?;
    let notify = json!({"topic": "news", "payload": {"n": 1}, "targets": {"user_ids": [alice, bob]}});
    t.user("server").post("/notify", notify).await?.expect(StatusCode::ACCEPTED)?;
    let mut ws =
        WsClient::connect(&format!("{}/ws/{room}?token={}&user_id={alice}", stack.ws_url(0), t.api_key)).await?;
    ws.expect("connection_status").await?;
    eventually_within("a dead letter of the tenant", SETTLE, || async { Ok(dead_letters(stack, &t.id).await? > 0) })
        .await?;
    Ok((t, room, ws))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_tenant_leaves_nothing_in_any_store() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let (t, _room, mut ws) = populated(&stack, &alice, &bob).await?;
    let carol = unique("carol");
    let (other, other_room, _other_ws) = populated(&stack, &carol, &unique("dan")).await?;
    // Everything the checks look for is there before (so they can fail).
    assert!(!pg_mentions(&t.id).await?.is_empty());
    assert!(!redis_mentions(&stack, &t.id).await?.is_empty());
    assert_eq!(objects(&stack, &format!("{}/", t.id)).await?.len(), 2);

    let res = stack.admin(Method::DELETE, &format!("/admin/tenants/{}", t.id), None).await?.expect(StatusCode::OK)?;
    assert_eq!((res.body["rooms"].as_u64(), res.body["attachments"].as_u64()), (Some(1), Some(2)), "{}", res.body);
    // Its socket is closed, its key is dead, and it is gone from the admin API.
    bounded("the tenant's socket to close", ws.ended()).await??;
    t.user(&alice).get("/rooms").await?.expect(StatusCode::UNAUTHORIZED)?;
    stack.admin(Method::GET, &format!("/admin/tenants/{}", t.id), None).await?.expect(StatusCode::NOT_FOUND)?;
    stack.admin(Method::DELETE, &format!("/admin/tenants/{}", t.id), None).await?.expect(StatusCode::NOT_FOUND)?;

    // (Once the `member.removed` events written with the deletion are published.)
    eventually_within("nothing of the tenant in PostgreSQL", SETTLE, || async {
        let left = pg_mentions(&t.id).await?;
        if !left.is_empty() {
            eprintln!("still in PostgreSQL: {left:?}");
        }
        Ok(left.is_empty())
    })
    .await?;
    eventually_within("nothing of the tenant in Redis", SETTLE, || async {
        Ok(redis_mentions(&stack, &t.id).await?.is_empty())
    })
    .await?;
    assert_eq!(dead_letters(&stack, &t.id).await?, 0, "JetStream dead letters");
    assert_eq!(objects(&stack, &format!("{}/", t.id)).await?, Vec::<String>::new(), "attachments");

    // The other tenant is untouched.
    let page = other.user(&carol).get(&format!("/rooms/{other_room}/messages")).await?;
    let page: Value = page.expect(StatusCode::OK)?.body;
    assert_eq!(page.as_array().map(Vec::len), Some(7), "{page}");
    assert_eq!(objects(&stack, &format!("{}/", other.id)).await?.len(), 2);
    assert!(dead_letters(&stack, &other.id).await? > 0);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erased_user_leaves_nothing_but_tombstones() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let (t, room, mut ws) = populated(&stack, &alice, &bob).await?;
    assert!(!pg_mentions(&alice).await?.is_empty());
    assert!(!redis_mentions(&stack, &alice).await?.is_empty());

    let path = format!("/admin/tenants/{}/users/{alice}", t.id);
    let res = stack.admin(Method::DELETE, &path, None).await?.expect(StatusCode::OK)?;
    assert_eq!((res.body["messages"].as_u64(), res.body["attachments"].as_u64()), (Some(3), Some(1)), "{}", res.body);
    bounded("alice's socket to close", ws.ended()).await??;

    eventually_within("nothing of alice in PostgreSQL", SETTLE, || async {
        let left = pg_mentions(&alice).await?;
        if !left.is_empty() {
            eprintln!("still in PostgreSQL: {left:?}");
        }
        Ok(left.is_empty())
    })
    .await?;
    eventually_within("nothing of alice in Redis", SETTLE, || async {
        Ok(redis_mentions(&stack, &alice).await?.is_empty())
    })
    .await?;
    let left = objects(&stack, &format!("{}/", t.id)).await?;
    assert_eq!(left.len(), 1, "bob's attachment stays, alice's is gone: {left:?}");

    // Bob keeps the room and his messages; alice's are tombstones in place.
    let page = t.user(&bob).get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?.body;
    let rows = page.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.iter().filter_map(|m| m["seq"].as_i64()).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6, 7], "{page}");
    let erased: Vec<&Value> = rows.iter().filter(|m| m["sender_id"] == chat_domain::ids::ERASED_USER).collect();
    assert_eq!(erased.len(), 3, "{page}");
    assert!(erased.iter().all(|m| m["content"] == "" && !m["deleted_at"].is_null()), "{page}");
    assert!(page.to_string().contains(&format!("hello from {bob}")));
    // Alice's reaction is gone from bob's message, and bob's from her tombstone; bob's
    // message stays pinned, by nobody anyone can name.
    let bobs = rows.iter().find(|m| m["sender_id"] == bob.as_str()).cloned().unwrap_or_default();
    assert_eq!(bobs["reactions"], json!([]), "{bobs}");
    assert_eq!(bobs["pinned_by"], chat_domain::ids::ERASED_USER, "{bobs}");
    assert!(erased.iter().all(|m| m["reactions"] == json!([])), "{page}");
    t.user(&bob).get("/notifications").await?.expect(StatusCode::OK)?;
    assert!(!pg_mentions(&bob).await?.is_empty(), "bob is untouched");
    stack.stop().await
}
