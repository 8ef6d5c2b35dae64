//! The bus contract: events leave message-store after commit (and the relays
//! republish what was not confirmed), every command gets an envelope reply even
//! when malformed, and trace context crosses the bus.

use std::collections::BTreeMap;

use chat_bus::server::Router;
use chat_domain::ErrorCode;
use chat_domain::ids::{RoomId, TenantId};
use chat_domain::proto::Service;
use chat_domain::proto::events::RoomEvent;
use chat_domain::proto::health::{Health, ServiceHealth};
use chat_test_support::{TestStack, bounded};
use futures_util::StreamExt as _;
use serde_json::json;
use tracing::Instrument as _;

#[tokio::test(flavor = "multi_thread")]
async fn message_created_is_published_after_commit() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let alice = t.user("alice");
    let room = alice.create_room("group", &["bob"]).await?;
    let (tenant, room_id) = (TenantId::parse(t.id.as_str())?, RoomId::parse(room.as_str())?);
    let mut sub = stack.bus.client().subscribe(stack.bus.subjects().room_events(&tenant, &room_id)).await?;
    stack.bus.client().flush().await?;
    let sent = alice.send(&room, "over the bus").await?;
    let msg = bounded("message.created", sub.next()).await?.ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
    assert_eq!(msg.subject.as_str(), stack.bus.subjects().room_event(&tenant, &room_id, "message.created"));
    let event: RoomEvent = serde_json::from_slice(&msg.payload)?;
    let v = serde_json::to_value(&event)?;
    assert_eq!(v["kind"], "message.created");
    assert_eq!(v["data"]["seq"], sent["seq"]);
    assert_eq!(v["data"]["message_id"], sent["message_id"]);
    assert_eq!(v["tenant_id"], t.id.as_str());

    // Membership changes are events too.
    alice.post(&format!("/rooms/{room}/members"), json!({"user_id": "carol"})).await?;
    let msg = bounded("member.added", sub.next()).await?.ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
    assert!(msg.subject.ends_with(".member.added"));
    alice.delete(&format!("/rooms/{room}/members/carol")).await?;
    let msg = bounded("member.removed", sub.next()).await?.ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
    assert!(msg.subject.ends_with(".member.removed"));

    // Events travel on core NATS: no stream keeps a second copy of them.
    let js = async_nats::jetstream::new(stack.bus.client().clone());
    assert!(js.get_stream(stack.bus.subjects().events_stream()).await.is_err(), "no events stream");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_publishes_what_was_left_in_the_outbox() -> anyhow::Result<()> {
    use diesel::sql_types::Text;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    let stack = TestStack::start().await?;
    let tenant = TenantId::parse("ten_relay")?;
    let room = RoomId::generate();
    let subject = stack.bus.subjects().room_event(&tenant, &room, "message.created");
    let mut sub = stack.bus.client().subscribe(subject.clone()).await?;
    stack.bus.client().flush().await?;
    // As if message-store crashed between commit and publish.
    let event_id = chat_domain::ids::EventId::generate();
    let mut conn = AsyncPgConnection::establish(&chat_test_support::database_url()).await?;
    diesel::sql_query("INSERT INTO outbox (bus_prefix, event_id, subject, payload) VALUES ($1, $2, $3, $4)")
        .bind::<Text, _>(&stack.prefix)
        .bind::<Text, _>(event_id.as_str())
        .bind::<Text, _>(&subject)
        .bind::<Text, _>(r#"{"stranded":true}"#)
        .execute(&mut conn)
        .await?;
    let msg = bounded("the relay", sub.next()).await?.ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
    assert_eq!(&msg.payload[..], br#"{"stranded":true}"#);
    chat_test_support::eventually("the outbox row to be cleared", || {
        let prefix = stack.prefix.clone();
        let url = chat_test_support::database_url();
        async move {
            #[derive(diesel::QueryableByName)]
            struct N {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let mut conn = AsyncPgConnection::establish(&url).await?;
            let n: N = diesel::sql_query("SELECT count(*) AS n FROM outbox WHERE bus_prefix = $1")
                .bind::<Text, _>(prefix)
                .get_result(&mut conn)
                .await?;
            Ok(n.n == 0)
        }
    })
    .await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_gets_an_envelope() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(0).start().await?;
    let client = stack.bus.client();
    let subjects = stack.bus.subjects();
    let ask = |verb: &str, body: &'static [u8]| {
        let subject = subjects.command(Service::MessageStore, verb);
        async move { client.request(subject, body.into()).await }
    };
    let reply: serde_json::Value = serde_json::from_slice(&ask("no_such_verb", b"{}").await?.payload)?;
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "VALIDATION_ERROR");
    let reply: serde_json::Value = serde_json::from_slice(&ask("send_message", b"{not json").await?.payload)?;
    assert_eq!(reply["error"]["code"], "VALIDATION_ERROR");
    // Validated types refuse bad ids inside commands too.
    let reply: serde_json::Value = serde_json::from_slice(
        &ask("get_room", br#"{"actor":{"tenant_id":"t","user_id":"u"},"room_id":"a.b"}"#).await?.payload,
    )?;
    assert_eq!(reply["error"]["code"], "VALIDATION_ERROR");
    let reply: serde_json::Value = serde_json::from_slice(&ask("health", b"{}").await?.payload)?;
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["data"]["service"], "message-store");
    assert_eq!(reply["data"]["checks"]["db_writable"], true);
    // Typed errors come back as ApiError.
    let err = stack
        .bus
        .request(&chat_domain::proto::store::Authenticate { api_key: "nope".into() })
        .await
        .err()
        .map(|e| e.code);
    assert_eq!(err, Some(ErrorCode::AuthenticationError));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_context_crosses_the_bus() -> anyhow::Result<()> {
    chat_telemetry_init();
    let stack =
        TestStack::builder().gateways(0).message_stores(0).without_presence().without_notification().start().await?;
    // A probe service answering `health` with the trace id it sees.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = Router::new(()).route(|_: (), _: Health| async {
        let seen = chat_bus::trace::current_trace_id().unwrap_or_default();
        Ok(ServiceHealth::new("probe", &seen, 0, BTreeMap::new()))
    });
    let server = tokio::spawn(router.serve(stack.bus.clone(), Service::Presence, async {
        let _ = stop_rx.await;
    }));
    chat_test_support::eventually("the probe to answer", || async {
        Ok(stack.bus.request_to(Service::Presence, &Health {}).await.is_ok())
    })
    .await?;
    let span = tracing::info_span!("caller");
    let (sent, seen) = async {
        let sent = chat_bus::trace::current_trace_id();
        let reply = stack.bus.request_to(Service::Presence, &Health {}).await;
        (sent, reply.map(|h| h.instance))
    }
    .instrument(span)
    .await;
    let sent = sent.ok_or_else(|| anyhow::anyhow!("the caller has no trace"))?;
    assert_eq!(seen.map_err(|e| anyhow::anyhow!("{e}"))?, sent, "the handler continues the caller's trace");
    let _ = stop_tx.send(());
    bounded("probe stop", server).await???;
    stack.stop().await
}

fn chat_telemetry_init() {
    // TestStack does this too; called first so the span below is traced.
    chat_test_support::init_tracing();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_handler_still_answers() -> anyhow::Result<()> {
    let stack =
        TestStack::builder().gateways(0).message_stores(0).without_presence().without_notification().start().await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = Router::new(()).route(|_: (), _: Health| async {
        if std::hint::black_box(true) {
            panic!("a bug in a handler");
        }
        Ok(ServiceHealth::new("probe", "never", 0, BTreeMap::new()))
    });
    let server = tokio::spawn(router.serve(stack.bus.clone(), Service::Presence, async {
        let _ = stop_rx.await;
    }));
    // Until the probe is subscribed, requests find no responder.
    chat_test_support::eventually("the probe to answer", || async {
        let reply = stack.bus.request_to(Service::Presence, &Health {}).await;
        Ok(!matches!(&reply, Err(e) if e.code == ErrorCode::ServiceUnavailable))
    })
    .await?;
    // A panic is an error envelope, not a timeout, and the service goes on serving.
    let again = stack.bus.request_to(Service::Presence, &Health {}).await.err().map(|e| e.code);
    assert_eq!(again, Some(ErrorCode::InternalError));
    let _ = stop_tx.send(());
    bounded("probe stop", server).await???;
    stack.stop().await
}
