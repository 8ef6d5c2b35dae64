//! One tenant's user events (`message.status`, `notification`, on any room), each
//! rendered once per dialect and offered to that user's sockets on this gateway.
//! Events for users with no socket here are dropped before they are decoded. A
//! `block.changed` updates the user's block set instead (see `blocks`).

use std::sync::{Arc, RwLock};

use chat_bus::Subjects;
use chat_domain::proto::events::{UserEvent, UserEventBody};
use futures_util::StreamExt as _;

use crate::fanout::sockets::{UserBlocks, UserSockets, codec_key};
use crate::session::queue::Out;

/// Follows a tenant's user-event subscription until it ends (or the task is aborted
/// with the tenant's last socket).
pub async fn run(
    subjects: Subjects,
    users: Arc<RwLock<UserSockets>>,
    blocks: Arc<RwLock<UserBlocks>>,
    mut sub: async_nats::Subscriber,
) {
    while let Some(msg) = sub.next().await {
        let Some(user) = subjects.user_of_user_event(msg.subject.as_str()) else { continue };
        if !users.read().is_ok_and(|u| u.contains_key(user)) {
            continue;
        }
        let event = match serde_json::from_slice::<UserEvent>(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, subject = %msg.subject, "undecodable user event");
                continue;
            }
        };
        // A block change updates what the user's sockets here hide; no frame.
        if let UserEventBody::BlockChanged(change) = &event.body {
            if let Some(set) = blocks.read().ok().and_then(|b| b.get(&event.user_id).cloned()) {
                set.apply(change);
            }
            continue;
        }
        let Ok(users) = users.read() else { continue };
        let Some(sockets) = users.get(&event.user_id) else { continue };
        // Rendered once per codec; a dialect may turn one event into several frames.
        // Every frame is queued before any socket is woken, as for a room's event.
        let mut rendered: Vec<(usize, Vec<bytestring::ByteString>)> = Vec::new();
        let mut pending = Vec::new();
        for socket in sockets.values() {
            let codec = codec_key(socket.codec);
            let frames = match rendered.iter().find(|(c, _)| *c == codec) {
                Some((_, frames)) => frames,
                None => {
                    rendered.push((codec, socket.codec.user_event(&event)));
                    match rendered.last() {
                        Some((_, frames)) => frames,
                        None => continue,
                    }
                }
            };
            for text in frames {
                pending.extend(socket.offer_unwoken(Out { seq: None, text: text.clone() }));
            }
        }
        crate::session::relay::wake_all(pending);
    }
}
