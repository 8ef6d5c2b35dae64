//! The two packet formats of socket.io v4, parsed without panicking on any input.
//!
//! - **Engine.IO v4** ([`EnginePacket`]): one type digit, then the data. Over HTTP
//!   long-polling several packets travel in one body separated by the record separator
//!   `\x1e`; a binary packet is `b` + base64 there ([`split_payload`]). Over WebSocket
//!   each frame is one packet (a binary frame is a binary message).
//! - **Socket.IO v5** ([`SocketPacket`]), inside an Engine.IO message (`4`): a type
//!   digit, for binary types the attachment count and `-`, the namespace (`/chat,`;
//!   absent means `/`), an ack id (digits), then JSON.

use bytes::Bytes;
use serde_json::Value;

/// The record separator between packets of a long-polling body.
pub const SEPARATOR: u8 = 0x1e;

/// Longest ack id accepted (socket.io's are counters; anything longer is hostile).
const MAX_ACK_DIGITS: usize = 15;

/// An Engine.IO packet from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum EnginePacket {
    /// `1`: the client closes the session.
    Close,
    /// `2`: a ping (with `probe` while testing a WebSocket before the upgrade).
    Ping(String),
    /// `3`: the answer to the server's ping.
    Pong(String),
    /// `4` + text: a Socket.IO packet.
    Message(String),
    /// A binary message (a Socket.IO binary attachment).
    Binary(Bytes),
    /// `5`: the WebSocket probe succeeded; switch to it.
    Upgrade,
    /// `6`: nothing (a polling request flushed during an upgrade).
    Noop,
}

/// Why a packet could not be read: the session is closed (socket.io does the same).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

fn malformed(why: impl Into<String>) -> Malformed {
    Malformed(why.into())
}

impl EnginePacket {
    /// A text packet (a WebSocket text frame, or one record of a polling body).
    pub fn parse_text(text: &str) -> Result<Self, Malformed> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or_else(|| malformed("an empty packet"))?;
        let data = chars.as_str();
        Ok(match kind {
            '1' => Self::Close,
            '2' => Self::Ping(data.to_owned()),
            '3' => Self::Pong(data.to_owned()),
            '4' => Self::Message(data.to_owned()),
            '5' => Self::Upgrade,
            '6' => Self::Noop,
            // `0` (open) is the server's; anything else is not Engine.IO.
            other => return Err(malformed(format!("unknown Engine.IO packet type {other:?}"))),
        })
    }

    /// One record of a long-polling body: text, or `b` + base64 for binary.
    pub fn parse_record(record: &[u8]) -> Result<Self, Malformed> {
        if let Some(encoded) = record.strip_prefix(b"b") {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| malformed(format!("a binary packet that is not base64: {e}")))?;
            return Ok(Self::Binary(bytes.into()));
        }
        let text = std::str::from_utf8(record).map_err(|_| malformed("a text packet that is not UTF-8"))?;
        Self::parse_text(text)
    }
}

/// The records of a long-polling body (`\x1e`-separated); an empty body has none.
pub fn split_payload(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|b| *b == SEPARATOR).filter(|r| !body.is_empty() || !r.is_empty())
}

/// A Socket.IO packet's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

/// A Socket.IO packet from a client.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketPacket {
    pub kind: SocketKind,
    /// `/` unless the packet names another.
    pub namespace: String,
    pub ack_id: Option<u64>,
    /// The JSON after the header (`None` when there is none).
    pub data: Option<Value>,
}

impl SocketPacket {
    /// Parses the text of an Engine.IO message. JSON nested deeper than the gateway's
    /// limit is refused before it is parsed.
    pub fn parse(text: &str) -> Result<Self, Malformed> {
        let bytes = text.as_bytes();
        let (&first, mut rest) = bytes.split_first().ok_or_else(|| malformed("an empty Socket.IO packet"))?;
        let kind = match first {
            b'0' => SocketKind::Connect,
            b'1' => SocketKind::Disconnect,
            b'2' => SocketKind::Event,
            b'3' => SocketKind::Ack,
            b'4' => SocketKind::ConnectError,
            b'5' => SocketKind::BinaryEvent,
            b'6' => SocketKind::BinaryAck,
            other => return Err(malformed(format!("unknown Socket.IO packet type {:?}", char::from(other)))),
        };
        if matches!(kind, SocketKind::BinaryEvent | SocketKind::BinaryAck) {
            // `<n>-`: how many binary attachments follow.
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || rest.get(digits) != Some(&b'-') {
                return Err(malformed("a binary packet without its attachment count"));
            }
            rest = &rest[digits + 1..];
        }
        let mut namespace = "/".to_owned();
        if rest.first() == Some(&b'/') {
            let end = rest.iter().position(|b| *b == b',').unwrap_or(rest.len());
            namespace = String::from_utf8_lossy(&rest[..end]).into_owned();
            rest = rest.get(end + 1..).unwrap_or_default();
        }
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let ack_id = if digits == 0 {
            None
        } else if digits > MAX_ACK_DIGITS {
            return Err(malformed("an ack id that is too long"));
        } else {
            let id = std::str::from_utf8(&rest[..digits]).ok().and_then(|d| d.parse().ok());
            rest = &rest[digits..];
            Some(id.ok_or_else(|| malformed("a bad ack id"))?)
        };
        let data = if rest.is_empty() {
            None
        } else {
            if chat_domain::json::nests_deeper_than(rest, chat_domain::json::MAX_DEPTH) {
                return Err(malformed("JSON nested too deeply"));
            }
            if let Some(n) = chat_domain::json::unfaithful_number(rest) {
                return Err(malformed(format!("a number that cannot be stored exactly ({n})")));
            }
            Some(serde_json::from_slice(rest).map_err(|e| malformed(format!("malformed JSON: {e}")))?)
        };
        Ok(Self { kind, namespace, ack_id, data })
    }
}

/// `40{"sid":..}`: the namespace `/` is connected.
pub fn connected(sid: &str) -> String {
    format!("40{}", serde_json::json!({ "sid": sid }))
}

/// `44{"message":..}` (with the namespace when it is not `/`): the client sees
/// `connect_error` with `err.message`.
pub fn connect_error(namespace: &str, message: &str) -> String {
    let body = serde_json::json!({ "message": message });
    if namespace == "/" { format!("44{body}") } else { format!("44{namespace},{body}") }
}

/// `43<id>[..]`: the answer to an event that asked for one.
pub fn ack(id: u64, args: &Value) -> String {
    format!("43{id}{}", Value::Array(vec![args.clone()]))
}

/// `42["event",payload]`: an event to the client.
pub fn event(name: &str, payload: &Value) -> String {
    format!("42{}", Value::Array(vec![Value::String(name.to_owned()), payload.clone()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_packets() {
        assert_eq!(EnginePacket::parse_text("2probe"), Ok(EnginePacket::Ping("probe".to_owned())));
        assert_eq!(EnginePacket::parse_text("3"), Ok(EnginePacket::Pong(String::new())));
        assert_eq!(EnginePacket::parse_text("5"), Ok(EnginePacket::Upgrade));
        assert_eq!(EnginePacket::parse_text("40"), Ok(EnginePacket::Message("0".to_owned())));
        assert!(EnginePacket::parse_text("").is_err());
        assert!(EnginePacket::parse_text("0{}").is_err(), "open is the server's");
        assert!(EnginePacket::parse_text("9").is_err());
        assert!(EnginePacket::parse_text("é").is_err());
        assert_eq!(EnginePacket::parse_record(b"bAQI="), Ok(EnginePacket::Binary(Bytes::from_static(&[1, 2]))));
        assert!(EnginePacket::parse_record(b"b!!").is_err());
        assert!(EnginePacket::parse_record(b"\xff\xfe").is_err());
    }

    #[test]
    fn polling_bodies_split_on_the_record_separator() {
        let records: Vec<&[u8]> = split_payload(b"40\x1e42[\"a\"]").collect();
        assert_eq!(records, vec![&b"40"[..], &b"42[\"a\"]"[..]]);
        assert_eq!(split_payload(b"").count(), 0);
        // An empty record is still a record (and then a malformed packet).
        assert_eq!(split_payload(b"3\x1e").count(), 2);
    }

    #[test]
    fn socket_packets() -> Result<(), Malformed> {
        let p = SocketPacket::parse(r#"0{"token":"t"}"#)?;
        assert_eq!((p.kind, p.namespace.as_str(), p.ack_id), (SocketKind::Connect, "/", None));
        assert_eq!(p.data, Some(serde_json::json!({"token": "t"})));
        let p = SocketPacket::parse(r#"212["join-chat-room","room_1"]"#)?;
        assert_eq!((p.kind, p.ack_id), (SocketKind::Event, Some(12)));
        let p = SocketPacket::parse(r#"2/admin,3["x"]"#)?;
        assert_eq!((p.namespace.as_str(), p.ack_id), ("/admin", Some(3)));
        let p = SocketPacket::parse("0/admin")?;
        assert_eq!((p.namespace.as_str(), p.data), ("/admin", None));
        let p = SocketPacket::parse(r#"51-["up",{"_placeholder":true,"num":0}]"#)?;
        assert_eq!(p.kind, SocketKind::BinaryEvent);
        assert_eq!(SocketPacket::parse("1")?.kind, SocketKind::Disconnect);
        for bad in ["", "7", "2[", "5-[]", "5x", "21234567890123456[\"a\"]", "2{\"a\":", "2/ns,\u{0}"] {
            assert!(SocketPacket::parse(bad).is_err(), "{bad:?} must be refused");
        }
        let deep = format!("2{}{}", "[".repeat(200), "]".repeat(200));
        assert!(SocketPacket::parse(&deep).is_err());
        Ok(())
    }

    proptest::proptest! {
        /// Any bytes from a client are a packet or a refusal, never a panic.
        #[test]
        fn arbitrary_input_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            for record in split_payload(&body) {
                if let Ok(EnginePacket::Message(text)) = EnginePacket::parse_record(record) {
                    let _ = SocketPacket::parse(&text);
                }
            }
            let text = String::from_utf8_lossy(&body);
            let _ = SocketPacket::parse(&text);
        }

        /// Packets that look almost right: a valid prefix and arbitrary text after it.
        #[test]
        fn near_misses_never_panic(prefix in "[0-6]{1,2}[-/,0-9]{0,4}", rest in "\\PC{0,64}") {
            let _ = SocketPacket::parse(&format!("{prefix}{rest}"));
            let _ = EnginePacket::parse_text(&format!("4{prefix}{rest}"));
        }
    }

    #[test]
    fn server_packets() {
        assert_eq!(connect_error("/", "bad token"), r#"44{"message":"bad token"}"#);
        assert_eq!(connect_error("/x", "no"), r#"44/x,{"message":"no"}"#);
        assert_eq!(ack(7, &serde_json::json!({"ok": true})), r#"437[{"ok":true}]"#);
        assert_eq!(event("user-typing", &serde_json::json!({"a": 1})), r#"42["user-typing",{"a":1}]"#);
    }
}
