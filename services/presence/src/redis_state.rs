//! The presence state in Redis, under the bus prefix:
//!
//! - `<p>:pr:conns:<tenant>:<room>`: sorted set of `user\x1fconn` scored by the time
//!   (ms) the socket expires unless renewed. A disconnect sets it to now + grace.
//! - `<p>:pr:names:<tenant>:<room>`: hash user → display name.
//! - `<p>:pr:typing:<tenant>:<room>`: sorted set of users scored by typing expiry.
//! - `<p>:pr:rooms`: sorted set of `tenant\x1froom` with state, for the sweeper.
//!
//! Every change is one Lua script, so concurrent replicas never both announce the
//! same arrival or departure.

use std::collections::BTreeSet;

use chat_domain::ids::{RoomId, TenantId, UserId};
use redis::aio::ConnectionManager;

/// Separates user and connection ids in set members (cannot occur in either).
const SEP: char = '\u{1f}';

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Handle on the presence keys of one bus prefix.
#[derive(Clone)]
pub struct State {
    redis: ConnectionManager,
    prefix: String,
    connect: redis::Script,
    sweep: redis::Script,
}

/// What a sweep of one room found.
#[derive(Debug, Default)]
pub struct Swept {
    /// Users whose last socket expired.
    pub left: Vec<(UserId, Option<String>)>,
    /// Users whose typing expired.
    pub stopped_typing: Vec<(UserId, Option<String>)>,
}

fn member(user: &UserId, conn: &str) -> String {
    format!("{user}{SEP}{conn}")
}

fn tenant_member(user: &UserId, room: &RoomId, conn: &str) -> String {
    format!("{user}{SEP}{room}{SEP}{conn}")
}

fn users_of(members: &[String]) -> BTreeSet<String> {
    members.iter().filter_map(|m| m.split(SEP).next()).map(str::to_owned).collect()
}

impl State {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        let connect = redis::Script::new(
            r#"
            local had = 0
            for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], '+inf')) do
              if string.sub(m, 1, #ARGV[2] + 1) == ARGV[2] .. '\31' then had = 1 break end
            end
            redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
            if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], ARGV[2], ARGV[5]) end
            redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6])
            redis.call('ZADD', KEYS[4], ARGV[3], ARGV[7])
            return {had, redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], '+inf')}
            "#,
        );
        let sweep = redis::Script::new(
            r#"
            local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
            if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]) end
            local typing = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
            if #typing > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1]) end
            local users = {}
            for _, m in ipairs(expired) do table.insert(users, string.match(m, '^([^\31]*)')) end
            for _, u in ipairs(typing) do table.insert(users, u) end
            local names = {}
            if #users > 0 then names = redis.call('HMGET', KEYS[4], unpack(users)) end
            local live = redis.call('ZRANGE', KEYS[1], 0, -1)
            local still_typing = redis.call('ZCARD', KEYS[2])
            if #live == 0 and still_typing == 0 then
              redis.call('ZREM', KEYS[3], ARGV[2])
              redis.call('DEL', KEYS[4])
            end
            return {expired, live, typing, names}
            "#,
        );
        Self { redis, prefix: prefix.to_owned(), connect, sweep }
    }

    fn key(&self, what: &str, tenant: &TenantId, room: &RoomId) -> String {
        format!("{}:pr:{what}:{tenant}:{room}", self.prefix)
    }

    /// `<p>:pr:tenant:<tenant>`: every socket of the tenant, `user\x1froom\x1fconn`.
    fn tenant_key(&self, tenant: &TenantId) -> String {
        format!("{}:pr:tenant:{tenant}", self.prefix)
    }

    fn rooms_key(&self) -> String {
        format!("{}:pr:rooms", self.prefix)
    }

    fn room_member(tenant: &TenantId, room: &RoomId) -> String {
        format!("{tenant}{SEP}{room}")
    }

    /// Registers a socket; returns (was this the user's first, online users).
    pub async fn connect(
        &self,
        tenant: &TenantId,
        room: &RoomId,
        user: &UserId,
        name: Option<&str>,
        conn: &str,
        ttl_ms: i64,
    ) -> redis::RedisResult<(bool, Vec<String>)> {
        let now = now_ms();
        let mut r = self.redis.clone();
        let (had, live): (i64, Vec<String>) = self
            .connect
            .key(self.key("conns", tenant, room))
            .key(self.key("names", tenant, room))
            .key(self.rooms_key())
            .key(self.tenant_key(tenant))
            .arg(member(user, conn))
            .arg(user.as_str())
            .arg(now + ttl_ms)
            .arg(now)
            .arg(name.unwrap_or_default())
            .arg(Self::room_member(tenant, room))
            .arg(tenant_member(user, room, conn))
            .invoke_async(&mut r)
            .await?;
        Ok((had == 0, users_of(&live).into_iter().collect()))
    }

    /// Marks a socket as closing: it counts as online for `grace_ms` more, then the
    /// sweeper removes it (and announces the user as left if it was their last).
    pub async fn disconnect(
        &self,
        tenant: &TenantId,
        room: &RoomId,
        user: &UserId,
        conn: &str,
        grace_ms: i64,
    ) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        redis::cmd("ZADD")
            .arg(self.key("conns", tenant, room))
            .arg("XX")
            .arg(now_ms() + grace_ms)
            .arg(member(user, conn))
            .query_async::<()>(&mut r)
            .await?;
        redis::cmd("ZADD")
            .arg(self.tenant_key(tenant))
            .arg("XX")
            .arg(now_ms() + grace_ms)
            .arg(tenant_member(user, room, conn))
            .query_async::<()>(&mut r)
            .await?;
        // Someone who left is not typing.
        redis::cmd("ZADD")
            .arg(self.key("typing", tenant, room))
            .arg("XX")
            .arg(now_ms())
            .arg(user.as_str())
            .query_async::<()>(&mut r)
            .await
    }

    /// Renews sockets that are still open.
    pub async fn heartbeat(
        &self,
        tenant: &TenantId,
        room: &RoomId,
        conns: &[(UserId, String)],
        ttl_ms: i64,
    ) -> redis::RedisResult<()> {
        if conns.is_empty() {
            return Ok(());
        }
        let expiry = now_ms() + ttl_ms;
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.key("conns", tenant, room)).arg("XX");
        for (user, conn) in conns {
            cmd.arg(expiry).arg(member(user, conn));
        }
        let mut tenant_cmd = redis::cmd("ZADD");
        tenant_cmd.arg(self.tenant_key(tenant)).arg("XX");
        for (user, conn) in conns {
            tenant_cmd.arg(expiry).arg(tenant_member(user, room, conn));
        }
        let mut r = self.redis.clone();
        cmd.query_async::<()>(&mut r).await?;
        tenant_cmd.query_async::<()>(&mut r).await
    }

    /// Users online anywhere in the tenant, sorted. Expired entries are dropped here.
    pub async fn tenant_online(&self, tenant: &TenantId) -> redis::RedisResult<Vec<String>> {
        let mut r = self.redis.clone();
        let key = self.tenant_key(tenant);
        redis::cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(now_ms()).query_async::<()>(&mut r).await?;
        let live: Vec<String> = redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut r).await?;
        Ok(users_of(&live).into_iter().collect())
    }

    /// Online users of a room, sorted.
    pub async fn online(&self, tenant: &TenantId, room: &RoomId) -> redis::RedisResult<Vec<String>> {
        let mut r = self.redis.clone();
        let live: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key("conns", tenant, room))
            .arg(now_ms())
            .arg("+inf")
            .query_async(&mut r)
            .await?;
        Ok(users_of(&live).into_iter().collect())
    }

    /// Sets or clears typing; returns whether the state changed.
    pub async fn typing(
        &self,
        tenant: &TenantId,
        room: &RoomId,
        user: &UserId,
        name: Option<&str>,
        is_typing: bool,
        ttl_ms: i64,
    ) -> redis::RedisResult<bool> {
        let mut r = self.redis.clone();
        let key = self.key("typing", tenant, room);
        if is_typing {
            if let Some(n) = name {
                redis::cmd("HSET")
                    .arg(self.key("names", tenant, room))
                    .arg(user.as_str())
                    .arg(n)
                    .query_async::<()>(&mut r)
                    .await?;
            }
            redis::cmd("ZADD")
                .arg(self.rooms_key())
                .arg(now_ms())
                .arg(Self::room_member(tenant, room))
                .query_async::<()>(&mut r)
                .await?;
            let added: i64 =
                redis::cmd("ZADD").arg(&key).arg(now_ms() + ttl_ms).arg(user.as_str()).query_async(&mut r).await?;
            // Renewals are announced too: clients use them to keep the indicator on.
            let _ = added;
            Ok(true)
        } else {
            let removed: i64 = redis::cmd("ZREM").arg(&key).arg(user.as_str()).query_async(&mut r).await?;
            Ok(removed > 0)
        }
    }

    /// Rooms that have presence state.
    pub async fn rooms(&self) -> redis::RedisResult<Vec<(TenantId, RoomId)>> {
        let mut r = self.redis.clone();
        let all: Vec<String> = redis::cmd("ZRANGE").arg(self.rooms_key()).arg(0).arg(-1).query_async(&mut r).await?;
        Ok(all
            .iter()
            .filter_map(|m| m.split_once(SEP))
            .filter_map(|(t, r)| Some((TenantId::parse(t).ok()?, RoomId::parse(r).ok()?)))
            .collect())
    }

    /// Removes what expired in one room, atomically; returns who left and who stopped
    /// typing. Only the replica whose script removed an entry announces it.
    pub async fn sweep(&self, tenant: &TenantId, room: &RoomId) -> redis::RedisResult<Swept> {
        let mut r = self.redis.clone();
        type Reply = (Vec<String>, Vec<String>, Vec<String>, Vec<Option<String>>);
        let (expired, live, typing, names): Reply = self
            .sweep
            .key(self.key("conns", tenant, room))
            .key(self.key("typing", tenant, room))
            .key(self.rooms_key())
            .key(self.key("names", tenant, room))
            .arg(now_ms())
            .arg(Self::room_member(tenant, room))
            .invoke_async(&mut r)
            .await?;
        let still = users_of(&live);
        let mut swept = Swept::default();
        let mut announced = BTreeSet::new();
        for (i, m) in expired.iter().enumerate() {
            let Some(u) = m.split(SEP).next() else { continue };
            if still.contains(u) || !announced.insert(u.to_owned()) {
                continue;
            }
            if let Ok(user) = UserId::parse(u) {
                swept.left.push((user, names.get(i).cloned().flatten()));
            }
        }
        for (j, u) in typing.iter().enumerate() {
            if let Ok(user) = UserId::parse(u.as_str()) {
                swept.stopped_typing.push((user, names.get(expired.len() + j).cloned().flatten()));
            }
        }
        Ok(swept)
    }
}
