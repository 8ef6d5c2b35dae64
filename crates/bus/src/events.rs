//! JetStream: the stream that keeps room events, and publishing into it with
//! `Nats-Msg-Id`, so a republish of the same event within the dedupe window is dropped.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;

use crate::subjects::Subjects;
use crate::trace;

/// The header JetStream dedupes on.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// Creates (or updates) the stream over `<prefix>.evt.>` and `<prefix>.user.>`,
/// bounded by age.
pub async fn ensure_events_stream(
    js: &jetstream::Context,
    subjects: &Subjects,
    max_age: Duration,
) -> anyhow::Result<stream::Info> {
    let config = stream::Config {
        name: subjects.events_stream(),
        subjects: vec![subjects.all_room_events(), subjects.all_user_events()],
        max_age,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    js.create_or_update_stream(config.clone()).await.with_context(|| format!("creating stream {}", config.name))
}

/// The next message of a pull consumer, or `None` once `shutdown` fires or the
/// stream of messages ends. Transient errors are logged (as `what`) and skipped.
pub async fn next_or_stop<S, F>(
    messages: &mut S,
    shutdown: &mut std::pin::Pin<&mut F>,
    what: &str,
) -> Option<jetstream::Message>
where
    S: futures_util::Stream<Item = Result<jetstream::Message, async_nats::jetstream::consumer::pull::MessagesError>>
        + Unpin,
    F: std::future::Future<Output = ()>,
{
    use futures_util::StreamExt as _;
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => return None,
            m = messages.next() => match m {
                Some(Ok(m)) => return Some(m),
                Some(Err(e)) => tracing::warn!(error = %e, "{what} error"),
                None => return None,
            },
        }
    }
}

/// Publishes one event and waits for JetStream to store it.
pub async fn publish_event(
    js: &jetstream::Context,
    subject: String,
    event_id: &str,
    payload: Bytes,
) -> anyhow::Result<()> {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, event_id);
    trace::inject(&mut headers);
    let ack = js
        .publish_with_headers(subject.clone(), headers, payload)
        .await
        .with_context(|| format!("publishing to {subject}"))?;
    ack.await.with_context(|| format!("waiting for the stream to store {subject}"))?;
    Ok(())
}
