//! Subject and stream names. Services never format a subject themselves: they call
//! these builders, whose inputs are validated subject-safe ids.
//!
//! The first token is a configurable prefix (`chat` by default, `CHAT_BUS_PREFIX`), so
//! several stacks (tests running in parallel, staging next to production) can share one
//! NATS server without seeing each other's traffic.

use chat_domain::ids::{GatewayId, RoomId, TenantId, UserId};
use chat_domain::proto::Service;

/// The default first subject token.
pub const DEFAULT_PREFIX: &str = "chat";

/// Something that may stand in a subject token: a validated id, or a documentation
/// placeholder such as `{tenant}`.
pub trait Token {
    fn token(&self) -> &str;
}

impl Token for TenantId {
    fn token(&self) -> &str {
        self.as_str()
    }
}

impl Token for RoomId {
    fn token(&self) -> &str {
        self.as_str()
    }
}

impl Token for UserId {
    fn token(&self) -> &str {
        self.as_str()
    }
}

impl Token for GatewayId {
    fn token(&self) -> &str {
        self.as_str()
    }
}

/// A `{name}` placeholder, for the AsyncAPI document and its check.
#[derive(Debug, Clone, Copy)]
pub struct Placeholder(pub &'static str);

impl Token for Placeholder {
    fn token(&self) -> &str {
        self.0
    }
}

/// Presence signals a gateway sends about its sockets in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceSignal {
    Connect,
    Disconnect,
}

impl PresenceSignal {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceSignal::Connect => "connect",
            PresenceSignal::Disconnect => "disconnect",
        }
    }
}

/// Builds every subject and stream name under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

/// Why a prefix was refused.
#[derive(Debug, thiserror::Error)]
#[error("bus prefix {0:?} must be 1-32 ASCII letters, digits, '_' or '-'")]
pub struct BadPrefix(String);

impl Subjects {
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 32
            && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok { Ok(Self { prefix: prefix.to_owned() }) } else { Err(BadPrefix(prefix.to_owned())) }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<p>.cmd.<service>.<verb>`: one command.
    pub fn command(&self, service: Service, verb: &str) -> String {
        format!("{}.cmd.{}.{verb}", self.prefix, service.name())
    }

    /// `<p>.cmd.<service>.*`: all of a service's commands (its queue subscription).
    pub fn commands_of(&self, service: Service) -> String {
        format!("{}.cmd.{}.*", self.prefix, service.name())
    }

    /// `<p>.evt.<tenant>.<room>.<kind>`: one room event.
    pub fn room_event(&self, tenant: &impl Token, room: &impl Token, kind: &str) -> String {
        format!("{}.evt.{}.{}.{kind}", self.prefix, tenant.token(), room.token())
    }

    /// `<p>.evt.<tenant>.<room>.>`: everything about one room (a gateway's interest).
    pub fn room_events(&self, tenant: &impl Token, room: &impl Token) -> String {
        format!("{}.evt.{}.{}.>", self.prefix, tenant.token(), room.token())
    }

    /// `<p>.evt.*.*.<kind>`: one kind of room event in every room (a consumer's filter).
    pub fn room_events_of_kind(&self, kind: &str) -> String {
        format!("{}.evt.*.*.{kind}", self.prefix)
    }

    /// `<p>.evt.>`: every room event (the events stream's subjects).
    pub fn all_room_events(&self) -> String {
        format!("{}.evt.>", self.prefix)
    }

    /// `<p>.user.<tenant>.<user>.<kind>`: an event addressed to one person.
    pub fn user_event(&self, tenant: &impl Token, user: &impl Token, kind: &str) -> String {
        format!("{}.user.{}.{}.{kind}", self.prefix, tenant.token(), user.token())
    }

    /// `<p>.user.<tenant>.>`: everything addressed to a tenant's users (a gateway's
    /// interest while it has sockets of the tenant).
    pub fn tenant_user_events(&self, tenant: &impl Token) -> String {
        format!("{}.user.{}.>", self.prefix, tenant.token())
    }

    /// The user a `<p>.user.<tenant>.<user>.<kind>` subject is addressed to (the
    /// inverse of [`Subjects::user_event`]); `None` for any other subject.
    pub fn user_of_user_event<'s>(&self, subject: &'s str) -> Option<&'s str> {
        let rest = subject.strip_prefix(self.prefix.as_str())?.strip_prefix(".user.")?;
        let mut tokens = rest.splitn(3, '.');
        let (_tenant, user, _kind) = (tokens.next()?, tokens.next()?, tokens.next()?);
        Some(user)
    }

    /// `<p>.user.>`: every user event (a stream's or a monitor's subjects).
    pub fn all_user_events(&self) -> String {
        format!("{}.user.>", self.prefix)
    }

    /// `<p>.presence.<tenant>.<room>.<signal>`: a gateway's presence signal.
    pub fn presence(&self, tenant: &impl Token, room: &impl Token, signal: PresenceSignal) -> String {
        format!("{}.presence.{}.{}.{}", self.prefix, tenant.token(), room.token(), signal.as_str())
    }

    /// `<p>.presence.gateway.<gateway>.lease`: a gateway renewing the lease its sockets
    /// live by. (A per-room signal's last token is `connect` or `disconnect`, so the two
    /// shapes never meet.)
    pub fn gateway_lease(&self, gateway: &impl Token) -> String {
        format!("{}.presence.gateway.{}.lease", self.prefix, gateway.token())
    }

    /// `<p>.gateway.<gateway>.resync`: presence asking one gateway to announce its
    /// sockets again (outside `<p>.presence.>`, which presence itself subscribes to).
    pub fn gateway_resync(&self, gateway: &impl Token) -> String {
        format!("{}.gateway.{}.resync", self.prefix, gateway.token())
    }

    /// `<p>.presence.>`: every presence signal (presence's queue subscription).
    pub fn all_presence(&self) -> String {
        format!("{}.presence.>", self.prefix)
    }

    /// `<p>.dlq.<tenant>.<kind>`: a dead letter.
    pub fn dead_letter(&self, tenant: &impl Token, kind: &str) -> String {
        format!("{}.dlq.{}.{kind}", self.prefix, tenant.token())
    }

    /// `<p>.jobs.delivery`: webhook delivery jobs (a JetStream work queue).
    pub fn delivery_jobs(&self) -> String {
        format!("{}.jobs.delivery", self.prefix)
    }

    /// `<p>.dlq.<tenant>.>`: every dead letter of one tenant (purged when it is deleted).
    pub fn dead_letters_of(&self, tenant: &impl Token) -> String {
        format!("{}.dlq.{}.>", self.prefix, tenant.token())
    }

    /// `<p>.dlq.>`: every dead letter (the dead-letter stream's subjects).
    pub fn all_dead_letters(&self) -> String {
        format!("{}.dlq.>", self.prefix)
    }

    /// The JetStream work queue of webhook deliveries, e.g. `CHAT_DELIVERIES`.
    pub fn deliveries_stream(&self) -> String {
        format!("{}_DELIVERIES", self.prefix.to_ascii_uppercase())
    }

    /// The JetStream stream that keeps dead letters, e.g. `CHAT_DLQ`.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}_DLQ", self.prefix.to_ascii_uppercase())
    }

    /// `<p>.sys.tenant.changed`: a tenant's keys or settings changed.
    pub fn tenant_changed(&self) -> String {
        format!("{}.sys.tenant.changed", self.prefix)
    }

    /// The JetStream stream that kept room events in earlier versions, e.g.
    /// `CHAT_EVENTS` (removed at start; see `events::remove_legacy_events_stream`).
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.prefix.to_ascii_uppercase())
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Self { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_design() -> Result<(), Box<dyn std::error::Error>> {
        let s = Subjects::default();
        let (t, r, u) = (TenantId::parse("t1")?, RoomId::parse("r1")?, UserId::parse("u1")?);
        assert_eq!(s.command(Service::MessageStore, "send_message"), "chat.cmd.message-store.send_message");
        assert_eq!(s.commands_of(Service::Presence), "chat.cmd.presence.*");
        assert_eq!(s.room_event(&t, &r, "message.created"), "chat.evt.t1.r1.message.created");
        assert_eq!(s.room_events(&t, &r), "chat.evt.t1.r1.>");
        assert_eq!(s.user_event(&t, &u, "notification"), "chat.user.t1.u1.notification");
        assert_eq!(s.user_of_user_event("chat.user.t1.u1.message.status"), Some("u1"));
        assert_eq!(s.user_of_user_event("chat.evt.t1.r1.typing"), None);
        assert_eq!(s.user_of_user_event("other.user.t1.u1.x"), None);
        assert_eq!(s.presence(&t, &r, PresenceSignal::Disconnect), "chat.presence.t1.r1.disconnect");
        assert_eq!(s.gateway_lease(&GatewayId::parse("gw_1")?), "chat.presence.gateway.gw_1.lease");
        assert_eq!(s.dead_letter(&t, "webhook"), "chat.dlq.t1.webhook");
        assert_eq!(s.events_stream(), "CHAT_EVENTS");
        Ok(())
    }

    #[test]
    fn prefixes_are_tokens() {
        assert!(Subjects::new("t_1-a").is_ok());
        for bad in ["", "a.b", "a*", "a b", &"x".repeat(33)] {
            assert!(Subjects::new(bad).is_err(), "{bad:?}");
        }
    }
}
