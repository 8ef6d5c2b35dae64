//! Commands and signals answered by presence: which sockets are open in which room,
//! who is online, and who is typing. Everything lives in Redis with expiry, so a
//! gateway that dies without saying goodbye has its sockets expire on their own.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Command, Done, Service, ServiceCommand};
use crate::ids::{RoomId, TenantId, UserId};

macro_rules! presence_command {
    ($cmd:ty, $verb:literal, $reply:ty) => {
        impl Command for $cmd {
            const VERB: &'static str = $verb;
            type Reply = $reply;
        }
        impl ServiceCommand for $cmd {
            const SERVICE: Service = Service::Presence;
        }
    };
}

/// A socket opened in a room. Announces `presence.joined` when it is the user's first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Connect {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    pub user_id: UserId,
    pub user_name: Option<String>,
    /// Unique per socket (gateway id and a counter).
    pub conn_id: String,
}

/// Who is online in the room now (this socket included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Connected {
    pub online_users: Vec<UserId>,
    /// Whether this is the user's only socket in the room (they just came online).
    pub first_connection: bool,
}
presence_command!(Connect, "connect", Connected);

/// Who is online in a room.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetOnline {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
}

/// The online users of a room, sorted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Online {
    pub online_users: Vec<UserId>,
}
presence_command!(GetOnline, "online", Online);

/// Who is online anywhere in a tenant.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetTenantOnline {
    pub tenant_id: TenantId,
}
presence_command!(GetTenantOnline, "tenant_online", Online);

/// A user started or stopped typing. Typing expires on its own when not renewed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SetTyping {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    pub user_id: UserId,
    pub user_name: Option<String>,
    pub is_typing: bool,
}
presence_command!(SetTyping, "typing", Done);

/// One socket, as signals name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConnRef {
    pub user_id: UserId,
    pub conn_id: String,
}

/// Signal on `<prefix>.presence.<tenant>.<room>.disconnect`: a socket closed. The user
/// is announced as left only after the grace period, if no other socket of theirs
/// remains, so a page reload does not flap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DisconnectSignal {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    pub conn: ConnRef,
}

/// Signal on `<prefix>.presence.<tenant>.<room>.heartbeat`: these sockets are still
/// open. Sockets not renewed within the connection TTL expire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatSignal {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    pub conns: Vec<ConnRef>,
}
