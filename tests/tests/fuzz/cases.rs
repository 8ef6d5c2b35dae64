//! The generated cases: plausible requests with hostile parts. Values mix what the API
//! expects (so cases get past the first check and reach the deeper ones) with what it
//! must refuse: wrong types, NUL and control characters, huge numbers and strings, JSON
//! nested far too deep, bytes that are not UTF-8.

use chat_domain::proto::Service;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Every REST route of the gateway (method, path template).
pub const ROUTES: [(&str, &str); 92] = [
    ("POST", "/rooms/{room_id}/messages"),
    ("GET", "/rooms/{room_id}/messages"),
    ("PATCH", "/rooms/{room_id}/messages/{message_id}"),
    ("DELETE", "/rooms/{room_id}/messages/{message_id}"),
    ("POST", "/rooms/{room_id}/read"),
    ("POST", "/acks"),
    ("POST", "/rooms"),
    ("GET", "/rooms"),
    ("GET", "/rooms/{room_id}"),
    ("GET", "/rooms/{room_id}/members"),
    ("POST", "/rooms/{room_id}/members"),
    ("DELETE", "/rooms/{room_id}/members/{user_id}"),
    ("POST", "/api/v1/rooms/{room_id}/messages"),
    ("GET", "/api/v1/rooms/{room_id}/messages"),
    ("GET", "/api/v1/rooms/{room_id}/online"),
    ("GET", "/api/v1/users/online"),
    ("GET", "/api/v1/rooms/{room_id}/participants"),
    ("GET", "/health"),
    ("POST", "/tokens"),
    ("POST", "/notify"),
    ("POST", "/subscriptions"),
    ("GET", "/subscriptions"),
    ("DELETE", "/subscriptions/{topic}"),
    ("GET", "/notifications"),
    ("GET", "/admin/dead-letters"),
    ("POST", "/admin/dead-letters/{id}/retry"),
    ("POST", "/admin/tenants"),
    ("GET", "/admin/tenants"),
    ("GET", "/admin/tenants/{tenant_id}"),
    ("PATCH", "/admin/tenants/{tenant_id}"),
    ("PUT", "/v1/rooms/{room_id}/messages"),
    ("PUT", "/users/{user_id}"),
    ("GET", "/users/{user_id}"),
    ("GET", "/search"),
    ("GET", "/sync"),
    ("PUT", "/blocks/{user_id}"),
    ("DELETE", "/blocks/{user_id}"),
    ("GET", "/blocks"),
    ("PUT", "/rooms/{room_id}/messages/{message_id}/reactions/{emoji}"),
    ("DELETE", "/rooms/{room_id}/messages/{message_id}/reactions/{emoji}"),
    ("GET", "/rooms/{room_id}/messages/{message_id}/reactions/{emoji}"),
    ("PUT", "/rooms/{room_id}/pins/{message_id}"),
    ("DELETE", "/rooms/{room_id}/pins/{message_id}"),
    ("GET", "/rooms/{room_id}/pins"),
    ("GET", "/rooms/{room_id}/messages/{message_id}/thread"),
    ("GET", "/threads"),
    // Room moderation.
    ("POST", "/rooms/{room_id}/bans"),
    ("GET", "/rooms/{room_id}/bans"),
    ("DELETE", "/rooms/{room_id}/bans/{user_id}"),
    ("POST", "/rooms/{room_id}/mutes"),
    ("GET", "/rooms/{room_id}/mutes"),
    ("DELETE", "/rooms/{room_id}/mutes/{user_id}"),
    ("PATCH", "/rooms/{room_id}/members/{user_id}"),
    ("GET", "/rooms/{room_id}/settings"),
    ("PATCH", "/rooms/{room_id}/settings"),
    ("POST", "/rooms/{room_id}/flags"),
    ("GET", "/rooms/{room_id}/flags"),
    ("POST", "/rooms/{room_id}/flags/{flag_id}/resolve"),
    ("GET", "/rooms/{room_id}/moderation-log"),
    ("GET", "/admin/tenants/{tenant_id}/flags"),
    ("GET", "/admin/tenants/{tenant_id}/moderation-log"),
    // The rest-chat.md dialect (its own error shape).
    ("POST", "/api/chat"),
    ("GET", "/api/chat"),
    ("POST", "/api/chat/purchase-request"),
    ("POST", "/api/chat/context"),
    ("POST", "/api/chat/support"),
    ("GET", "/api/chat/stats"),
    ("GET", "/api/chat/search"),
    ("GET", "/api/chat/blocks"),
    ("PUT", "/api/chat/blocks/{userId}"),
    ("DELETE", "/api/chat/blocks/{userId}"),
    ("GET", "/api/chat/{room_id}/info"),
    ("PATCH", "/api/chat/{room_id}/archive"),
    ("POST", "/api/chat/{room_id}/participants"),
    ("DELETE", "/api/chat/{room_id}/participants/{user_id}"),
    ("GET", "/api/chat/{room_id}/messages"),
    ("POST", "/api/chat/{room_id}/messages"),
    ("PATCH", "/api/chat/{room_id}/messages/read"),
    ("PUT", "/api/chat/{room_id}/messages/{message_id}"),
    ("DELETE", "/api/chat/{room_id}/messages/{message_id}"),
    ("POST", "/api/chat/{room_id}/messages/file"),
    ("GET", "/api/chat/{room_id}/files/{message_id}"),
    ("PUT", "/api/chat/{room_id}/messages/{message_id}/reactions/{emoji}"),
    ("DELETE", "/api/chat/{room_id}/messages/{message_id}/reactions/{emoji}"),
    ("GET", "/api/chat/{room_id}/messages/{message_id}/reactions/{emoji}"),
    ("PUT", "/api/chat/{room_id}/pins/{message_id}"),
    ("DELETE", "/api/chat/{room_id}/pins/{message_id}"),
    ("GET", "/api/chat/{room_id}/pins"),
    ("GET", "/api/chat/{room_id}/messages/{message_id}/thread"),
    // WebSocket paths, asked as plain HTTP.
    ("GET", "/ws/{room_id}"),
    ("GET", "/conversations/{room_id}/"),
    ("GET", "/static/{file}"),
];

/// Every command on the bus, by the service that answers it.
pub const VERBS: [(Service, &str); 17] = [
    (Service::Presence, "connect"),
    (Service::Presence, "connect_many"),
    (Service::Presence, "online"),
    (Service::Presence, "tenant_online"),
    (Service::Presence, "typing"),
    (Service::Presence, "online_history"),
    (Service::Presence, "health"),
    (Service::Notification, "notify"),
    (Service::Notification, "subscribe"),
    (Service::Notification, "unsubscribe"),
    (Service::Notification, "list_subscriptions"),
    (Service::Notification, "list_inbox"),
    (Service::Notification, "take_inbox"),
    (Service::Notification, "list_dead_letters"),
    (Service::Notification, "retry_dead_letter"),
    (Service::Notification, "health"),
    (Service::MessageStore, "health"),
];

/// Every message-store command.
const STORE_VERBS: [&str; 64] = [
    "authenticate",
    "get_token_secret",
    "resolve_issuer",
    "get_webhook",
    "audience",
    "authenticate_admin",
    "create_tenant",
    "list_tenants",
    "get_tenant",
    "update_tenant",
    "rotate_key",
    "create_room",
    "get_room",
    "list_members",
    "add_member",
    "remove_member",
    "send_message",
    "send_messages",
    "edit_message",
    "delete_message",
    "list_rooms",
    "move_cursor",
    "list_messages",
    "room_messages",
    "room_audiences",
    "message_feed",
    "read_messages",
    "mark_delivered",
    "older_messages",
    "put_user",
    "get_user",
    "create_chat",
    "get_chat",
    "list_chats",
    "chat_stats",
    "toggle_archive",
    "chat_messages",
    "read_all",
    "search_messages",
    "sync",
    "block_user",
    "unblock_user",
    "list_blocks",
    "add_reaction",
    "remove_reaction",
    "list_reactors",
    "pin_message",
    "unpin_message",
    "list_pins",
    "get_thread",
    "list_threads",
    "restrict",
    "unrestrict",
    "list_restrictions",
    "set_member_role",
    "get_room_settings",
    "update_room_settings",
    "check_speak",
    "flag_message",
    "list_flags",
    "resolve_flag",
    "tenant_flags",
    "room_moderation_log",
    "tenant_moderation_log",
];

/// Field names the API and the bus commands use.
const FIELDS: [&str; 59] = [
    "type",
    "members",
    "name",
    "content",
    "meta",
    "client_msg_id",
    "sender_name",
    "sender_id",
    "message_type",
    "user_id",
    "role",
    "seq",
    "room_id",
    "topic",
    "payload",
    "targets",
    "edit_reason",
    "ttl_secs",
    "webhook_url",
    "webhook_secret",
    "retry",
    "rate_limit_per_sec",
    "tenant_id",
    "local_id",
    "is_typing",
    "after_seq",
    "before_seq",
    "limit",
    "offset",
    "message_ids",
    "before_id",
    "conversation_id",
    "kind",
    "message_id",
    "api_key",
    "sends",
    "deliveries",
    "rooms",
    "until_seq",
    "window_ms",
    "reply_to",
    "attachments",
    "within_edit_window",
    "participants",
    "title",
    "metadata",
    "avatar_url",
    "roles",
    "chat_type",
    "archived",
    "page",
    "before",
    "participantIds",
    "replyToMessageId",
    "q",
    "cursor",
    "query",
    "chatId",
    "hide_in_groups",
];

/// `%XX` for every byte but the unreserved ones.
pub fn percent(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Strings a client might send, friendly or not.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z0-9_]{1,12}",
        2 => any::<String>(),
        1 => Just(String::new()),
        1 => prop::sample::select(vec![
            "\u{0}", "a\u{0}b", "\u{1}\u{7f}", " ", "a.b", "*", ">", "a b", "room_", "msg_", "dlv_", "%00", "é€😀",
            "\u{202e}", "\u{feff}", "9223372036854775808", "-1", "null", "{}", "alice", "bob",
        ])
        .prop_map(str::to_owned),
        1 => (1usize..20_000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

/// `levels` containers around a leaf.
pub fn deep(levels: usize, arrays: bool) -> Value {
    (0..levels).fold(json!(1), |v, _| if arrays { json!([v]) } else { json!({ "a": v }) })
}

/// JSON values: leaves of every kind, containers, and deep nesting.
pub fn value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![0i64, 1, -1, 50, 100, 101, i64::MAX, i64::MIN]).prop_map(|n| json!(n)),
        text().prop_map(Value::String),
    ];
    let tree = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        8 => tree,
        1 => (0usize..140, any::<bool>()).prop_map(|(n, arrays)| deep(n, arrays)),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![3 => prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned), 1 => text()].boxed()
}

/// A JSON object of known and unknown fields with any values.
pub fn object() -> BoxedStrategy<Value> {
    btree_map(key(), value(), 0..6).prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())).boxed()
}

/// A request body.
#[derive(Debug, Clone)]
pub enum BodyCase {
    None,
    Json(Value),
    Raw(Vec<u8>),
    /// Nested this deep around a `content` field.
    Deep(usize),
}

impl BodyCase {
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            BodyCase::None => None,
            BodyCase::Json(v) => Some(v.to_string().into_bytes()),
            BodyCase::Raw(b) => Some(b.clone()),
            BodyCase::Deep(n) => Some(json!({"content": "deep", "meta": deep(*n, false)}).to_string().into_bytes()),
        }
    }
}

fn body() -> BoxedStrategy<BodyCase> {
    prop_oneof![
        1 => Just(BodyCase::None),
        6 => object().prop_map(BodyCase::Json),
        1 => value().prop_map(BodyCase::Json),
        1 => vec(any::<u8>(), 0..200).prop_map(BodyCase::Raw),
        1 => (20usize..140).prop_map(BodyCase::Deep),
    ]
    .boxed()
}

/// A path segment: the real id of the target, or any text.
#[derive(Debug, Clone)]
pub enum Seg {
    Real,
    Text(String),
}

fn seg() -> BoxedStrategy<Seg> {
    prop_oneof![2 => Just(Seg::Real), 1 => text().prop_map(Seg::Text)].boxed()
}

/// A header value as bytes a client can put on the wire (visible ASCII, tab, and
/// bytes from 0x80).
fn header_value() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => "[a-zA-Z0-9_.@+=~-]{0,20}".prop_map(String::into_bytes),
        1 => vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..40),
        1 => Just(b"alice".to_vec()),
    ]
    .boxed()
}

/// A REST request.
#[derive(Debug, Clone)]
pub struct RestCase {
    pub route: usize,
    pub segs: Vec<Seg>,
    pub query: String,
    /// 0 tenant key, 1 admin key, 2 user token, 3 `key_text`, else none.
    pub key: u8,
    pub key_text: String,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    pub body: BodyCase,
}

fn query() -> BoxedStrategy<String> {
    let names = prop_oneof![
        3 => prop::sample::select(vec!["limit", "offset", "after_seq", "before_seq", "tenant_id", "token", "user_id", "q", "cursor", "room_id", "sender_id", "before", "after", "chatId", "senderId", "since", "limit_per_room"])
            .prop_map(str::to_owned),
        1 => text(),
    ];
    let values = prop_oneof![
        2 => prop::sample::select(vec!["0", "1", "50", "100", "101", "-1", "1e3", "9223372036854775807", "99999999999999999999", "\"two words\"", "wor*", "a*", "*", "c2UxOjIw", "2025-12-13T12:00:00Z"])
            .prop_map(str::to_owned),
        1 => text(),
    ];
    prop_oneof![
        3 => vec((names, values), 0..4).prop_map(|pairs| {
            pairs.iter().map(|(k, v)| format!("{}={}", percent(k.as_bytes()), percent(v.as_bytes()))).collect::<Vec<_>>().join("&")
        }),
        1 => "[=&%a-z0-9;+]{0,30}",
    ]
    .boxed()
}

pub fn rest() -> BoxedStrategy<RestCase> {
    let headers = vec(
        (
            prop::sample::select(vec!["X-User-Id", "Idempotency-Key", "Content-Type", "X-User-Id", "traceparent"]),
            header_value(),
        ),
        0..3,
    );
    // An index into the fuzz target's routes (`ROUTES` and the document's), modulo their count.
    (0..4096usize, vec(seg(), 3), query(), 0u8..6, text(), headers, body())
        .prop_map(|(route, segs, query, key, key_text, mut headers, body)| {
            // Usually a valid user, so cases reach past the first check.
            if !headers.iter().any(|(n, _)| *n == "X-User-Id") && key % 2 == 0 {
                headers.push(("X-User-Id", b"alice".to_vec()));
            }
            RestCase { route, segs, query, key, key_text, headers, body }
        })
        .boxed()
}

/// What a WebSocket case sends.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
}

/// A frame for a dialect's live socket.
#[derive(Debug, Clone)]
pub enum WsCase {
    /// A frame shaped like the dialect's: a known or unknown type/action, fields with
    /// any values.
    Shaped {
        kind: String,
        fields: Value,
    },
    /// Any JSON.
    Json(Value),
    /// Any text.
    Text(String),
    Deep(usize),
    /// Over the frame limit.
    Oversized(usize),
    Binary(Vec<u8>),
}

const KINDS: [&str; 14] = [
    "ping",
    "typing",
    "get_online_users",
    "send_message",
    "fetch_messages",
    "ack",
    "delivered",
    "read",
    "heartbeat",
    "heartbeat_ack",
    "pong",
    "message",
    "",
    "SEND_MESSAGE",
];

impl WsCase {
    pub fn frame(&self, dialect: usize) -> Outgoing {
        Outgoing::Text(match self {
            WsCase::Shaped { kind, fields } if dialect == 0 => json!({"type": kind, "data": fields}).to_string(),
            WsCase::Shaped { kind, fields } => {
                let mut frame = fields.as_object().cloned().unwrap_or_default();
                frame.insert("action".to_owned(), json!(kind));
                Value::Object(frame).to_string()
            }
            WsCase::Json(v) => v.to_string(),
            WsCase::Text(t) => t.clone(),
            WsCase::Deep(n) => {
                json!({"type": "send_message", "action": "send_message", "data": deep(*n, true)}).to_string()
            }
            WsCase::Oversized(n) => format!(r#"{{"type":"ping","action":"heartbeat","pad":"{}"}}"#, "y".repeat(*n)),
            WsCase::Binary(b) => return Outgoing::Binary(b.clone()),
        })
    }
}

pub fn ws() -> BoxedStrategy<WsCase> {
    let kind = prop_oneof![4 => prop::sample::select(KINDS.to_vec()).prop_map(str::to_owned), 1 => text()];
    prop_oneof![
        8 => (kind, object()).prop_map(|(kind, fields)| WsCase::Shaped { kind, fields }),
        1 => value().prop_map(WsCase::Json),
        1 => text().prop_map(WsCase::Text),
        1 => (20usize..140).prop_map(WsCase::Deep),
        1 => (64 * 1024usize..200 * 1024).prop_map(WsCase::Oversized),
        1 => vec(any::<u8>(), 0..64).prop_map(WsCase::Binary),
    ]
    .boxed()
}

/// One frame as written: FIN, RSV and opcode in `first`.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub first: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// A few frames on a fresh socket of a dialect.
#[derive(Debug, Clone)]
pub struct FrameCase {
    pub dialect: usize,
    pub frames: Vec<RawFrame>,
}

fn raw_frame() -> BoxedStrategy<RawFrame> {
    let opcode = prop_oneof![
        6 => prop::sample::select(vec![0x0u8, 0x1, 0x2, 0x8, 0x9, 0xA]),
        1 => 0u8..16,
    ];
    let rsv = prop_oneof![8 => Just(0u8), 1 => (1u8..8).prop_map(|r| r << 4)];
    let payload = prop_oneof![
        3 => ws().prop_map(|c| match c.frame(0) {
            Outgoing::Text(t) => t.into_bytes(),
            Outgoing::Binary(b) => b,
        }),
        1 => vec(any::<u8>(), 0..200),
        1 => Just(b"{\"type\":\"ping\",\"data\":{}}".to_vec()),
    ];
    (any::<bool>(), rsv, opcode, prop::bool::weighted(0.95), payload)
        .prop_map(|(fin, rsv, opcode, masked, payload)| RawFrame {
            first: (if fin { 0x80 } else { 0 }) | rsv | opcode,
            masked,
            payload,
        })
        .boxed()
}

pub fn frames() -> BoxedStrategy<FrameCase> {
    (0usize..2, vec(raw_frame(), 1..5)).prop_map(|(dialect, frames)| FrameCase { dialect, frames }).boxed()
}

/// A message-store command's payload.
#[derive(Debug, Clone)]
pub struct BusCase {
    pub verb: usize,
    pub fields: Vec<(String, BusValue)>,
    /// Bytes instead of JSON.
    pub raw: Option<Vec<u8>>,
}

/// A field of a command: something plausible for the target, or any value.
#[derive(Debug, Clone)]
pub enum BusValue {
    Actor(String),
    Tenant,
    Room,
    Any(Value),
}

impl BusCase {
    pub fn payload(&self, tenant: &str, room: &str) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut m = Map::new();
        for (k, v) in &self.fields {
            let v = match v {
                BusValue::Actor(user) => json!({"tenant_id": tenant, "user_id": user}),
                BusValue::Tenant => json!(tenant),
                BusValue::Room => json!(room),
                BusValue::Any(v) => v.clone(),
            };
            m.insert(k.clone(), v);
        }
        // Most commands act for someone in a room of the tenant.
        m.entry("actor").or_insert_with(|| json!({"tenant_id": tenant, "user_id": "alice"}));
        m.entry("room_id").or_insert_with(|| json!(room));
        Value::Object(m).to_string().into_bytes()
    }
}

/// The service and verb of command number `i` (message-store's first).
pub fn verb(i: usize) -> (Service, &'static str) {
    let i = i % (STORE_VERBS.len() + VERBS.len());
    match STORE_VERBS.get(i) {
        Some(v) => (Service::MessageStore, v),
        None => VERBS[i - STORE_VERBS.len()],
    }
}

pub fn bus() -> BoxedStrategy<BusCase> {
    let field_value = prop_oneof![
        1 => prop_oneof![Just("alice".to_owned()), text()].prop_map(BusValue::Actor),
        1 => Just(BusValue::Tenant),
        1 => Just(BusValue::Room),
        5 => value().prop_map(BusValue::Any),
    ];
    let fields = vec((key(), field_value), 0..6);
    (0..STORE_VERBS.len() + VERBS.len(), fields, prop::option::weighted(0.05, vec(any::<u8>(), 0..100)))
        .prop_map(|(verb, fields, raw)| BusCase { verb, fields, raw })
        .boxed()
}

/// A raw HTTP request head: a request line and headers of any bytes but line breaks.
#[derive(Debug, Clone)]
pub struct HttpCase {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub version: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl HttpCase {
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.method);
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.push(b' ');
        out.extend_from_slice(&self.version);
        out.extend_from_slice(b"\r\nHost: x\r\n");
        for (n, v) in &self.headers {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out
    }
}

/// Bytes without CR or LF (a line break would end the head early and leave the server
/// waiting for the rest, as it should).
fn line_bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    vec(any::<u8>().prop_filter("no line breaks", |b| *b != b'\r' && *b != b'\n'), 0..max).boxed()
}

pub fn http() -> BoxedStrategy<HttpCase> {
    let method = prop_oneof![
        4 => prop::sample::select(vec!["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS", "get"])
            .prop_map(|m| m.as_bytes().to_vec()),
        1 => line_bytes(10),
    ];
    let target = prop_oneof![
        2 => (prop::sample::select(ROUTES.to_vec()), line_bytes(20)).prop_map(|((_, path), tail)| {
            let mut t = path.as_bytes().to_vec();
            t.extend_from_slice(&tail);
            t
        }),
        1 => line_bytes(40),
        1 => Just(b"*".to_vec()),
    ];
    let version = prop_oneof![
        4 => Just(b"HTTP/1.1".to_vec()),
        1 => prop::sample::select(vec!["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", "http/1.1", ""]).prop_map(|v| v.as_bytes().to_vec()),
    ];
    // Never a body length: the server would rightly wait for the body.
    let name = prop_oneof![
        3 => prop::sample::select(vec!["X-API-Key", "X-User-Id", "Upgrade", "Connection", "Expect", "Idempotency-Key"])
            .prop_map(|n| n.as_bytes().to_vec()),
        1 => line_bytes(12).prop_filter("not a body length", |n| {
            let n = String::from_utf8_lossy(n).to_ascii_lowercase();
            !n.contains("content-length") && !n.contains("transfer-encoding")
        }),
    ];
    (method, target, version, vec((name, line_bytes(30)), 0..4))
        .prop_map(|(method, target, version, headers)| HttpCase { method, target, version, headers })
        .boxed()
}
