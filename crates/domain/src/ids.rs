//! Identifiers. Every id that can end up in a NATS subject is a validated token:
//! ASCII letters, digits, `_` and `-` (user ids also allow `@`, `+`, `=` and `~`), never
//! `.`, `*`, `>` or whitespace. Server-made ids carry a type prefix and a UUIDv7, so
//! they sort by creation time.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("may only contain letters, digits and {0}")]
    BadChar(&'static str),
}

fn check(s: &str, max: usize, extra: &'static str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > max {
        return Err(IdError::TooLong(max));
    }
    let ok = s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || extra.as_bytes().contains(&b));
    if ok {
        Ok(())
    } else {
        Err(IdError::BadChar(if extra.is_empty() { "'_', '-'" } else { "'_', '-', '@', '+', '=', '~'" }))
    }
}

/// The JSON Schema pattern matching [`check`].
fn pattern(extra: &str) -> String {
    // No escapes and `-` last: valid in every regex dialect (ECMA-262 unicode mode too).
    format!("^[A-Za-z0-9_{extra}-]+$")
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, max = $max:expr, extra = $extra:expr, prefix = $prefix:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": $max,
                    "pattern": pattern($extra),
                })
            }
        }

        impl $name {
            /// Longest accepted id, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Parses an id received from outside.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check(&s, $max, $extra)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// A new, time-ordered id with this type's prefix (for server-made ids).
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Hashes and compares as its string, so maps keyed by ids can be searched by `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

token_id!(
    /// A tenant: one customer application with its own keys, rooms and users.
    TenantId, max = 64, extra = "", prefix = "ten_"
);
token_id!(
    /// A room (DM, group or channel).
    RoomId, max = 64, extra = "", prefix = "room_"
);
token_id!(
    /// A stored message.
    MessageId, max = 64, extra = "", prefix = "msg_"
);
token_id!(
    /// An event on the bus; a republished event keeps its id.
    EventId, max = 64, extra = "", prefix = "evt_"
);
token_id!(
    /// A notification sent with `/notify`.
    NotificationId, max = 64, extra = "", prefix = "notif_"
);
token_id!(
    /// One webhook delivery (its retries keep the id, so receivers can dedupe).
    DeliveryId, max = 64, extra = "", prefix = "dlv_"
);
token_id!(
    /// One gateway process: names its presence lease and prefixes its sockets' ids.
    GatewayId, max = 64, extra = "", prefix = "gw_"
);
/// The sender a message shows once its author's data was erased (`EraseData`): `~`
/// keeps it apart from ids tenants choose in practice, and it is a valid [`UserId`].
pub const ERASED_USER: &str = "~deleted";

token_id!(
    /// A user of a tenant's application. Chosen by the tenant; `:` and `.` are not
    /// allowed because user ids appear in DM keys and NATS subjects.
    UserId, max = 128, extra = "@+=~", prefix = "usr_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_unsafe_characters_are_rejected() {
        for bad in ["a.b", "a*", "a>", "a b", "", "dm:a", "tab\t"] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} must be rejected");
            assert!(RoomId::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(UserId::parse("alice@example_com+1").is_ok());
        assert!(RoomId::parse("alice@x").is_err(), "room ids are plainer than user ids");
        assert!(UserId::parse("x".repeat(129)).is_err());
    }

    #[test]
    fn generated_ids_are_valid_and_prefixed() {
        let r = RoomId::generate();
        assert!(r.as_str().starts_with("room_"));
        assert!(RoomId::parse(r.as_str()).is_ok());
        assert_ne!(RoomId::generate(), RoomId::generate());
    }

    #[test]
    fn deserializing_validates() {
        let bad: Result<RoomId, _> = serde_json::from_str("\"a.b\"");
        assert!(bad.is_err());
        let good: Result<RoomId, _> = serde_json::from_str("\"room_1\"");
        assert!(good.is_ok());
    }
}
