//! Sockets: registering one when a gateway opens it, marking it closed (its user
//! still counts as online for the grace), and who is online in a room or anywhere in
//! a tenant.

use std::collections::BTreeSet;

use chat_domain::ids::{GatewayId, RoomId, TenantId, UserId};

use crate::redis_state::handle::{SEP, State};

/// What registering a socket found.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The user had no socket in the room (counting closing ones within the grace).
    pub first: bool,
    /// The user's previous interval ended before this socket (their grace was over,
    /// but the sweeper had not yet announced them as left).
    pub previous_ended: bool,
    /// Users online in the room, this one included, sorted; empty in a big room
    /// (more users than [`State::big_room`]), whose list is read on demand instead.
    pub online: Vec<String>,
    /// Users in the room (online, or closing within the grace), this one included.
    pub users: u64,
}

/// One socket a gateway announces again ([`State::connect_many`]).
#[derive(Debug, Clone)]
pub struct Announced<'a> {
    pub tenant: &'a TenantId,
    pub room: &'a RoomId,
    pub user: &'a UserId,
    pub name: Option<&'a str>,
    pub conn: &'a str,
}

fn users_of(members: &[String]) -> Vec<String> {
    let users: BTreeSet<&str> = members.iter().filter_map(|m| m.split(SEP).next()).collect();
    users.into_iter().map(str::to_owned).collect()
}

impl State {
    /// Registers a socket opened at `now` on gateway `gw`.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        &self,
        tenant: &TenantId,
        room: &RoomId,
        user: &UserId,
        name: Option<&str>,
        gw: &GatewayId,
        conn: &str,
        now: i64,
    ) -> redis::RedisResult<Registered> {
        let mut r = self.redis.clone();
        let (first, ended, live, users): (i64, String, Vec<String>, u64) = self
            .scripts
            .connect
            .arg(&*self.prefix)
            .arg(tenant.as_str())
            .arg(room.as_str())
            .arg(user.as_str())
            .arg(conn)
            .arg(gw.as_str())
            .arg(name.unwrap_or_default())
            .arg(now)
            .arg(self.timing.default_lease_ms)
            .arg(self.timing.grace_ms)
            .arg(self.timing.history_ms)
            .arg(self.big_room)
            .invoke_async(&mut r)
            .await?;
        self.replicated(&mut r).await?;
        Ok(Registered { first: first == 1, previous_ended: !ended.is_empty(), online: users_of(&live), users })
    }

    /// Registers many sockets of gateway `gw` opened (or known open) at `now`, in one
    /// Redis call: a gateway announcing its sockets again after presence lost them.
    /// What each registration found, in order (without the online list).
    pub async fn connect_many(
        &self,
        gw: &GatewayId,
        sockets: &[Announced<'_>],
        now: i64,
    ) -> redis::RedisResult<Vec<Registered>> {
        if sockets.is_empty() {
            return Ok(Vec::new());
        }
        let mut r = self.redis.clone();
        let mut call = self.scripts.connect_many.arg(&*self.prefix);
        call.arg(now).arg(self.timing.default_lease_ms).arg(self.timing.grace_ms).arg(self.timing.history_ms);
        for s in sockets {
            call.arg(s.tenant.as_str())
                .arg(s.room.as_str())
                .arg(s.user.as_str())
                .arg(s.conn)
                .arg(gw.as_str())
                .arg(s.name.unwrap_or_default());
        }
        let found: Vec<(i64, String, u64)> = call.invoke_async(&mut r).await?;
        self.replicated(&mut r).await?;
        Ok(found
            .into_iter()
            .map(|(first, ended, users)| Registered {
                first: first == 1,
                previous_ended: !ended.is_empty(),
                online: Vec::new(),
                users,
            })
            .collect())
    }

    /// Marks a socket closed at `now`: it counts as online for the grace, then the
    /// sweeper removes it (and announces the user as left if it was their last).
    pub async fn disconnect(
        &self,
        tenant: &TenantId,
        room: &RoomId,
        user: &UserId,
        conn: &str,
        now: i64,
    ) -> redis::RedisResult<bool> {
        let mut r = self.redis.clone();
        let closed: i64 = self
            .scripts
            .disconnect
            .arg(&*self.prefix)
            .arg(tenant.as_str())
            .arg(room.as_str())
            .arg(user.as_str())
            .arg(conn)
            .arg(now)
            .arg(self.timing.grace_ms)
            .invoke_async(&mut r)
            .await?;
        self.replicated(&mut r).await?;
        Ok(closed == 1)
    }

    /// Online users of a room, sorted: an open socket, or one closed within the grace.
    pub async fn online(&self, tenant: &TenantId, room: &RoomId, now: i64) -> redis::RedisResult<Vec<String>> {
        let mut r = self.redis.clone();
        let live: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key("conns", tenant, room))
            .arg(format!("({}", now - self.timing.grace_ms))
            .arg("+inf")
            .query_async(&mut r)
            .await?;
        Ok(users_of(&live))
    }

    /// Users online anywhere in the tenant, sorted.
    pub async fn tenant_online(&self, tenant: &TenantId, now: i64) -> redis::RedisResult<Vec<String>> {
        let mut r = self.redis.clone();
        let live: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.tenant_key(tenant))
            .arg(format!("({}", now - self.timing.grace_ms))
            .arg("+inf")
            .query_async(&mut r)
            .await?;
        Ok(users_of(&live))
    }
}
