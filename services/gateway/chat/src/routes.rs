//! The routes of `/api/chat` (mounted in the `/api/chat` scope), each with its
//! documentation and examples.

use serde_json::{Value, json};

use crate::chats::{self, Archived, ChatCounts, ChatList, ChatListQuery, NewChat, NewContextChat};
use crate::chats::{NewPurchaseRequestChat, NewSupportChat, OneChat};
use crate::files::{download, upload};
use crate::messages::{
    self, EditBody, MarkedRead, MessageList, MessageListQuery, NewMessage, OneMessage, ThreadPageJson, ThreadQuery,
};
use crate::participants::{self, NewParticipants, ParticipantRemoved, ParticipantsAdded};
use crate::reactions::{self, PinsJson, ReactionChanged, ReactorsJson, ReactorsQuery};
use chat_domain::ids::UserId;
use gateway_core::openapi::Auth;
use gateway_core::routes::{Mount, op};

const CHAT_ID: &str = "The chat: its `_id`, the room id of the other dialects.";
const MESSAGE_ID: &str = "The message: its `_id`.";

/// A message as the examples show it.
fn example_message() -> Value {
    json!({
        "_id": "msg_0193a5c3015a7c4e8b2d9f0e1a3c5b7d",
        "chatId": "room_0193a5c2e4b87d10a9f3c2b1e0d4f6a7",
        "sender": "alice",
        "content": "Is the blue one still available?",
        "type": "text",
        "replyToMessageId": null,
        "metadata": {},
        "attachments": [],
        "createdAt": "2026-12-04T18:00:00.123456Z",
        "editedAt": null,
        "deletedAt": null,
        "seq": 7,
        "reactions": [{"emoji": "👍", "count": 2, "userIds": ["bob", "carol"], "me": false}],
    })
}

/// A chat as the examples show it.
fn example_chat() -> Value {
    json!({
        "_id": "room_0193a5c2e4b87d10a9f3c2b1e0d4f6a7",
        "type": "direct",
        "title": null,
        "participants": [
            {"_id": "alice", "name": "Alice", "avatarUrl": "https://cdn.example.com/u/alice.png", "roles": [],
             "role": "owner", "joinedAt": "2026-12-04T17:58:02.000000Z"},
            {"_id": "bob", "name": "Bob", "avatarUrl": null, "roles": [],
             "role": "member", "joinedAt": "2026-12-04T17:58:02.000000Z"},
        ],
        "createdBy": "alice",
        "createdAt": "2026-12-04T17:58:02.000000Z",
        "updatedAt": "2026-12-04T18:00:00.123456Z",
        "lastMessage": example_message(),
        "unreadCount": 0,
        "unreadMentions": 0,
        "isArchived": false,
        "metadata": {},
        "context": null,
    })
}

/// `{"success": true, "data": data}`.
fn envelope(data: Value) -> Value {
    json!({"success": true, "data": data})
}

/// Mounts `/api/chat` (its mount is the `/api/chat` scope; static paths before the
/// `:id` patterns they would match), each route with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    m.at(&["", "/"], |r| {
        r.post(
            chats::create,
            op("Create a direct or group chat")
                .user()
                .describe(
                    "The caller is added as the chat's admin. A direct chat is the caller and exactly one other \
                     user: if the pair already has one it is returned with `200`, never duplicated (its `title` is \
                     ignored). Every participant must be a user of the tenant (`404 participant not found: <id>`); \
                     `400` for no `participantIds`, a direct chat with more than one other participant, or a bad \
                     `type`.",
                )
                .json_example::<NewChat>(json!({"participantIds": ["bob"], "type": "direct"}))
                .reply_example::<OneChat>(201, "The chat, created.", envelope(json!({"chat": example_chat()})))
                .reply::<OneChat>(200, "The pair's existing direct chat.")
                .errors(&[400, 401, 403, 404, 413, 503]),
        )
        .get(
            chats::list,
            op("List the caller's chats")
                .user()
                .describe(
                    "The latest message first, with the caller's unread counts. Archived chats are left out unless \
                     `archived=true` (then only they are listed).",
                )
                .query::<ChatListQuery>()
                .reply_example::<ChatList>(
                    200,
                    "A page of chats.",
                    envelope(json!({
                        "chats": [example_chat()],
                        "pagination": {"page": 1, "limit": 20, "total": 1, "pages": 1},
                    })),
                )
                .errors(&[400, 401, 403, 503]),
        )
    })
    .at(&["/purchase-request"], |r| {
        r.post(
            chats::purchase_request,
            op("Open the chat of a purchase request")
                .user()
                .describe(
                    "The chat of the caller (the buyer) and the seller bound to the purchase request (a context chat \
                     of context type `purchase_request`). Idempotent: `201` the first time, `200` with the same chat \
                     after, also when several creates race. `403` for a caller who is not a participant of the \
                     existing chat, `404` for an unknown seller.",
                )
                .json_example::<NewPurchaseRequestChat>(json!({"purchaseRequestId": "pr-1", "sellerId": "seller-7"}))
                .reply::<OneChat>(201, "The chat, created.")
                .reply::<OneChat>(200, "The purchase request's existing chat.")
                .errors(&[400, 401, 403, 404, 413, 503]),
        )
    })
    .at(&["/context"], |r| {
        r.post(
            chats::context,
            op("Open the chat of a context")
                .user()
                .describe(
                    "The generic form of the purchase-request chat: one chat per `(contextType, contextId)` of the \
                     tenant, `201` the first time and `200` with the same chat after. `403` for a caller who is not a \
                     participant of the existing chat, `404` for an unknown participant.",
                )
                .json_example::<NewContextChat>(json!({
                    "contextType": "order", "contextId": "o-9", "participantIds": ["seller-7"], "title": "Order 9",
                }))
                .reply::<OneChat>(201, "The chat, created.")
                .reply::<OneChat>(200, "The context's existing chat.")
                .errors(&[400, 401, 403, 404, 413, 503]),
        )
    })
    .at(&["/support"], |r| {
        r.post(
            chats::support,
            op("Open a support chat")
                .user()
                .describe(
                    "A new chat of the caller and the support pool (directory users with role `support` or `admin`). \
                     The subject is its title; the initial message is sent as the caller's first message, to every \
                     dialect's sockets. The body may be empty.",
                )
                .json_example::<NewSupportChat>(json!({
                    "subject": "Refund for order 9",
                    "initialMessage": "I was charged twice for order 9.",
                }))
                .optional_body()
                .reply::<OneChat>(201, "The chat.")
                .errors(&[400, 401, 403, 413, 503]),
        )
    })
    .at(&["/search"], |r| {
        r.get(
            crate::search::search,
            op("Search messages")
                .user()
                .describe(
                    "Full-text search over the caller's chats (the canonical `GET /search`: the same rooms and rules). \
                     Of a chat the caller left only what they could read while in it is found; deleted messages never \
                     are; an edited message is found by its new words. Best match first, then newest.",
                )
                .query::<crate::search::ChatSearchQuery>()
                .reply::<crate::search::ChatSearchResults>(200, "A page of results.")
                .errors(&[400, 401, 403, 503]),
        )
    })
    // Before the `/{id}/...` routes: `/blocks/x` is a block, never chat `blocks`.
    .at(&["/blocks"], |r| {
        r.get(
            crate::blocks::list,
            op("List the users the caller blocks")
                .user()
                .describe("The canonical `GET /blocks` in this shape: newest first (at most 1,000).")
                .reply::<crate::blocks::ChatBlocks>(200, "The caller's blocks.")
                .errors(&[400, 401, 403, 503]),
        )
    })
    .at(&["/blocks/{userId}"], |r| {
        r.put(
            crate::blocks::block,
            op("Block a user")
                .user()
                .describe(
                    "The canonical `PUT /blocks/{user_id}`: the blocked user cannot open a direct chat with the caller \
                     nor send into their existing one (`403 FORBIDDEN`), on every API. Idempotent; yourself is `400`.",
                )
                .path_id::<UserId>("userId", "The user to block.")
                .reply::<crate::blocks::ChatBlock>(200, "The block.")
                .errors(&[400, 401, 403, 503]),
        )
        .delete(
            crate::blocks::unblock,
            op("Unblock a user")
                .user()
                .describe("Idempotent: `removed` says whether there was a block.")
                .path_id::<UserId>("userId", "The user to unblock.")
                .reply::<crate::blocks::ChatUnblocked>(200, "Not blocked (any more).")
                .errors(&[400, 401, 403, 503]),
        )
    })
    .at(&["/stats"], |r| {
        r.get(
            chats::stats,
            op("The caller's chat statistics")
                .user()
                .reply::<ChatCounts>(200, "Counts over the caller's chats.")
                .errors(&[400, 401, 403, 503]),
        )
    })
    .at(&["/{id}/info"], |r| {
        r.get(
            chats::info,
            op("A chat and its participants")
                .user()
                .describe("The chat with `unreadCounts`: every participant's unread count.")
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .reply::<OneChat>(200, "The chat.")
                .errors(&[400, 401, 403, 404, 503]),
        )
    })
    .at(&["/{id}/archive"], |r| {
        r.patch(
            chats::archive,
            op("Archive or unarchive a chat for the caller")
                .user()
                .describe(
                    "Toggles the caller's archive flag (per user). An archived chat leaves the default list and comes \
                     back by itself with the next message.",
                )
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .reply::<Archived>(200, "The flag now, and the chat.")
                .errors(&[400, 401, 403, 404, 503]),
        )
    })
    .at(&["/{id}/participants"], |r| {
        r.post(
            participants::add,
            op("Add participants")
                .user()
                .describe(
                    "Group chats only (`400` for direct and support chats); for the chat's creator and admins (`403` \
                     otherwise). Every user must be a user of the tenant (`404 participant not found: <id>`). Each \
                     one added is the room's `member.added` event on every dialect's sockets.",
                )
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .json_example::<NewParticipants>(json!({"userId": "carol"}))
                .reply::<ParticipantsAdded>(201, "Who was added, and the chat.")
                .reply::<ParticipantsAdded>(200, "They all were participants already (`added: []`).")
                .errors(&[400, 401, 403, 404, 413, 503]),
        )
    })
    .at(&["/{id}/participants/{participantId}"], |r| {
        r.delete(
            participants::remove,
            op("Remove a participant")
                .user()
                .describe(
                    "Group chats only (`400` otherwise); the chat's creator and admins, or a participant removing \
                     themself (`403` otherwise). `404` when they are not a participant. `/ws` sockets of the removed \
                     member close with `4003`.",
                )
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .path_id::<chat_domain::ids::UserId>("participantId", "The user to remove.")
                .reply::<ParticipantRemoved>(200, "Who was removed, and the chat (`null` for the caller themself).")
                .errors(&[400, 401, 403, 404, 503]),
        )
    })
    .at(&["/{id}/messages"], |r| {
        r.get(
            messages::list,
            op("A chat's messages, newest first")
                .user()
                .describe(
                    "`403` for a caller who is not a participant, `404` for no such chat, `400` for a bad `before`.",
                )
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .query::<MessageListQuery>()
                .reply_example::<MessageList>(
                    200,
                    "A page of messages.",
                    envelope(json!({
                        "messages": [example_message()],
                        "pagination": {"page": 1, "limit": 50, "total": 1, "pages": 1},
                    })),
                )
                .errors(&[400, 401, 403, 404, 503]),
        )
        .post(
            messages::send,
            op("Send a message")
                .user()
                .describe(
                    "The message reaches the room's other members on every dialect's sockets and counts as unread \
                     for them. `type: system` needs the API key or the directory role `admin` (`403`); \
                     `replyToMessageId` must be a message of the same chat (`400`). With an `Idempotency-Key` header \
                     (or `clientMessageId`), a resend returns the first message with `200` and \
                     `Idempotent-Replayed: true`. `parentId` makes it a reply in that top-level message's thread \
                     (`400` for a parent that is not one of the chat's messages, is deleted or is itself a reply); \
                     `mentions` names participants (`400` for anyone else), `\"@channel\"` everyone (chat admins \
                     only, `403`).",
                )
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .param::<gateway_core::messages::IdempotencyKey>(
                    "Idempotency-Key",
                    "header",
                    "The client's id of this send, for retries (wins over `clientMessageId`).",
                )
                .json_example::<NewMessage>(json!({"content": "Is the blue one still available?"}))
                .reply_example::<OneMessage>(201, "The message.", envelope(json!({"message": example_message()})))
                .reply::<OneMessage>(200, "A resend: the first message.")
                .reply_header("Idempotent-Replayed", "`true`: this is the answer of an earlier send.")
                .errors(&[400, 401, 403, 404, 413, 503]),
        )
    })
    .at(&["/{id}/messages/read"], |r| {
        r.patch(
            messages::read,
            op("Mark the chat read")
                .user()
                .describe("The caller's read cursor moves to the newest message (other dialects see the `read` event).")
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .reply::<MarkedRead>(200, "How many messages became read.")
                .errors(&[400, 401, 403, 404, 503]),
        )
    })
    // Attachments (`crate::attachments`): before `/{id}/messages/{messageId}`, which
    // would take `file` for a message id.
    .at(&["/{id}/messages/file"], |r| {
        r.post(
            upload::upload,
            op("Send a file")
                .user()
                .describe(
                    "A message carrying one file. The caller must be a participant (`403`, `404`) before a byte of \
                     the body is read. The file is streamed to the object store under the tenant's \
                     `upload_max_bytes` (`413`), typed by its bytes and checked against `upload_allowed_types` \
                     (`415`); a form with any other field, or without the file, is `400` naming the field. A refused \
                     upload stores nothing. The message is sent as any other (a `seq`, every dialect's sockets and \
                     history); each attachment's `url` is a signed link valid for `GATEWAY_LINK_TTL_SECS`.",
                )
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .body::<upload::Form>("multipart/form-data")
                .body_example(json!({"content": "The receipt", "file": "(the file's bytes)"}))
                .reply_example::<OneMessage>(
                    201,
                    "The message, its file in `attachments`.",
                    envelope(json!({"message": {
                        "_id": "msg_0193a5c4a2b07e318c5d6f7a8b9c0d1e",
                        "chatId": "room_0193a5c2e4b87d10a9f3c2b1e0d4f6a7",
                        "sender": "alice",
                        "content": "The receipt",
                        "type": "text",
                        "replyToMessageId": null,
                        "metadata": {},
                        "attachments": [{
                            "url": crate::render::EXAMPLE_FILE_URL,
                            "filename": "receipt.pdf",
                            "mimeType": "application/pdf",
                            "size": 48213,
                        }],
                        "createdAt": "2026-12-04T18:02:11.408512Z",
                        "editedAt": null,
                        "deletedAt": null,
                        "seq": 8,
                        "reactions": [],
                    }})),
                )
                .errors(&[400, 401, 403, 404, 413, 415, 503]),
        )
    })
    .at(&["/{id}/files/{token}"], |r| {
        r.get(
            download::download,
            op("Download a file")
                .describe(
                    "An attachment's `url`. Checked in this order: the reader authenticates (a header as on every \
                     chat route, or `?token=<user token>` for an `<img src>`; `401` otherwise); the link's signature \
                     matches and it has not expired (`403`: fetch the message again for a fresh link); the reader is \
                     a participant of the link's chat (`404` otherwise, as for a chat one cannot see).",
                )
                .auth(Auth::UserOrQueryToken)
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .path_param("token", "The signed link token of the attachment's `url`.")
                .raw()
                .reply_types(
                    200,
                    "The file; its `Content-Type` is the type sniffed from its bytes at upload (one of the tenant's \
                     `upload_allowed_types`: the defaults listed here, `application/octet-stream` for bytes of no \
                     known type, or any other type the tenant allowed; text types with `; charset=utf-8`).",
                    &served_types(),
                )
                .reply_header(
                    "Content-Disposition",
                    "`inline` for images and plain text, else `attachment`; the file name as ASCII and as RFC 8187 \
                     UTF-8 (`filename*`).",
                )
                .reply_header("X-Content-Type-Options", "`nosniff`.")
                .reply_header("Content-Security-Policy", "`default-src 'none'; sandbox`.")
                .reply_header("Cache-Control", "`private, max-age=300`.")
                .errors(&[400, 401, 403, 404, 503]),
        )
    })
    .at(&["/{id}/messages/{messageId}/thread"], |r| {
        r.get(
            messages::thread,
            op("A message's thread")
                .user()
                .describe(
                    "The top-level message (with `thread: {replyCount, lastReplyAt, participants}`) and its replies \
                     after `afterSeq`, oldest first. `400` for a message that is itself a reply, `404` for no such \
                     message in this chat.",
                )
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .path_id::<chat_domain::ids::MessageId>("messageId", MESSAGE_ID)
                .query::<ThreadQuery>()
                .reply::<ThreadPageJson>(200, "The parent and a page of replies.")
                .errors(&[400, 401, 403, 404, 503]),
        )
    })
    .at(&["/{id}/messages/{messageId}"], |r| {
        r.put(
            messages::edit,
            op("Edit a message")
                .user()
                .describe(
                    "The author only, within the tenant's edit window (`edit_window_secs`, 15 minutes by default): \
                     `403` for anyone else or after the window, `409` for a deleted message, `404` for a message not \
                     in this chat. Sockets get the edit.",
                )
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .path_id::<chat_domain::ids::MessageId>("messageId", MESSAGE_ID)
                .json_example::<EditBody>(json!({"content": "Is the blue one still available in M?"}))
                .reply::<OneMessage>(200, "The message, with `editedAt`.")
                .errors(&[400, 401, 403, 404, 409, 413, 503]),
        )
        .delete(
            messages::delete,
            op("Delete a message")
                .user()
                .describe(
                    "The author, a room admin (the chat's creator) or a directory `admin` (`403` otherwise). The \
                     content is cleared and `deletedAt` set; the message keeps its `_id` and `seq`. Deleting twice is \
                     not an error.",
                )
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .path_id::<chat_domain::ids::MessageId>("messageId", MESSAGE_ID)
                .reply::<OneMessage>(200, "The message, deleted.")
                .errors(&[400, 401, 403, 404, 503]),
        )
    })
    .at(&["/{id}/messages/{messageId}/reactions/{emoji}"], |r| {
        let rules = "`:emoji` is a Unicode emoji sequence, percent-encoded (`%F0%9F%91%8D` for 👍), or a custom name \
                     `:name:` of 1-32 of `a-z 0-9 _ + -`; at most 64 bytes (`400`, `field: \"emoji\"` otherwise). At \
                     most 50 different emoji per message and 20 reactions per user per message (`400`). Participants \
                     only (`403`); a message not in this chat is `404`, a deleted one `409`.";
        let change = envelope(json!({
            "messageId": "msg_0193a5c3015a7c4e8b2d9f0e1a3c5b7d",
            "emoji": "👍",
            "changed": true,
            "count": 2,
            "reactions": [{"emoji": "👍", "count": 2, "userIds": ["bob", "alice"], "me": true}],
        }));
        r.put(
            reactions::add,
            op("React to a message")
                .user()
                .describe(&format!(
                    "Adds the caller's reaction: `201` when added, `200` when it was already there (`changed: \
                     false`). Socket.IO members of `chat-<id>` get `reaction-added` with the new count. {rules}"
                ))
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .path_id::<chat_domain::ids::MessageId>("messageId", MESSAGE_ID)
                .path_id::<chat_domain::emoji::Emoji>("emoji", "The emoji, percent-encoded.")
                .reply_example::<ReactionChanged>(201, "Added; the message's reactions now.", change)
                .reply::<ReactionChanged>(200, "Already there.")
                .errors(&[400, 401, 403, 404, 409, 503]),
        )
        .delete(
            reactions::remove,
            op("Take a reaction back")
                .user()
                .describe(&format!(
                    "Idempotent (`changed: false` when there was none). Socket.IO members of `chat-<id>` get \
                     `reaction-removed` with the new count. {rules}"
                ))
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .path_id::<chat_domain::ids::MessageId>("messageId", MESSAGE_ID)
                .path_id::<chat_domain::emoji::Emoji>("emoji", "The emoji, percent-encoded.")
                .reply::<ReactionChanged>(200, "The message's reactions now.")
                .errors(&[400, 401, 403, 404, 409, 503]),
        )
        .get(
            reactions::reactors,
            op("List who reacted with an emoji")
                .user()
                .describe("In user id order; pass `nextCursor` as `cursor` for the next page (`null` on the last).")
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .path_id::<chat_domain::ids::MessageId>("messageId", MESSAGE_ID)
                .path_id::<chat_domain::emoji::Emoji>("emoji", "The emoji, percent-encoded.")
                .query::<ReactorsQuery>()
                .reply::<ReactorsJson>(200, "A page of the users who reacted.")
                .errors(&[400, 401, 403, 404, 503]),
        )
    })
    .at(&["/{id}/pins"], |r| {
        r.get(
            reactions::pins,
            op("List a chat's pinned messages")
                .user()
                .describe("Most recently pinned first (at most 100), each with `pinnedAt` and `pinnedBy`.")
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .reply::<PinsJson>(200, "The pinned messages.")
                .errors(&[400, 401, 403, 404, 503]),
        )
    })
    .at(&["/{id}/pins/{messageId}"], |r| {
        let rule = "The chat's admins (its creator), or either participant of a direct chat (`403` otherwise). A \
                    deleted message cannot be pinned (`409`); deleting a pinned message unpins it. At most 100 pins \
                    per chat (`400`). Socket.IO members of `chat-<id>` get `message-pinned` / `message-unpinned`.";
        r.put(
            reactions::pin,
            op("Pin a message")
                .user()
                .describe(&format!("Idempotent: `200` both times, the first pin kept. {rule}"))
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .path_id::<chat_domain::ids::MessageId>("messageId", MESSAGE_ID)
                .reply::<OneMessage>(200, "The message, with `pinnedAt` and `pinnedBy`.")
                .errors(&[400, 401, 403, 404, 409, 503]),
        )
        .delete(
            reactions::unpin,
            op("Unpin a message")
                .user()
                .describe(&format!("Idempotent: `200` when it was not pinned. {rule}"))
                .path_id::<chat_domain::ids::RoomId>("id", CHAT_ID)
                .path_id::<chat_domain::ids::MessageId>("messageId", MESSAGE_ID)
                .reply::<OneMessage>(200, "The message, not pinned.")
                .errors(&[400, 401, 403, 404, 503]),
        )
    });
}

/// The content types `GET /api/chat/{id}/files/{token}` is documented with: the default
/// `upload_allowed_types`, bytes of no known type, and `*/*` for any other type a
/// tenant allows.
fn served_types() -> Vec<&'static str> {
    let mut types = chat_domain::settings::DEFAULT_UPLOAD_ALLOWED_TYPES.to_vec();
    types.extend([gateway_core::attachments::sniff::BINARY, "*/*"]);
    types
}

#[cfg(test)]
mod tests {
    use gateway_core::attachments::{Attachments, AttachmentsConfig};
    use serde_json::{Value, json};

    /// The chat dialect's routes, documented.
    fn document() -> anyhow::Result<Value> {
        let attachments = Attachments::open(&AttachmentsConfig::local(std::env::temp_dir()))?;
        let chat = crate::Chat::new(attachments, crate::SocketIoConfig::default());
        Ok(gateway_core::dialect::document(&chat))
    }

    /// Every example of an `/api/chat` operation (request bodies and replies, envelope
    /// included) is valid against the schema it illustrates, `$ref`s resolved in the
    /// document.
    #[test]
    fn examples_match_their_schemas() -> anyhow::Result<()> {
        let doc = document()?;
        let mut checked = 0;
        let chat_paths = doc["paths"].as_object().into_iter().flatten().filter(|(p, _)| p.starts_with("/api/chat"));
        for (path, item) in chat_paths {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let mut media: Vec<(String, &Value)> = Vec::new();
                for (kind, m) in operation["requestBody"]["content"].as_object().into_iter().flatten() {
                    media.push((format!("request {kind}"), m));
                }
                for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                    for (kind, m) in response["content"].as_object().into_iter().flatten() {
                        media.push((format!("{status} {kind}"), m));
                    }
                }
                for (place, m) in media.into_iter().filter(|(_, m)| m.get("example").is_some()) {
                    let schema =
                        json!({"$ref": "#/x-schema", "x-schema": m["schema"], "components": doc["components"]});
                    let validator = jsonschema::draft202012::new(&schema).map_err(|e| anyhow::anyhow!("{e}"))?;
                    let errors: Vec<String> =
                        validator.iter_errors(&m["example"]).map(|e| format!("{e} at {}", e.instance_path())).collect();
                    assert!(errors.is_empty(), "{method} {path}, {place}: {errors:?}");
                    checked += 1;
                }
            }
        }
        // Create, list, send, list messages, upload: request and reply examples.
        assert!(checked >= 9, "only {checked} examples were found");
        Ok(())
    }

    /// Every operation says what it answers on success (a body, except for nothing),
    /// who may call it, and what each path parameter is.
    #[test]
    fn every_operation_is_described() -> anyhow::Result<()> {
        let doc = document()?;
        let chat_paths = doc["paths"].as_object().into_iter().flatten().filter(|(p, _)| p.starts_with("/api/chat"));
        let mut operations = 0;
        for (path, item) in chat_paths {
            for (method, operation) in item.as_object().into_iter().flatten() {
                operations += 1;
                let responses = operation["responses"].as_object().cloned().unwrap_or_default();
                let success: Vec<_> = responses.iter().filter(|(s, _)| s.starts_with('2')).collect();
                assert!(!success.is_empty(), "{method} {path} has no success reply");
                for (status, reply) in success {
                    assert!(reply["content"].is_object(), "{method} {path} {status} has no body");
                }
                assert!(operation["security"].is_array(), "{method} {path} says nothing of who calls it");
                for param in operation["parameters"].as_array().into_iter().flatten() {
                    let described = param["description"].as_str().is_some_and(|d| !d.is_empty());
                    assert!(described, "{method} {path}: {} is not described", param["name"]);
                }
            }
        }
        // 28 operations (with `/api/chat/search`, the three of blocks, reactions, pins and a
        // message's thread), the root twice (`""` and `/`).
        assert_eq!(operations, 30);
        Ok(())
    }

    /// A wrong example is caught: `examples_match_their_schemas` can fail.
    #[test]
    fn a_wrong_example_fails_the_check() -> anyhow::Result<()> {
        let doc = document()?;
        let schema = json!({"$ref": "#/components/schemas/Chat", "components": doc["components"]});
        let validator = jsonschema::draft202012::new(&schema).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(!validator.is_valid(&json!({"_id": "room_1", "type": "channel"})));
        Ok(())
    }
}
