//! Messages: per-room `seq` without gaps or repeats under concurrency (also with two
//! message-store replicas), history paging, and idempotent resends.

use std::collections::BTreeSet;

use chat_test_support::{TestStack, bounded};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Reads the whole history of a room, following `after_seq`.
async fn history(c: &chat_test_support::Client, room: &str) -> anyhow::Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page =
            c.get(&format!("/rooms/{room}/messages?after_seq={after}&limit=100")).await?.expect(StatusCode::OK)?;
        let items = page.body.as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return Ok(all);
        }
        after = items.last().and_then(|m| m["seq"].as_i64()).unwrap_or(after);
        all.extend(items);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn send_and_read_back_in_order() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant_with(json!({"name": "busy", "rate_limit_per_sec": 100_000})).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let sent = alice
        .post(
            &format!("/rooms/{room}/messages"),
            json!({"content": "Hello, world!", "meta": {"type": "text", "mentions": ["bob"]}}),
        )
        .await?
        .expect(StatusCode::CREATED)?;
    assert_eq!(sent.body["seq"], 1);
    assert!(sent.str("message_id")?.starts_with("msg_"));
    assert!(sent.str("created_at")?.ends_with('Z'));
    t.user("bob").send(&room, "second").await?;
    alice.send(&room, "third").await?;

    let list = alice.get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
    let msgs = list.body.as_array().cloned().unwrap_or_default();
    assert_eq!(msgs.iter().map(|m| m["seq"].clone()).collect::<Vec<_>>(), vec![json!(1), json!(2), json!(3)]);
    assert_eq!(msgs[0]["content"], "Hello, world!");
    assert_eq!(msgs[0]["sender_id"], "alice");
    assert_eq!(msgs[0]["meta"]["mentions"], json!(["bob"]));
    assert_eq!(msgs[0]["message_id"], sent.body["message_id"]);
    assert_eq!(msgs[0]["created_at"], sent.body["created_at"], "the stored time is the returned time");
    assert_eq!(msgs[1]["sender_id"], "bob");

    let after = alice.get(&format!("/rooms/{room}/messages?after_seq=1&limit=1")).await?.expect(StatusCode::OK)?;
    assert_eq!(
        after.body.as_array().map(|a| a.iter().map(|m| m["seq"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(2)])
    );
    // before_seq pages backwards and still returns oldest first.
    let before = alice.get(&format!("/rooms/{room}/messages?before_seq=3&limit=5")).await?.expect(StatusCode::OK)?;
    let seqs: Vec<_> = before.body.as_array().into_iter().flatten().map(|m| m["seq"].clone()).collect();
    assert_eq!(seqs, vec![json!(1), json!(2)]);
    let newest = alice.get(&format!("/rooms/{room}/messages?before_seq=4&limit=1")).await?.expect(StatusCode::OK)?;
    assert_eq!(newest.body[0]["seq"], 3);
    let room_info = alice.get(&format!("/rooms/{room}")).await?.expect(StatusCode::OK)?;
    assert_eq!(room_info.body["last_seq"], 3);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_default_to_50_and_cap_at_100() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant_with(json!({"name": "busy", "rate_limit_per_sec": 100_000})).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &[]).await?;
    let sends = (0..120).map(|i| {
        let (alice, room) = (alice.clone(), room.clone());
        async move { alice.send(&room, &format!("m{i}")).await }
    });
    for r in futures_util::future::join_all(sends).await {
        r?;
    }
    let page = alice.get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
    assert_eq!(page.body.as_array().map(Vec::len), Some(50));
    let page = alice.get(&format!("/rooms/{room}/messages?limit=100")).await?.expect(StatusCode::OK)?;
    assert_eq!(page.body.as_array().map(Vec::len), Some(100));
    alice.get(&format!("/rooms/{room}/messages?limit=101")).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("limit"),
    )?;
    stack.stop().await
}

/// Sends `n` messages concurrently from `users` and checks the room holds seq 1..=n.
async fn concurrent_sends_are_gapless(stack: &TestStack, n: usize) -> anyhow::Result<()> {
    let t = stack.tenant_with(json!({"name": "busy", "rate_limit_per_sec": 100_000})).await?;
    let users = ["u1", "u2", "u3", "u4", "u5"];
    let room = t.user("u1").create_room("group", &users).await?;
    let sends = (0..n).map(|i| {
        let c = t.user_on(i % stack.gateway_ports.len(), users[i % users.len()]);
        let room = room.clone();
        async move { c.send(&room, &format!("message {i}")).await }
    });
    let results = bounded("concurrent sends", futures_util::future::join_all(sends)).await?;
    let mut acked = BTreeSet::new();
    for r in results {
        acked.insert(r?["seq"].as_i64().unwrap_or(-1));
    }
    let expected: BTreeSet<i64> = (1..=n as i64).collect();
    assert_eq!(acked, expected, "every send was acknowledged with a distinct seq in 1..=N");
    let stored = history(&t.user("u2"), &room).await?;
    let seqs: Vec<i64> = stored.iter().filter_map(|m| m["seq"].as_i64()).collect();
    assert_eq!(seqs, (1..=n as i64).collect::<Vec<_>>(), "history holds 1..=N in order, no gap, no repeat");
    let contents: BTreeSet<_> = stored.iter().filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(contents.len(), n, "every message is stored once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_concurrent_sends_get_seq_1_to_n() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    concurrent_sends_are_gapless(&stack, 300).await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_message_store_replicas_share_the_work() -> anyhow::Result<()> {
    let stack = TestStack::builder().message_stores(2).gateways(2).start().await?;
    concurrent_sends_are_gapless(&stack, 300).await?;
    // Both replicas are in the queue group: health requests reach each of them.
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        let h = stack
            .bus
            .request_to(chat_domain::proto::Service::MessageStore, &chat_domain::proto::health::Health {})
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        seen.insert(h.instance);
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "both message-store replicas answered: {seen:?}");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn resends_with_the_same_key_return_the_first_message() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant_with(json!({"name": "busy", "rate_limit_per_sec": 100_000})).await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let path = format!("/rooms/{room}/messages");

    // Idempotency-Key header.
    let send = |key: &str, content: &str| {
        let req = alice
            .request(reqwest::Method::POST, &path)
            .header("Idempotency-Key", key)
            .json(&json!({"content": content}));
        async move { chat_test_support::Response::from(req.send().await?).await }
    };
    let first = send("k-1", "hello").await?.expect(StatusCode::CREATED)?;
    let again = send("k-1", "hello again").await?.expect(StatusCode::OK)?;
    assert_eq!(again.body["message_id"], first.body["message_id"]);
    assert_eq!(again.body["seq"], first.body["seq"]);
    assert_eq!(again.body["content"], "hello", "the first message, not the resend's body");
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));

    // client_msg_id in the body.
    let body = json!({"content": "via body", "client_msg_id": "c-1"});
    let a = alice.post(&path, body.clone()).await?.expect(StatusCode::CREATED)?;
    let b = alice.post(&path, body).await?.expect(StatusCode::OK)?;
    assert_eq!(a.body["message_id"], b.body["message_id"]);
    assert_eq!(a.body["client_msg_id"], "c-1");

    // The same key from another sender is another message.
    let bob = t.user("bob");
    let other =
        bob.post(&path, json!({"content": "bob's", "client_msg_id": "c-1"})).await?.expect(StatusCode::CREATED)?;
    assert_ne!(other.body["message_id"], a.body["message_id"]);

    // Concurrent resends store one message.
    let racers = (0..10).map(|_| send("race", "once"));
    let results = futures_util::future::join_all(racers).await;
    let mut ids = BTreeSet::new();
    for r in results {
        ids.insert(r?.body["message_id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(ids.len(), 1, "ten concurrent resends made one message");

    // Resends did not consume seqs: the room is 1..=4 without gaps.
    let list = alice.get(&path).await?.expect(StatusCode::OK)?;
    let seqs: Vec<_> = list.body.as_array().into_iter().flatten().map(|m| m["seq"].clone()).collect();
    assert_eq!(seqs, vec![json!(1), json!(2), json!(3), json!(4)]);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_send_does_not_sink_the_others_in_its_batch() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant_with(json!({"name": "batch", "rate_limit_per_sec": 100_000})).await?;
    let room = t.user("alice").create_room("group", &[]).await?;
    // Members and a stranger send at once; sends share transactions (group commit).
    let sends = (0..100).map(|i| {
        let user = if i % 2 == 0 { "alice" } else { "stranger" };
        let (c, room) = (t.user(user), room.clone());
        async move { c.post(&format!("/rooms/{room}/messages"), json!({"content": format!("m{i}")})).await }
    });
    let results = bounded("mixed sends", futures_util::future::join_all(sends)).await?;
    let mut created = 0;
    for r in results {
        let r = r?;
        match r.status {
            StatusCode::CREATED => created += 1,
            StatusCode::FORBIDDEN => r.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", None)?,
            other => anyhow::bail!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(created, 50);
    let stored = history(&t.user("alice"), &room).await?;
    let seqs: Vec<i64> = stored.iter().filter_map(|m| m["seq"].as_i64()).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>(), "only the members' sends, gapless");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_that_fails_in_the_database_is_stored_send_by_send() -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    // A database-side failure for one marked message (a trigger that only fires for
    // this test's marker), as a stand-in for any unexpected error inside a batch.
    let marker = chat_test_support::unique("poison-");
    let mut conn = AsyncPgConnection::establish(&chat_test_support::database_url()).await?;
    diesel::sql_query(
        "CREATE OR REPLACE FUNCTION chat_test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.content LIKE 'poison-%' THEN RAISE EXCEPTION 'poisoned message'; END IF;
             RETURN NEW;
         END $$",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'chat_test_poison') THEN
                 CREATE TRIGGER chat_test_poison BEFORE INSERT ON messages
                 FOR EACH ROW EXECUTE FUNCTION chat_test_poison();
             END IF;
         END $$",
    )
    .execute(&mut conn)
    .await?;
    // One writer, so concurrent sends queue up and share batches with the poisoned one.
    let stack = TestStack::builder().message_store_config(|c| c.send_writers = 1).start().await?;
    let t = stack.tenant_with(json!({"name": "fallback", "rate_limit_per_sec": 100_000})).await?;
    let room = t.user("alice").create_room("group", &[]).await?;
    let sends = (0..60).map(|i| {
        let (c, room) = (t.user("alice"), room.clone());
        let content = if i == 30 { marker.clone() } else { format!("m{i}") };
        async move { c.post(&format!("/rooms/{room}/messages"), json!({"content": content})).await }
    });
    let results = bounded("sends", futures_util::future::join_all(sends)).await?;
    let mut created = 0;
    for r in results {
        let r = r?;
        match r.status {
            StatusCode::CREATED => created += 1,
            StatusCode::INTERNAL_SERVER_ERROR => assert_eq!(r.body["error"]["code"], "INTERNAL_ERROR"),
            other => anyhow::bail!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(created, 59, "every send but the poisoned one is stored");
    let stored = history(&t.user("alice"), &room).await?;
    let seqs: Vec<i64> = stored.iter().filter_map(|m| m["seq"].as_i64()).collect();
    assert_eq!(seqs, (1..=59).collect::<Vec<_>>(), "gapless: the failed batch left no seq behind");
    assert!(stored.iter().all(|m| m["content"] != marker.as_str()));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_request_answers_every_send_in_order() -> anyhow::Result<()> {
    use chat_domain::model::{Actor, MessageContent};
    use chat_domain::proto::store::{SendMessage, SendMessages, SendOutcome};
    let stack = TestStack::start().await?;
    let t = stack.tenant_with(json!({"name": "batch request", "rate_limit_per_sec": 100_000})).await?;
    let room = t.user("alice").create_room("group", &[]).await?;
    let tenant = chat_domain::ids::TenantId::parse(t.id.as_str())?;
    let send = |user: &str, room: &str, content: &str, client: Option<&str>| -> anyhow::Result<SendMessage> {
        Ok(SendMessage {
            actor: Actor { tenant_id: tenant.clone(), user_id: chat_domain::ids::UserId::parse(user)? },
            room_id: chat_domain::ids::RoomId::parse(room)?,
            content: MessageContent::parse(content)?,
            sender_name: None,
            meta: None,
            client_msg_id: client.map(str::to_owned),
            kind: chat_domain::model::MessageKind::Text,
            reply_to: None,
            attachments: Vec::new(),
            parent_id: None,
            mentions: Vec::new(),
        })
    };
    let sends = vec![
        send("alice", &room, "one", Some("c1"))?,
        send("stranger", &room, "not a member", None)?,
        send("alice", "room_missing", "no such room", None)?,
        send("alice", &room, "one again", Some("c1"))?,
        send("alice", &room, "two", None)?,
    ];
    let outcomes = stack.bus.request(&SendMessages { sends }).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let kinds: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            SendOutcome::Sent(s) => format!("sent {} {}", s.message.seq, s.duplicate),
            SendOutcome::Failed(e) => e.code.as_str().to_owned(),
        })
        .collect();
    assert_eq!(kinds, ["sent 1 false", "FORBIDDEN", "NOT_FOUND", "sent 1 true", "sent 2 false"]);
    // Too many in one request is refused as a whole.
    let many = (0..1001).map(|i| send("alice", &room, &format!("m{i}"), None)).collect::<anyhow::Result<Vec<_>>>()?;
    let err = stack.bus.request(&SendMessages { sends: many }).await.err().map(|e| e.code);
    assert_eq!(err, Some(chat_domain::ErrorCode::ValidationError));
    stack.stop().await
}

/// A send's kind, replied-to message and attachments are stored with it, come back on
/// a resend, and are read back by history; a reply to a message of another room is
/// refused without storing anything.
#[tokio::test(flavor = "multi_thread")]
async fn kind_reply_and_attachments_are_stored_and_read_back() -> anyhow::Result<()> {
    use chat_domain::ids::{MessageId, RoomId, TenantId, UserId};
    use chat_domain::model::{Actor, Attachment, MessageContent, MessageKind};
    use chat_domain::proto::store::{ListMessages, SendMessage};
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let room = t.user("alice").create_room("group", &[]).await?;
    let other = t.user("alice").create_room("group", &[]).await?;
    let actor = Actor { tenant_id: TenantId::parse(t.id.as_str())?, user_id: UserId::parse("alice")? };
    let send = |room: &str, content: &str, reply_to: Option<MessageId>| -> anyhow::Result<SendMessage> {
        Ok(SendMessage {
            actor: actor.clone(),
            room_id: RoomId::parse(room)?,
            content: MessageContent::parse(content)?,
            sender_name: None,
            meta: None,
            client_msg_id: None,
            kind: MessageKind::Text,
            reply_to,
            attachments: Vec::new(),
            parent_id: None,
            mentions: Vec::new(),
        })
    };
    let bus = |e: chat_domain::ApiError| anyhow::anyhow!("{e}");
    let first = stack.bus.request(&send(&room, "first", None)?).await.map_err(bus)?.message;
    let elsewhere = stack.bus.request(&send(&other, "elsewhere", None)?).await.map_err(bus)?.message;
    let file = Attachment {
        key: "t/room/abc.png".into(),
        filename: "abc.png".into(),
        mime_type: "image/png".into(),
        size: 42,
    };
    let mut reply = send(&room, "notice", Some(first.message_id.clone()))?;
    reply.kind = MessageKind::System;
    reply.attachments = vec![file.clone()];
    reply.client_msg_id = Some("r-1".into());
    let stored = stack.bus.request(&reply).await.map_err(bus)?;
    assert_eq!(stored.message.kind, MessageKind::System);
    assert_eq!(stored.message.reply_to.as_ref(), Some(&first.message_id));
    assert_eq!(stored.message.attachments, vec![file.clone()]);
    // A resend answers with what was stored.
    let again = stack.bus.request(&reply).await.map_err(bus)?;
    assert!(again.duplicate);
    assert_eq!(again.message, stored.message);

    let refused = stack.bus.request(&send(&room, "wrong room", Some(elsewhere.message_id.clone()))?).await.err();
    assert_eq!(refused.as_ref().map(|e| e.code), Some(chat_domain::ErrorCode::ValidationError));
    assert_eq!(refused.and_then(|e| e.field).as_deref(), Some("reply_to"));

    let history = stack
        .bus
        .request(&ListMessages {
            actor,
            room_id: RoomId::parse(&room)?,
            after_seq: None,
            before_seq: None,
            limit: 10,
            without_replies: false,
        })
        .await
        .map_err(bus)?;
    assert_eq!(history.len(), 2, "the refused reply stored nothing");
    assert_eq!(history[0].kind, MessageKind::Text);
    assert!(history[0].attachments.is_empty() && history[0].reply_to.is_none());
    assert_eq!(history[1], stored.message);
    stack.stop().await
}
