//! The `rest-chat.md` dialect under `/api/chat`: an Express-style REST API (Bearer
//! user tokens, `{success, data}` envelopes, camelCase JSON) over the same rooms,
//! members and messages as every other dialect. Chats are rooms (`_id` is the room
//! id), messages are the rooms' messages; whatever is done here publishes the same bus
//! events as the other dialects, so `/ws`, `/conversations` and `/rooms` clients see it.
//!
//! - [`extract`]: the caller (Bearer token, or `X-API-Key` + `X-User-Id`) and path
//!   segments, read in order, failing in this dialect's error shape ([`error`]).
//! - [`render`]: a chat and a message as JSON (also for the Socket.IO dialect).
//! - [`chats`], [`participants`], [`messages`]: one file per resource; attachments
//!   (`/{id}/messages/file`, `/{id}/files/{token}`) are `crate::attachments`.
//!
//! The reference is `docs/rest-chat.md`.

mod chats;
pub(crate) mod error;
pub(crate) mod extract;
mod messages;
mod participants;
pub(crate) mod render;

use crate::routes::{Mount, op};

/// Mounts `/api/chat` (its mount is the `/api/chat` scope; static paths before the
/// `:id` patterns they would match), each route with its documentation.
pub fn routes(m: &mut Mount) {
    m.at(&["", "/"], |r| {
        r.post(chats::create, op("Create a direct or group chat").user().errors(&[400, 401, 404, 503]))
            .get(chats::list, op("List the caller's chats").user().errors(&[400, 401, 503]))
    })
    .at(&["/purchase-request"], |r| {
        r.post(chats::purchase_request, op("Open the chat of a purchase request").user().errors(&[400, 401, 404, 503]))
    })
    .at(&["/context"], |r| {
        r.post(chats::context, op("Open the chat of a context").user().errors(&[400, 401, 404, 503]))
    })
    .at(&["/support"], |r| r.post(chats::support, op("Open a support chat").user().errors(&[400, 401, 404, 503])))
    .at(&["/stats"], |r| r.get(chats::stats, op("The caller's chat statistics").user().errors(&[401, 503])))
    .at(&["/{id}/info"], |r| {
        r.get(chats::info, op("A chat and its participants").user().errors(&[400, 401, 403, 404, 503]))
    })
    .at(&["/{id}/archive"], |r| {
        r.patch(
            chats::archive,
            op("Archive or unarchive a chat for the caller").user().errors(&[400, 401, 403, 404, 503]),
        )
    })
    .at(&["/{id}/participants"], |r| {
        r.post(participants::add, op("Add participants").user().errors(&[400, 401, 403, 404, 503]))
    })
    .at(&["/{id}/participants/{participantId}"], |r| {
        r.delete(participants::remove, op("Remove a participant").user().errors(&[400, 401, 403, 404, 503]))
    })
    .at(&["/{id}/messages"], |r| {
        r.get(messages::list, op("A chat's messages, newest first").user().errors(&[400, 401, 403, 404, 503]))
            .post(messages::send, op("Send a message").user().errors(&[400, 401, 403, 404, 503]))
    })
    .at(&["/{id}/messages/read"], |r| {
        r.patch(messages::read, op("Mark the chat read").user().errors(&[400, 401, 403, 404, 503]))
    })
    // Attachments (`crate::attachments`): before `/{id}/messages/{messageId}`, which
    // would take `file` for a message id.
    .at(&["/{id}/messages/file"], |r| {
        r.post(
            crate::attachments::upload::upload,
            op("Send a file").user().errors(&[400, 401, 403, 404, 413, 415, 503]),
        )
    })
    .at(&["/{id}/files/{token}"], |r| {
        r.get(crate::attachments::download::download, op("Download a file").user().raw().errors(&[401, 403, 404, 503]))
    })
    .at(&["/{id}/messages/{messageId}"], |r| {
        r.put(messages::edit, op("Edit a message").user().errors(&[400, 401, 403, 404, 503]))
            .delete(messages::delete, op("Delete a message").user().errors(&[400, 401, 403, 404, 503]))
    });
}
