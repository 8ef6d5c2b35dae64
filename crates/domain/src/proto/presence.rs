//! Commands and signals answered by presence: which sockets are open in which room,
//! who is online (and when they were), and who is typing. Everything lives in Redis.
//! Liveness is a lease per gateway, not a heartbeat per socket: a gateway renews its
//! lease with one signal every few seconds, and one that stops renewing (it died
//! without saying goodbye) takes its sockets with it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Command, Done, Service, ServiceCommand};
use chrono::{DateTime, Utc};

use crate::ids::{GatewayId, RoomId, TenantId, UserId};

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

/// A socket opened in a room. Announces `presence.joined` when it is the user's first,
/// unless the room is big (more users than `PRESENCE_BIG_ROOM`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Connect {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    pub user_id: UserId,
    pub user_name: Option<String>,
    /// The gateway holding the socket; the socket lives as long as its lease.
    pub gateway_id: GatewayId,
    /// Unique per socket (gateway id and a counter).
    pub conn_id: String,
}

/// Who is online in the room now (this socket included). In a big room (more users
/// than presence's `PRESENCE_BIG_ROOM`) only this user is listed, with `big_room` set:
/// a list of every member with every join would cost O(n²) for n joins. The whole
/// list is read on demand ([`GetOnline`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Connected {
    pub online_users: Vec<UserId>,
    /// Whether this is the user's only socket in the room (they just came online).
    pub first_connection: bool,
    /// Users online in the room (this one included), counting those within the grace.
    #[serde(default)]
    pub total_online: u64,
    /// The room is big: `online_users` lists only this user, and arrivals and
    /// departures are not announced one by one (`presence.joined`/`presence.left`).
    #[serde(default)]
    pub big_room: bool,
}
presence_command!(Connect, "connect", Connected);

/// Most sockets one [`ConnectMany`] may carry.
pub const MAX_CONNECT_MANY: usize = 500;

/// One socket of a [`ConnectMany`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SocketOpen {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    pub user_id: UserId,
    pub user_name: Option<String>,
    /// Unique per socket (gateway id and a counter).
    pub conn_id: String,
}

/// A gateway's open sockets announced again, up to [`MAX_CONNECT_MANY`] in one request
/// (one Redis call), when presence asked it to resync: the work is per batch, not a
/// request per socket. Each is registered as by [`Connect`]; a user who comes online
/// by it is announced (`presence.joined`) unless their room is big.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ConnectMany {
    pub gateway_id: GatewayId,
    pub sockets: Vec<SocketOpen>,
}

/// How many sockets of a [`ConnectMany`] were registered, and how many of them made
/// their user come online in their room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectedMany {
    pub registered: u64,
    pub came_online: u64,
}
presence_command!(ConnectMany, "connect_many", ConnectedMany);

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

/// Signal on `<prefix>.presence.gateway.<gateway>.lease`: this gateway is alive and
/// its sockets are open for `ttl_ms` more. Gateways renew well within the TTL; when a
/// lease runs out, presence closes every socket of that gateway (announcing who left).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayLease {
    pub gateway_id: GatewayId,
    pub ttl_ms: u64,
}

/// Signal on `<prefix>.gateway.<gateway>.resync`, from presence to one gateway: "I do
/// not know (all of) your sockets; announce them again". Presence sends it when a lease
/// arrives from a gateway it has no lease for (its Redis lost it: a restart without
/// persistence, or a failover to a replica that had not received it), and to every
/// gateway it knows once Redis answers again after an outage. The gateway answers by
/// sending `connect` for each socket it holds, so presence rebuilds what it lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayResync {
    pub gateway_id: GatewayId,
}

/// One room and a span of time to ask about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistorySpan {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub from: DateTime<Utc>,
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub to: DateTime<Utc>,
}

/// When users had a socket open in rooms, for deciding after the fact (however late)
/// who was online when a message arrived.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OnlineHistory {
    pub spans: Vec<HistorySpan>,
}

/// A span when a user had at least one socket open in a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Interval {
    #[serde(with = "crate::time::micros")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub from: DateTime<Utc>,
    /// When the user's last socket closed; absent while one is still open.
    #[serde(default, with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub to: Option<DateTime<Utc>>,
}

/// A user's intervals that overlap the asked span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserIntervals {
    pub user_id: UserId,
    pub intervals: Vec<Interval>,
}

/// One room's answer: every user online at some point of the span, with when. Users
/// not listed had no socket open in the room during the span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomHistory {
    pub tenant_id: TenantId,
    pub room_id: RoomId,
    /// False when the span starts before the history kept (it is then incomplete).
    pub complete: bool,
    pub users: Vec<UserIntervals>,
}
presence_command!(OnlineHistory, "online_history", Vec<RoomHistory>);

/// Erase what presence keeps in Redis of a tenant (`user_id` absent) or of one user:
/// their sockets, online intervals, typing and names in every room.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErasePresence {
    pub tenant_id: TenantId,
    pub user_id: Option<UserId>,
}

/// Redis keys deleted and members removed by [`ErasePresence`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceErased {
    pub removed: u64,
}
presence_command!(ErasePresence, "erase", PresenceErased);
