//! `docs/asyncapi-ws.json` describes the WebSocket dialects; this test keeps it true:
//! for each dialect, the client frames it names are exactly the ones the codec
//! accepts, and the server frames it names are exactly the ones the codec renders
//! (every reply and every room and user event rendered once, their types collected).

use std::collections::BTreeSet;

use chat_domain::ApiError;
use chat_domain::ids::{EventId, MessageId, RoomId, TenantId, UserId};
use chat_domain::model::{Member, MemberRole, Message};
use chat_domain::proto::events::{
    CursorChange, MemberRemoved, MessageDeleted, MessageStatus, MessageUpdated, PinEvent, PresenceChange,
    ReactionEvent, RoomEvent, RoomEventBody, ThreadUpdated, TypingChange, UserEvent, UserEventBody,
};
use chat_domain::proto::notify::InboxItem;
use chat_domain::proto::reactions::ReactionChange;
use chat_domain::proto::store::{Cursors, MessageSent};
use serde_json::{Value, json};

use gateway_core::session::codec::Codec;
use gateway_core::session::command::Reply;

fn doc() -> anyhow::Result<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../docs/asyncapi-ws.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(&path)?)?)
}

/// The `const` of `field` in the payloads of a channel's messages, for the messages of
/// one operation (`receive`: client frames, `send`: server frames).
fn named(doc: &Value, operation: &str, field: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in doc["operations"][operation]["messages"].as_array().into_iter().flatten() {
        let Some(reference) = m["$ref"].as_str() else { continue };
        let key = reference.rsplit('/').next().unwrap_or_default();
        let payload = &doc["components"]["messages"][key]["payload"];
        if let Some(name) = payload["properties"][field]["const"].as_str() {
            out.insert(name.to_owned());
        }
    }
    out
}

/// One of everything a codec renders.
struct Samples {
    message: Message,
    room: RoomId,
    replies: Vec<Reply>,
    room_events: Vec<RoomEvent>,
    user_events: Vec<UserEvent>,
}

fn samples() -> anyhow::Result<Samples> {
    let (tenant, room, user) = (TenantId::parse("t1")?, RoomId::parse("r1")?, UserId::parse("u1")?);
    let now = chat_domain::time::now();
    let message = Message {
        message_id: MessageId::parse("msg_1")?,
        room_id: room.clone(),
        sender_id: user.clone(),
        sender_name: None,
        seq: 1,
        content: "hi".into(),
        meta: None,
        client_msg_id: Some("l1".into()),
        created_at: now,
        edited_at: None,
        deleted_at: None,
        kind: chat_domain::model::MessageKind::Text,
        reply_to: None,
        attachments: Vec::new(),
        parent_id: None,
        thread: None,
        mentions: Vec::new(),
        reactions: Vec::new(),
        pinned_at: None,
        pinned_by: None,
    };
    let emoji = chat_domain::emoji::Emoji::parse("👍")?;
    let item =
        InboxItem { id: "n1".into(), kind: "notification".into(), body: json!({}), created_at: now, delivered: false };
    let replies = vec![
        Reply::Pong,
        Reply::Online { user_id: user.clone(), online: vec![user.clone()], total_participants: 1, total_online: None },
        Reply::Sent { sent: MessageSent { message: message.clone(), duplicate: true }, sender_name: None },
        Reply::SendFailed { error: ApiError::validation("content", "x"), local_id: Some("l1".into()) },
        Reply::History(vec![message.clone()]),
        Reply::Older(vec![message.clone()]),
        Reply::Cursor(Cursors { delivered_seq: 1, read_seq: 1, moved: true }),
        Reply::Error(ApiError::validation("frame", "x")),
        Reply::Notification(item.clone()),
        Reply::Reconnect { delay_ms: 1 },
        Reply::Reacted(ReactionChange {
            room_id: room.clone(),
            message_id: message.message_id.clone(),
            emoji: emoji.clone(),
            changed: true,
            count: 1,
            reactions: Vec::new(),
        }),
    ];
    let cursor = CursorChange { user_id: user.clone(), seq: 1, message_ids: vec![message.message_id.clone()] };
    let presence = PresenceChange { user_id: user.clone(), user_name: None };
    let reaction =
        ReactionEvent { message_id: message.message_id.clone(), seq: 1, emoji, user_id: user.clone(), count: 1 };
    let pin = PinEvent { message_id: message.message_id.clone(), seq: 1, by: user.clone(), at: now, message: None };
    let bodies = vec![
        RoomEventBody::MessageCreated(message.clone()),
        RoomEventBody::MemberAdded(Member { user_id: user.clone(), role: MemberRole::Member, joined_at: now }),
        RoomEventBody::MemberRemoved(MemberRemoved { user_id: user.clone(), removed_by: user.clone() }),
        RoomEventBody::PresenceJoined(presence.clone()),
        RoomEventBody::PresenceLeft(presence),
        RoomEventBody::Typing(TypingChange { user_id: user.clone(), user_name: None, is_typing: true }),
        RoomEventBody::MessageUpdated(MessageUpdated {
            message_id: message.message_id.clone(),
            seq: 1,
            content: "x".into(),
            edit_reason: None,
            edited_at: now,
            message: None,
        }),
        RoomEventBody::MessageDeleted(MessageDeleted {
            message_id: message.message_id.clone(),
            seq: 1,
            deleted_by: user.clone(),
            deleted_at: now,
            message: None,
        }),
        RoomEventBody::Delivered(cursor.clone()),
        RoomEventBody::Read(cursor),
        RoomEventBody::ReactionAdded(reaction.clone()),
        RoomEventBody::ReactionRemoved(reaction),
        RoomEventBody::MessagePinned(pin.clone()),
        RoomEventBody::MessageUnpinned(pin),
        RoomEventBody::ThreadUpdated(ThreadUpdated { message_id: message.message_id.clone(), seq: 1, thread: None }),
        RoomEventBody::Moderation(chat_domain::proto::events::ModerationChange {
            action: "mute".into(),
            actor_id: user.clone(),
            user_id: Some(user.clone()),
            reason: Some("flooding".into()),
            expires_at: Some(now),
            role: None,
            slow_mode_secs: None,
        }),
    ];
    let room_events = bodies.into_iter().map(|b| RoomEvent::new(&tenant, &room, now, b)).collect();
    let user_event = |body| UserEvent {
        event_id: EventId::generate(),
        tenant_id: tenant.clone(),
        user_id: user.clone(),
        occurred_at: now,
        body,
    };
    let user_events = vec![
        user_event(UserEventBody::MessageStatus(MessageStatus {
            room_id: room.clone(),
            message_ids: vec![message.message_id.clone()],
            up_to_seq: 1,
            status: "read".into(),
            by: user.clone(),
        })),
        user_event(UserEventBody::Notification(item)),
    ];
    Ok(Samples { message, room, replies, room_events, user_events })
}

/// Every frame type `codec` renders.
fn rendered(codec: &dyn Codec) -> anyhow::Result<BTreeSet<String>> {
    let Samples { message, room, replies, room_events, user_events } = samples()?;
    let mut frames = vec![codec.message(&message, None)];
    frames.extend(replies.iter().filter_map(|r| codec.reply(&room, r)));
    frames.extend(room_events.iter().filter_map(|e| codec.room_event(e)));
    frames.extend(user_events.iter().flat_map(|e| codec.user_event(e)));
    frames.extend(codec.heartbeat());
    frames
        .iter()
        .map(|f| {
            let v: Value = serde_json::from_str(f)?;
            v["type"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("a frame without a type: {f}"))
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn the_asyncapi_document_names_every_frame_of_ws_rooms() -> anyhow::Result<()> {
    let doc = doc()?;
    assert_eq!(named(&doc, "wsRoomsReceive", "type"), set(&gateway_ws_rooms::codec::TYPES));
    assert_eq!(
        named(&doc, "wsRoomsSend", "type"),
        rendered(gateway_ws_rooms::codec::WsRoomsCodec::leak(crate::attachments::Attachments::open(
            &crate::attachments::AttachmentsConfig::local(std::env::temp_dir()),
        )?))?
    );
    Ok(())
}

#[test]
fn the_asyncapi_document_names_every_frame_of_conversations() -> anyhow::Result<()> {
    let doc = doc()?;
    assert_eq!(named(&doc, "conversationsReceive", "action"), set(&gateway_conversations::codec::ACTIONS));
    assert_eq!(named(&doc, "conversationsSend", "type"), rendered(&gateway_conversations::codec::CODEC)?);
    Ok(())
}
