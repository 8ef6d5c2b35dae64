//! Commands answered by message-store: tenants and keys, rooms, members, messages.
//!
//! Room commands carry the [`Actor`] the gateway authenticated; message-store checks
//! tenant and membership on every one, and treats another tenant's ids as unknown.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Command, Done, Service, ServiceCommand};
use crate::ids::{MessageId, RoomId, TenantId, UserId};
use crate::model::{
    Actor, Attachment, Member, MemberRole, Message, MessageContent, MessageKind, RetryPolicy, Room, RoomType, Tenant,
};
use crate::settings::{TenantSettings, TenantSettingsPatch};

macro_rules! store_command {
    ($cmd:ty, $verb:literal, $reply:ty) => {
        impl Command for $cmd {
            const VERB: &'static str = $verb;
            type Reply = $reply;
        }
        impl ServiceCommand for $cmd {
            const SERVICE: Service = Service::MessageStore;
        }
    };
}

/// Resolve a tenant API key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Authenticate {
    pub api_key: String,
}

/// Who a valid tenant key belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TenantAuth {
    pub tenant_id: TenantId,
    pub name: String,
    pub rate_limit_per_sec: u32,
    /// The tenant's settings, secrets included (only the gateway asks for this), so
    /// that every request reads them from the gateway's cache of this record.
    #[serde(default)]
    pub settings: TenantSettings,
}
store_command!(Authenticate, "authenticate", TenantAuth);

/// The secret that signs a tenant's user tokens.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetTokenSecret {
    pub tenant_id: TenantId,
}

/// A tenant and its token-signing secret (only the gateway asks for this).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenSecret {
    pub tenant: TenantAuth,
    /// Hex; rotated together with the tenant's API key.
    pub secret: String,
}
store_command!(GetTokenSecret, "get_token_secret", TokenSecret);

/// The tenant that registered a JWT issuer (the `iss` of a token without `tid`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ResolveIssuer {
    pub issuer: String,
}
store_command!(ResolveIssuer, "resolve_issuer", TenantAuth);

/// A tenant's webhook, with its secret (only the notification service asks for this).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetWebhook {
    pub tenant_id: TenantId,
}

/// Where and how to deliver a tenant's webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Webhook {
    pub url: Option<String>,
    pub secret: Option<String>,
    pub retry: RetryPolicy,
}
store_command!(GetWebhook, "get_webhook", Webhook);

/// Who should get something: the members of a room, or every user known to a tenant
/// (members of any of its rooms). For services, not on behalf of a user.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Audience {
    pub tenant_id: TenantId,
    /// A room's members; the whole tenant when absent.
    pub room_id: Option<RoomId>,
}
store_command!(Audience, "audience", Vec<UserId>);

/// Check an operator (admin) key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuthenticateAdmin {
    pub api_key: String,
}
store_command!(AuthenticateAdmin, "authenticate_admin", Done);

/// Create a tenant with a first API key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CreateTenant {
    pub name: String,
    /// Chosen by the operator; generated when absent.
    pub tenant_id: Option<TenantId>,
    pub rate_limit_per_sec: Option<u32>,
}

/// A new tenant and its API key. The key is shown this once; only its hash is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TenantCreated {
    pub tenant: Tenant,
    pub api_key: String,
}
store_command!(CreateTenant, "create_tenant", TenantCreated);

/// List tenants, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListTenants {
    pub limit: u32,
    pub offset: u32,
}
store_command!(ListTenants, "list_tenants", Vec<Tenant>);

/// One tenant.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetTenant {
    pub tenant_id: TenantId,
}
store_command!(GetTenant, "get_tenant", Tenant);

/// Change a tenant's settings; absent fields stay as they are.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UpdateTenant {
    pub tenant_id: TenantId,
    pub name: Option<String>,
    pub rate_limit_per_sec: Option<u32>,
    /// A new webhook URL; an empty string removes it.
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub retry: Option<RetryPolicy>,
    /// Settings keys to replace (validated again by message-store; a JWT issuer
    /// another tenant registered is `CONFLICT`).
    #[serde(default)]
    pub settings: Option<TenantSettingsPatch>,
}
store_command!(UpdateTenant, "update_tenant", Tenant);

/// Issue a new API key and revoke the tenant's previous ones.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RotateKey {
    pub tenant_id: TenantId,
}

/// The tenant's new key, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyRotated {
    pub tenant_id: TenantId,
    pub api_key: String,
}
store_command!(RotateKey, "rotate_key", KeyRotated);

/// Create a room; the actor becomes its admin and a member.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CreateRoom {
    pub actor: Actor,
    pub room_type: RoomType,
    /// Initial members besides the actor (the actor may be listed too).
    pub members: Vec<UserId>,
    pub name: Option<String>,
}
store_command!(CreateRoom, "create_room", Room);

/// A room the actor is a member of.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetRoom {
    pub actor: Actor,
    pub room_id: RoomId,
}
store_command!(GetRoom, "get_room", Room);

/// A page of a room's members, in join order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListMembers {
    pub actor: Actor,
    pub room_id: RoomId,
    pub limit: u32,
    pub offset: u32,
}
store_command!(ListMembers, "list_members", Vec<Member>);

/// Add a member (room admins only; not in DMs).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AddMember {
    pub actor: Actor,
    pub room_id: RoomId,
    pub user_id: UserId,
    pub role: MemberRole,
}

/// The member, and whether this call added them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemberAdded {
    pub member: Member,
    pub created: bool,
}
store_command!(AddMember, "add_member", MemberAdded);

/// Remove a member (room admins, or a member removing themself).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RemoveMember {
    pub actor: Actor,
    pub room_id: RoomId,
    pub user_id: UserId,
}
store_command!(RemoveMember, "remove_member", Done);

/// Store a message and give it the room's next `seq`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SendMessage {
    pub actor: Actor,
    pub room_id: RoomId,
    pub content: MessageContent,
    /// The sender's display name, shown with the message.
    pub sender_name: Option<String>,
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub meta: Option<serde_json::Value>,
    /// Idempotency id: a resend with the same id by the same sender in the same room
    /// returns the first message.
    pub client_msg_id: Option<String>,
    /// A user's text (the default) or a system notice; who may post a system notice
    /// is the gateway's decision (the API key, or a directory `admin`).
    #[serde(default, skip_serializing_if = "MessageKind::is_text")]
    pub kind: MessageKind,
    /// The message this one answers: it must be a message of the same room, else the
    /// send fails with `VALIDATION_ERROR` on `reply_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    /// Files already stored in the object store (at most
    /// [`crate::model::MAX_ATTACHMENTS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Reply in the thread of this top-level message of the same room. The send fails
    /// with `VALIDATION_ERROR` on `parent_id` when the parent is not a message of the
    /// room, is deleted, or is itself a thread reply (threads do not nest); each case
    /// has its own message ([`crate::proto::threads`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<MessageId>,
    /// Members of the room the message mentions (a non-member fails the send with
    /// `VALIDATION_ERROR` on `mentions`); `@channel` mentions everyone and needs the
    /// sender to be a room admin (`FORBIDDEN` otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<UserId>,
}

/// The stored message; `duplicate` when it was stored by an earlier call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageSent {
    pub message: Message,
    pub duplicate: bool,
}
store_command!(SendMessage, "send_message", MessageSent);

impl SendMessage {
    /// A plain text message from `actor` in `room_id`: no name, meta, idempotency id,
    /// reply, files, thread or mentions.
    pub fn text(actor: Actor, room_id: RoomId, content: MessageContent) -> Self {
        Self {
            actor,
            room_id,
            content,
            sender_name: None,
            meta: None,
            client_msg_id: None,
            kind: MessageKind::Text,
            reply_to: None,
            attachments: Vec::new(),
            parent_id: None,
            mentions: Vec::new(),
        }
    }
}

/// Store several messages in one request: what a gateway sends when sends arrive
/// faster than it gets answers (each is handled exactly as a `send_message` would
/// be; one failing does not affect the others).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SendMessages {
    pub sends: Vec<SendMessage>,
}

/// One send's outcome, in the order of the request.
// Most outcomes are `Sent`; boxing it would cost an allocation per send for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SendOutcome {
    Sent(MessageSent),
    Failed(crate::ApiError),
}
store_command!(SendMessages, "send_messages", Vec<SendOutcome>);

/// Replace a message's content (its sender only).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EditMessage {
    pub actor: Actor,
    pub room_id: RoomId,
    pub message_id: MessageId,
    pub content: MessageContent,
    /// Shown to others with the edit.
    pub edit_reason: Option<String>,
    /// Refuse (`FORBIDDEN`) an edit after the tenant's edit window (the tenant setting
    /// `edit_window_secs`, 900 by default) from the message's creation. The
    /// `rest-chat.md` dialect asks for it; the others have no window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub within_edit_window: bool,
}
store_command!(EditMessage, "edit_message", Message);

/// Soft-delete a message (its sender or a room admin): the row and its `seq` stay,
/// the content goes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeleteMessage {
    pub actor: Actor,
    pub room_id: RoomId,
    pub message_id: MessageId,
}
store_command!(DeleteMessage, "delete_message", DeletedMessage);

/// A deleted message (content cleared, `seq` kept), and the files it carried: the
/// caller removes those from the object store. None when the message had no files or
/// was deleted already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeletedMessage {
    #[serde(flatten)]
    pub message: Message,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_attachments: Vec<Attachment>,
}

/// The actor's rooms, most recently active first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListRooms {
    pub actor: Actor,
    pub limit: u32,
    pub offset: u32,
}

/// One of the actor's rooms with what a room list shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomSummary {
    #[serde(flatten)]
    pub room: Room,
    /// Messages after the actor's read cursor (`last_seq - read_seq`).
    pub unread_count: i64,
    /// Of those, the ones (not deleted, not the actor's own) that mention the actor or
    /// `@channel`.
    #[serde(default)]
    pub unread_mentions: i64,
    pub last_message: Option<Message>,
    /// The newest message's time, else the room's creation.
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub last_activity_at: chrono::DateTime<chrono::Utc>,
}
store_command!(ListRooms, "list_rooms", Vec<RoomSummary>);

/// Which cursor to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CursorKind {
    /// Messages up to `seq` reached the member's device.
    Delivered,
    /// The member has seen messages up to `seq` (implies delivered).
    Read,
}

/// Moves the actor's delivered or read cursor forward to `seq` (never back; a `seq`
/// past the newest message counts as the newest).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MoveCursor {
    pub actor: Actor,
    pub room_id: RoomId,
    pub kind: CursorKind,
    pub seq: i64,
}

/// The actor's cursors after the move; `moved` when either advanced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cursors {
    pub delivered_seq: i64,
    pub read_seq: i64,
    pub moved: bool,
}
store_command!(MoveCursor, "move_cursor", Cursors);

/// A page of history in `seq` order: after `after_seq` (from the start when absent),
/// or the newest ones before `before_seq` when only that is given.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListMessages {
    pub actor: Actor,
    pub room_id: RoomId,
    pub after_seq: Option<i64>,
    pub before_seq: Option<i64>,
    pub limit: u32,
    /// Leave thread replies out (only top-level messages); the default includes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub without_replies: bool,
}
store_command!(ListMessages, "list_messages", Vec<Message>);

/// A room named with its tenant: how services address rooms when they act for no user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct RoomRef {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
}

/// Largest page of [`RoomMessages`].
pub const MAX_ROOM_MESSAGES: u32 = 1_000;

/// A room's messages after `after_seq` (and up to `until_seq`, when given), in `seq`
/// order, at most `limit` (up to [`MAX_ROOM_MESSAGES`]). For services that act for no
/// user — a gateway filling a `seq` gap, notification reading what a member missed —
/// so there is no membership check; another tenant's room is `NOT_FOUND`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RoomMessages {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    pub after_seq: i64,
    pub until_seq: Option<i64>,
    pub limit: u32,
}
store_command!(RoomMessages, "room_messages", Vec<Message>);

/// The members of several rooms at once (services only).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RoomAudiences {
    pub rooms: Vec<RoomRef>,
}

/// One room's members, sorted. Rooms that do not exist are left out of the reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomAudience {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    pub members: Vec<UserId>,
}
store_command!(RoomAudiences, "room_audiences", Vec<RoomAudience>);

/// Reads the message log in commit order, summarized per room and time window: the
/// durable feed the offline-notification pass follows (instead of a second copy of
/// every message in a stream). Each stored message carries the id of the transaction
/// that stored it; a page holds only transactions that have ended, so no later commit
/// can add to what was already read.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MessageFeed {
    /// Whose log: the PostgreSQL cluster (see [`ListClusters`]); the home cluster
    /// (`main`) when absent. Each cluster's log has positions of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The `next` of the previous page; absent to start at the present (nothing older).
    pub after: Option<i64>,
    /// Most messages summarized in one page (whole transactions: a page may hold a
    /// batch's worth more).
    pub limit: u32,
    /// Length of the windows messages are grouped into, by `created_at`.
    pub window_ms: u64,
}

/// A page of the feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeedPage {
    /// Where the next page starts (pass it as `after`).
    pub next: i64,
    /// What the page's messages amount to, per room and window.
    pub windows: Vec<FeedWindow>,
    /// Whether more ended transactions are waiting (ask again at once).
    pub more: bool,
    /// The page's messages that mention someone (not deleted), whole, in log order:
    /// mentioned members who are offline are notified of each at once, outside the
    /// coalesced windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<FeedMention>,
}

/// A message of the feed that mentions someone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeedMention {
    pub tenant_id: TenantId,
    pub message: Message,
}

/// Messages of one room whose `created_at` falls in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeedWindow {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    /// Start of the window: `created_at` rounded down to a multiple of `window_ms`.
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub window_start: DateTime<Utc>,
    pub first_seq: i64,
    pub last_seq: i64,
    /// Messages of this page in the window (seqs of other pages may fall between).
    pub messages: u32,
    /// The one user who sent all of them, when one did (lets the offline pass skip a
    /// window whose only possible reader wrote it all).
    #[serde(default)]
    pub sole_sender: Option<UserId>,
}
store_command!(MessageFeed, "message_feed", FeedPage);

/// The PostgreSQL clusters tenants can live on (for operators, and for the services
/// that follow each cluster's log).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListClusters {}

/// One PostgreSQL cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterInfo {
    pub name: String,
    /// The home cluster: tenants, keys and settings live on it.
    pub home: bool,
    /// Tenants placed on it.
    pub tenants: u64,
    /// Whether reads that a standby may serve go to one (a read URL is configured).
    pub standby_reads: bool,
    /// Where new tenants go when their creator names no cluster.
    pub default_for_new_tenants: bool,
}
store_command!(ListClusters, "list_clusters", Vec<ClusterInfo>);

/// Create a tenant on a named PostgreSQL cluster (the operator's choice, where
/// `create_tenant` follows `TENANT_PLACEMENT`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CreateTenantOn {
    #[serde(flatten)]
    pub tenant: CreateTenant,
    /// A cluster of [`ListClusters`].
    pub cluster: String,
}
store_command!(CreateTenantOn, "create_tenant_on", TenantCreated);

/// Move a tenant's rooms, members, messages, cursors and users to another PostgreSQL
/// cluster. Nothing is lost: ids and `seq`s stay the same; while the copy runs the
/// tenant's commands answer `SERVICE_UNAVAILABLE` (retry), and a move that fails half
/// way leaves the tenant where it was (run it again).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MoveTenant {
    pub tenant_id: TenantId,
    /// A cluster of [`ListClusters`].
    pub to: String,
}

/// What a move copied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TenantMoved {
    pub tenant_id: TenantId,
    pub from: String,
    pub to: String,
    pub rooms: u64,
    pub members: u64,
    pub messages: u64,
    pub cursors: u64,
    pub users: u64,
    /// How long the tenant's commands were refused (flag set to flag cleared), ms.
    pub unavailable_ms: u64,
}
store_command!(MoveTenant, "move_tenant", TenantMoved);

/// Most message ids one [`ReadMessages`] may name.
pub const MAX_READ_IDS: usize = 500;

/// A read receipt that names messages rather than a `seq` (`ws-conversations.md`'s
/// `read {message_ids}`): moves the actor's read cursor to the newest of the named
/// messages of this room (never back). The room's `read` event carries the named ids
/// (other senders' messages), and their senders get `message.status` `read` — also
/// when the cursor had already passed them (the reader's own sends move it) — as do the
/// senders of the messages the cursor newly passed. Ids of other rooms are ignored;
/// when none is a message of this room, `NOT_FOUND`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReadMessages {
    pub actor: Actor,
    pub room_id: RoomId,
    /// 1 to [`MAX_READ_IDS`] ids.
    pub message_ids: Vec<MessageId>,
}
store_command!(ReadMessages, "read_messages", Cursors);

/// A room's messages in `(after_seq, seq]` were pushed to a socket of a member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Delivery {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    pub user_id: UserId,
    /// The last `seq` reported for this socket before (the room's newest when it
    /// connected, at first).
    pub after_seq: i64,
    pub seq: i64,
}

/// Records what a gateway pushed to sockets of dialects that have no ack frame,
/// batched per gateway (one command and one statement per batch, never one per
/// delivery). For services, not on behalf of a user: deliveries to non-members or
/// unknown rooms are skipped. Each member's delivered cursor moves forward to the
/// highest `seq` (a cursor that moved emits the room's `delivered` event), and the
/// senders of the pushed messages get `message.status` `delivered` — also for
/// messages the member's cursor had already passed (sending a message moves the
/// sender's cursors past everything before it, and those messages were never
/// reported delivered).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MarkDelivered {
    pub deliveries: Vec<Delivery>,
}

/// How many cursors moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveriesMarked {
    pub moved: u32,
}
store_command!(MarkDelivered, "mark_delivered", DeliveriesMarked);

/// A page of history going backwards from a message (`ws-conversations.md`'s
/// `fetch_messages {before_id, limit}`): the `limit` messages before `before_id`, or
/// the newest ones when it is absent, **newest first**. `NOT_FOUND` when `before_id`
/// is not a message of this room.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OlderMessages {
    pub actor: Actor,
    pub room_id: RoomId,
    pub before_id: Option<MessageId>,
    pub limit: u32,
}
store_command!(OlderMessages, "older_messages", Vec<Message>);

/// Erase a tenant (`user_id` absent) or one user of it (issue 25, finding 8). For a
/// tenant: every row of it on its cluster and in the directory (keys, settings,
/// issuers, rooms, members, cursors, users, messages). For a user: their directory
/// entry, memberships and cursors; the messages they sent are kept as tombstones (same
/// id and `seq`, so no room's history gets a gap) with the content, `meta`, attachments
/// and name removed, the sender shown as [`crate::ids::ERASED_USER`] and `deleted_at`
/// set. Every removed membership is announced as `member.removed`, which closes the
/// user's sockets in that room on every gateway.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EraseData {
    pub tenant_id: TenantId,
    pub user_id: Option<UserId>,
}

/// What [`EraseData`] removed, and what the caller must remove elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataErased {
    pub rooms: u64,
    pub members: u64,
    pub messages: u64,
    pub users: u64,
    /// Object-store keys of the attachments of the erased messages (for a tenant, every
    /// key under `<tenant>/` is the tenant's; these are the ones the store knew of).
    pub attachment_keys: Vec<String>,
}
store_command!(EraseData, "erase_data", DataErased);
