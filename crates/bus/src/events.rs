//! JetStream helpers: the header JetStream dedupes on, consuming a pull consumer until
//! shutdown, and removing the events stream of earlier versions.

use async_nats::jetstream;

use crate::subjects::Subjects;

/// The header JetStream dedupes on.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// Removes the stream over `<prefix>.evt.>` and `<prefix>.user.>` that earlier
/// versions kept. Events now travel on core NATS: messages are durable in PostgreSQL
/// and the offline pass reads them from there, so a second file-backed copy of every
/// event is no longer paid for. A stream left bound to those subjects would still
/// capture every publish, so it must go. Missing is fine; failures are logged.
pub async fn remove_legacy_events_stream(client: &async_nats::Client, subjects: &Subjects) {
    let js = jetstream::new(client.clone());
    match js.delete_stream(subjects.events_stream()).await {
        Ok(_) => tracing::info!(stream = %subjects.events_stream(), "removed the events stream of an earlier version"),
        Err(e) if e.to_string().contains("not found") => {}
        Err(e) => tracing::warn!(error = %e, "could not remove the legacy events stream"),
    }
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
