//! Reading a window's messages from message-store (`room_messages`, paged by `seq`).
//! Only windows where someone may have missed something are read, a few at a time.

use anyhow::Context as _;
use chat_domain::ErrorCode;
use chat_domain::model::Message;
use chat_domain::proto::store::{MAX_ROOM_MESSAGES, RoomMessages};

use crate::State;
use crate::offline::close::window::Window;

/// `room_messages` requests in flight at once.
pub(super) const READS_AT_ONCE: usize = 8;

/// A window's messages (of every window that shares its `seq` range), or `None` when
/// the room no longer exists.
pub(super) async fn read_window(state: &State, w: &Window) -> anyhow::Result<Option<Vec<Message>>> {
    let mut out = Vec::new();
    let mut after = w.first_seq - 1;
    loop {
        let ask = RoomMessages {
            tenant_id: w.room.tenant_id.clone(),
            room_id: w.room.room_id.clone(),
            after_seq: after,
            until_seq: Some(w.last_seq),
            limit: MAX_ROOM_MESSAGES,
        };
        let page = match state.bus.request(&ask).await {
            Ok(page) => page,
            Err(e) if e.code == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e).context("reading a window's messages"),
        };
        let full = page.len() >= MAX_ROOM_MESSAGES as usize;
        let Some(last) = page.last().map(|m| m.seq) else { break };
        out.extend(page);
        if !full || last >= w.last_seq {
            break;
        }
        after = last;
    }
    Ok(Some(out))
}
