//! Commands answered by notification: `/notify`, topic subscriptions, inboxes and
//! dead letters.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Command, Done, Service, ServiceCommand};
use crate::ids::{RoomId, TenantId, UserId};

macro_rules! notify_command {
    ($cmd:ty, $verb:literal, $reply:ty) => {
        impl Command for $cmd {
            const VERB: &'static str = $verb;
            type Reply = $reply;
        }
        impl ServiceCommand for $cmd {
            const SERVICE: Service = Service::Notification;
        }
    };
}

/// Longest topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 200;
/// Largest notification payload, serialized.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;
/// Most `targets.user_ids` one notification may name (each is a stored inbox row, and
/// each counts against the tenant's rate limit).
pub const MAX_NOTIFY_USER_IDS: usize = 1_000;
/// Most recipients one notification may reach, however its targets are given; past it
/// the call is refused (`400`, `targets`) and nothing is stored.
pub const MAX_NOTIFY_RECIPIENTS: usize = 10_000;

/// Who gets a notification. No targets at all means the whole tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Targets {
    #[serde(default)]
    pub user_ids: Vec<UserId>,
    pub room_id: Option<RoomId>,
    #[serde(default)]
    pub topic_subscribers: bool,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.user_ids.is_empty() && self.room_id.is_none() && !self.topic_subscribers
    }
}

/// Send a notification: online targets get it live, offline ones in their inbox and
/// through the tenant's webhook.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Notify {
    pub tenant_id: TenantId,
    pub topic: String,
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub payload: serde_json::Value,
    pub targets: Targets,
}

/// The stored notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Notified {
    pub notification_id: String,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub created_at: DateTime<Utc>,
    /// How many users it was addressed to.
    pub recipients: u64,
}
notify_command!(Notify, "notify", Notified);

/// Subscribe a user to a topic (idempotent).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Subscribe {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub topic: String,
}
notify_command!(Subscribe, "subscribe", Done);

/// Remove a user's subscription; `NOT_FOUND` if there was none.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Unsubscribe {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub topic: String,
}
notify_command!(Unsubscribe, "unsubscribe", Done);

/// A user's topics, sorted.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListSubscriptions {
    pub tenant_id: TenantId,
    pub user_id: UserId,
}
notify_command!(ListSubscriptions, "list_subscriptions", Vec<String>);

/// One inbox item: a notification, or a message that arrived while the user was away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InboxItem {
    pub id: String,
    /// `notification` or `message`.
    pub kind: String,
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub body: serde_json::Value,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub created_at: DateTime<Utc>,
    pub delivered: bool,
}

/// A user's inbox, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListInbox {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub limit: u32,
    pub offset: u32,
}
notify_command!(ListInbox, "list_inbox", Vec<InboxItem>);

/// The user's undelivered items, oldest first, marked delivered (a socket just opened).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TakeInbox {
    pub tenant_id: TenantId,
    pub user_id: UserId,
}
notify_command!(TakeInbox, "take_inbox", Vec<InboxItem>);

/// A tenant's dead letters, newest first (the admin API).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListDeadLetters {
    pub tenant_id: TenantId,
    pub limit: u32,
}

/// Dead letters by what failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetters {
    pub failed_messages: Vec<FailedMessage>,
    pub failed_notifications: Vec<FailedNotification>,
}

/// An offline-message webhook that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailedMessage {
    /// Pass to the retry endpoint.
    pub id: String,
    pub message_id: String,
    pub user_id: String,
    pub room_id: Option<String>,
    pub attempts: u32,
    #[serde(with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// A notification webhook that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailedNotification {
    /// Pass to the retry endpoint.
    pub id: String,
    pub notification_id: String,
    pub topic: Option<String>,
    pub user_id: String,
    pub attempts: u32,
    #[serde(with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}
notify_command!(ListDeadLetters, "list_dead_letters", DeadLetters);

/// Replay a dead letter: its delivery starts over with a fresh attempt budget.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RetryDeadLetter {
    pub id: String,
}
notify_command!(RetryDeadLetter, "retry_dead_letter", Done);

/// Erase what the notification service keeps of a tenant (`user_id` absent: its
/// notifications, inboxes, subscriptions, deliveries, offline windows and dead letters
/// in JetStream) or of one user (their inbox, subscriptions and deliveries).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EraseNotifications {
    pub tenant_id: TenantId,
    pub user_id: Option<UserId>,
}

/// Rows removed by [`EraseNotifications`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationsErased {
    pub rows: u64,
    /// Dead letters purged from JetStream.
    pub dead_letters: u64,
}
notify_command!(EraseNotifications, "erase", NotificationsErased);
