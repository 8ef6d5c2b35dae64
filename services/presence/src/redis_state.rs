//! The presence state in Redis. Every key starts with `<p>:pr:` (`<p>` = the bus
//! prefix); times are milliseconds since the Unix epoch; `\x1f` separates the parts
//! of a member (no id can contain it).
//!
//! Per room (`<t>:<r>` = tenant and room id):
//! - `conns:<t>:<r>`: sorted set of sockets `user\x1fconn`, scored by the moment the
//!   socket closed, `+inf` while it is open. A closed socket stays for the leave
//!   grace, during which its user still counts as online.
//! - `gws:<t>:<r>`: hash `user\x1fconn` → gateway, for the sockets still open (so a
//!   disconnect can drop the socket from its gateway's index).
//! - `users:<t>:<r>`: hash user → `open\x1ffrom\x1flast`: how many of their sockets
//!   are open, when their current interval began, when their last socket closed.
//!   A user is in it from their first socket until the grace after their last one.
//! - `hist:<t>:<r>`: sorted set of intervals `user\x1ffrom`, scored by when the
//!   interval ended (`+inf` while it is open). Intervals that ended more than the
//!   history time ago are pruned whenever the set is written; once none is open the
//!   key expires after the history time, so idle rooms clean themselves.
//! - `typing:<t>:<r>`: sorted set of users scored by when their typing expires.
//! - `names:<t>:<r>`: hash user → display name, for announcements.
//!
//! Across rooms:
//! - `tenant:<t>`: sorted set of `user\x1froom\x1fconn`, scored as in `conns`, for
//!   "who is online anywhere in the tenant".
//! - `leases`: sorted set of gateways scored by when their lease runs out.
//! - `gw:<gw>`: set of the gateway's open sockets, `tenant\x1froom\x1fuser\x1fconn`;
//!   when its lease runs out they are all closed at that moment.
//! - `due`: sorted set of rooms `tenant\x1froom`, scored by the earliest moment
//!   something in the room is due (a closing socket's grace end, a typing expiry).
//!   The sweeper asks only for what is due now, so its idle cost does not grow with
//!   rooms or sockets.
//! - `since`: when history began to be recorded (set once); a span that starts
//!   earlier is answered as incomplete.
//!
//! Every change is one Lua script (`lua.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chat_domain::ids::{GatewayId, RoomId, TenantId, UserId};
use chat_domain::proto::presence::{HistorySpan, Interval, RoomHistory, UserIntervals};
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;

use crate::lua::Scripts;

/// Separates the parts of a member (cannot occur in any id).
const SEP: char = '\u{1f}';

/// Most sockets one lease-expiry script closes; a gateway with more takes several
/// calls, so Redis is never blocked for long.
const LEASE_CHUNK: usize = 1_000;

/// Most expired sockets one sweep of a room removes; a room with more stays due and
/// is swept again on the next tick.
const SWEEP_CHUNK: usize = 2_000;

/// The clock, in the unit of every stored time.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The time settings every replica must agree on.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a closed socket still counts as online.
    pub grace_ms: i64,
    /// Lease given to a gateway that registers a socket before its first lease.
    pub default_lease_ms: i64,
    /// How long ended intervals are kept.
    pub history_ms: i64,
}

/// Handle on the presence keys of one bus prefix.
#[derive(Clone)]
pub struct State {
    redis: ConnectionManager,
    /// `<p>:pr:`.
    prefix: Arc<str>,
    timing: Timing,
    scripts: Arc<Scripts>,
    /// [`LEASE_CHUNK`] and [`SWEEP_CHUNK`] (smaller in tests).
    chunks: (usize, usize),
}

/// What registering a socket found.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The user had no socket in the room (counting closing ones within the grace).
    pub first: bool,
    /// The user's previous interval ended before this socket (their grace was over,
    /// but the sweeper had not yet announced them as left).
    pub previous_ended: bool,
    /// Users online in the room, this one included, sorted.
    pub online: Vec<String>,
}

/// What a sweep of one room found.
#[derive(Debug, Default, PartialEq)]
pub struct Swept {
    /// Users whose last socket closed more than the grace ago.
    pub left: Vec<(UserId, Option<String>)>,
    /// Users whose typing expired.
    pub stopped_typing: Vec<(UserId, Option<String>)>,
}

fn users_of(members: &[String]) -> Vec<String> {
    let users: BTreeSet<&str> = members.iter().filter_map(|m| m.split(SEP).next()).collect();
    users.into_iter().map(str::to_owned).collect()
}

fn named(users: Vec<String>, names: Vec<Option<String>>) -> Vec<(UserId, Option<String>)> {
    let mut names = names.into_iter();
    users.into_iter().filter_map(|u| Some((UserId::parse(u).ok()?, names.next().flatten()))).collect()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl State {
    pub fn new(redis: ConnectionManager, bus_prefix: &str, timing: Timing) -> Self {
        Self {
            redis,
            prefix: format!("{bus_prefix}:pr:").into(),
            timing,
            scripts: Arc::new(Scripts::new()),
            chunks: (LEASE_CHUNK, SWEEP_CHUNK),
        }
    }

    /// Must match `key` in `lua.rs`.
    fn key(&self, kind: &str, tenant: &TenantId, room: &RoomId) -> String {
        format!("{}{kind}:{tenant}:{room}", self.prefix)
    }

    fn tenant_key(&self, tenant: &TenantId) -> String {
        format!("{}tenant:{tenant}", self.prefix)
    }

    fn global(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Notes that history is recorded from now on, unless it already was.
    pub async fn start_history(&self, now: i64) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        redis::cmd("SET").arg(self.global("since")).arg(now).arg("NX").query_async(&mut r).await
    }

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
        let (first, ended, live): (i64, String, Vec<String>) = self
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
            .invoke_async(&mut r)
            .await?;
        Ok(Registered { first: first == 1, previous_ended: !ended.is_empty(), online: users_of(&live) })
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
        Ok(closed == 1)
    }

    /// Renews a gateway's lease to `now + ttl_ms` (never shortens it).
    pub async fn lease(&self, gw: &GatewayId, ttl_ms: i64, now: i64) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        redis::cmd("ZADD")
            .arg(self.global("leases"))
            .arg("GT")
            .arg(now.saturating_add(ttl_ms))
            .arg(gw.as_str())
            .query_async(&mut r)
            .await
    }

    /// Closes (part of) the sockets of one gateway whose lease ran out before `now`,
    /// at the moment it ran out. `None` when no lease ran out; otherwise the gateway
    /// and how many sockets were closed (call again until `None`).
    pub async fn expire_lease(&self, now: i64) -> redis::RedisResult<Option<(String, usize)>> {
        let mut r = self.redis.clone();
        let reply: Vec<redis::Value> = self
            .scripts
            .expire_lease
            .arg(&*self.prefix)
            .arg(now)
            .arg(self.timing.grace_ms)
            .arg(self.chunks.0)
            .invoke_async(&mut r)
            .await?;
        let mut reply = reply.into_iter();
        match (reply.next(), reply.next()) {
            (Some(gw), Some(n)) => Ok(Some((redis::from_redis_value(gw)?, redis::from_redis_value(n)?))),
            _ => Ok(None),
        }
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

    /// Sets or clears typing; returns whether the state changed.
    #[allow(clippy::too_many_arguments)]
    pub async fn typing(
        &self,
        tenant: &TenantId,
        room: &RoomId,
        user: &UserId,
        name: Option<&str>,
        is_typing: bool,
        ttl_ms: i64,
        now: i64,
    ) -> redis::RedisResult<bool> {
        let mut r = self.redis.clone();
        let changed: i64 = self
            .scripts
            .typing
            .arg(&*self.prefix)
            .arg(tenant.as_str())
            .arg(room.as_str())
            .arg(user.as_str())
            .arg(name.unwrap_or_default())
            .arg(if is_typing { "1" } else { "0" })
            .arg(now)
            .arg(ttl_ms)
            .invoke_async(&mut r)
            .await?;
        Ok(changed > 0)
    }

    /// Rooms with something due at `now` (at most `limit`).
    pub async fn due_rooms(&self, now: i64, limit: usize) -> redis::RedisResult<Vec<(TenantId, RoomId)>> {
        let mut r = self.redis.clone();
        let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.global("due"))
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut r)
            .await?;
        Ok(due
            .iter()
            .filter_map(|m| m.split_once(SEP))
            .filter_map(|(t, r)| Some((TenantId::parse(t).ok()?, RoomId::parse(r).ok()?)))
            .collect())
    }

    /// Removes what expired in one room by `now`, atomically; returns who left and who
    /// stopped typing. Only the replica whose script removed an entry announces it.
    pub async fn sweep(&self, tenant: &TenantId, room: &RoomId, now: i64) -> redis::RedisResult<Swept> {
        let mut r = self.redis.clone();
        type Reply = (Vec<String>, Vec<Option<String>>, Vec<String>, Vec<Option<String>>);
        let (left, left_names, stopped, stopped_names): Reply = self
            .scripts
            .sweep
            .arg(&*self.prefix)
            .arg(tenant.as_str())
            .arg(room.as_str())
            .arg(now)
            .arg(self.timing.grace_ms)
            .arg(self.timing.history_ms)
            .arg(self.chunks.1)
            .invoke_async(&mut r)
            .await?;
        Ok(Swept { left: named(left, left_names), stopped_typing: named(stopped, stopped_names) })
    }

    /// The intervals overlapping each span, in one round trip for all of them.
    pub async fn history(&self, spans: &[HistorySpan], now: i64) -> redis::RedisResult<Vec<RoomHistory>> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(self.global("since"));
        for span in spans {
            // Intervals that ended at or after the span's start (open ones included);
            // those that began after its end are left out below.
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.key("hist", &span.tenant_id, &span.room_id))
                .arg(span.from.timestamp_millis())
                .arg("+inf")
                .arg("WITHSCORES");
        }
        let mut r = self.redis.clone();
        let mut replies = pipe.query_async::<Vec<redis::Value>>(&mut r).await?.into_iter();
        let since: Option<i64> = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))?;
        // Spans starting before this are missing intervals (pruned, or never recorded).
        let kept_from = since.map_or(i64::MAX, |s| s.max(now - self.timing.history_ms));
        let mut out = Vec::with_capacity(spans.len());
        for span in spans {
            let found: Vec<(String, String)> = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))?;
            out.push(RoomHistory {
                tenant_id: span.tenant_id.clone(),
                room_id: span.room_id.clone(),
                complete: span.from.timestamp_millis() >= kept_from,
                users: overlapping(found, span),
            });
        }
        Ok(out)
    }
}

/// Groups `(user\x1ffrom, end)` pairs by user, keeping those that began by the span's end.
fn overlapping(found: Vec<(String, String)>, span: &HistorySpan) -> Vec<UserIntervals> {
    let mut users: BTreeMap<String, Vec<Interval>> = BTreeMap::new();
    for (member, end) in found {
        let Some((user, from)) = member.split_once(SEP) else { continue };
        let Ok(from) = from.parse::<i64>() else { continue };
        let from = time(from);
        if from > span.to {
            continue;
        }
        // Scores come back as integers, or "inf" while the interval is open.
        let to = end.parse::<i64>().ok().map(time);
        users.entry(user.to_owned()).or_default().push(Interval { from, to });
    }
    users
        .into_iter()
        .filter_map(|(user, mut intervals)| {
            intervals.sort_by_key(|i| i.from);
            Some(UserIntervals { user_id: UserId::parse(user).ok()?, intervals })
        })
        .collect()
}

/// Against the real Redis (`REDIS_URL`, default localhost), each test under a prefix
/// of its own, with explicit times so nothing waits on the clock.
#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: i64 = 300;
    const LEASE: i64 = 3_000;
    const KEEP: i64 = 3_600_000;

    struct Fixture {
        state: State,
        redis: ConnectionManager,
        prefix: String,
        t: TenantId,
        r: RoomId,
        gw: GatewayId,
        /// A start time near the real clock.
        t0: i64,
    }

    impl Fixture {
        async fn new() -> anyhow::Result<Self> {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let prefix = format!("test-presence-{}-{}-{n}", std::process::id(), now_ms());
            let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
            let redis = ConnectionManager::new(redis::Client::open(url)?).await?;
            let timing = Timing { grace_ms: GRACE, default_lease_ms: LEASE, history_ms: KEEP };
            let state = State::new(redis.clone(), &prefix, timing);
            let t0 = now_ms();
            state.start_history(t0).await?;
            Ok(Self {
                state,
                redis,
                prefix,
                t: TenantId::parse("ten_a")?,
                r: RoomId::parse("room_a")?,
                gw: GatewayId::parse("gw_a")?,
                t0,
            })
        }

        async fn connect(&self, room: &RoomId, user: &str, conn: &str, at: i64) -> anyhow::Result<Registered> {
            let user = UserId::parse(user)?;
            Ok(self.state.connect(&self.t, room, &user, Some("N"), &self.gw, conn, at).await?)
        }

        async fn disconnect(&self, user: &str, conn: &str, at: i64) -> anyhow::Result<bool> {
            Ok(self.state.disconnect(&self.t, &self.r, &UserId::parse(user)?, conn, at).await?)
        }

        fn span(&self, room: &RoomId, from: i64, to: i64) -> HistorySpan {
            HistorySpan { tenant_id: self.t.clone(), room_id: room.clone(), from: time(from), to: time(to) }
        }

        /// `(user, [(from, to)])` of one room's answer, in ms.
        async fn history(&self, room: &RoomId, from: i64, to: i64, now: i64) -> anyhow::Result<Vec<Spans>> {
            let mut h = self.state.history(&[self.span(room, from, to)], now).await?;
            Ok(flat(h.pop().ok_or_else(|| anyhow::anyhow!("no answer"))?))
        }

        async fn keys(&self) -> anyhow::Result<Vec<String>> {
            let mut r = self.redis.clone();
            Ok(redis::cmd("KEYS").arg(format!("{}:pr:*", self.prefix)).query_async(&mut r).await?)
        }

        async fn cleanup(self) -> anyhow::Result<()> {
            let keys = self.keys().await?;
            if !keys.is_empty() {
                let mut r = self.redis.clone();
                redis::cmd("DEL").arg(keys).query_async::<()>(&mut r).await?;
            }
            Ok(())
        }
    }

    type Spans = (String, Vec<(i64, Option<i64>)>);

    fn flat(h: RoomHistory) -> Vec<Spans> {
        h.users
            .into_iter()
            .map(|u| {
                let spans = u.intervals.iter().map(|i| (i.from.timestamp_millis(), i.to.map(|t| t.timestamp_millis())));
                (u.user_id.to_string(), spans.collect())
            })
            .collect()
    }

    fn names(users: &[(UserId, Option<String>)]) -> Vec<&str> {
        users.iter().map(|(u, _)| u.as_str()).collect()
    }

    #[tokio::test]
    async fn an_interval_ends_when_the_last_socket_closed_once_the_grace_is_over() -> anyhow::Result<()> {
        let f = Fixture::new().await?;
        let (t0, r) = (f.t0, f.r.clone());
        let first = f.connect(&r, "alice", "c1", t0).await?;
        assert!(first.first && !first.previous_ended);
        assert_eq!(first.online, vec!["alice"]);
        assert!(!f.connect(&r, "alice", "c2", t0 + 10).await?.first);
        assert!(f.disconnect("alice", "c1", t0 + 100).await?);
        assert!(!f.disconnect("alice", "c1", t0 + 150).await?, "a second disconnect changes nothing");
        assert!(f.disconnect("alice", "c2", t0 + 200).await?);
        // Within the grace of the last close: still online, interval still open.
        assert_eq!(f.state.online(&f.t, &r, t0 + 200 + GRACE - 1).await?, vec!["alice"]);
        assert_eq!(f.state.sweep(&f.t, &r, t0 + 200 + GRACE - 1).await?, Swept::default());
        assert_eq!(f.history(&r, t0, t0 + 1, t0 + 201).await?, vec![("alice".into(), vec![(t0, None)])]);
        // The grace is over: she leaves, and the interval ends when her last socket closed.
        let swept = f.state.sweep(&f.t, &r, t0 + 200 + GRACE).await?;
        assert_eq!(swept.left, vec![(UserId::parse("alice")?, Some("N".to_owned()))]);
        assert!(f.state.online(&f.t, &r, t0 + 200 + GRACE).await?.is_empty());
        assert!(f.state.tenant_online(&f.t, t0 + 200 + GRACE).await?.is_empty());
        let now = t0 + 200 + GRACE;
        assert_eq!(f.history(&r, t0, now, now).await?, vec![("alice".into(), vec![(t0, Some(t0 + 200))])]);
        // Nothing is left but the history (and the lease of the gateway).
        let mut left = f.keys().await?;
        left.sort();
        let expect = ["hist:ten_a:room_a", "leases", "since"].map(|k| format!("{}:pr:{k}", f.prefix));
        assert_eq!(left, expect);
        f.cleanup().await
    }

    #[tokio::test]
    async fn a_reconnect_within_the_grace_continues_the_interval() -> anyhow::Result<()> {
        let f = Fixture::new().await?;
        let (t0, r) = (f.t0, f.r.clone());
        f.connect(&r, "alice", "c1", t0).await?;
        f.disconnect("alice", "c1", t0 + 100).await?;
        let again = f.connect(&r, "alice", "c2", t0 + 100 + GRACE - 1).await?;
        assert!(!again.first && !again.previous_ended);
        // The first socket's grace ends: she still has one open, so nobody leaves.
        assert!(f.state.sweep(&f.t, &r, t0 + 100 + GRACE + 5).await?.left.is_empty());
        f.disconnect("alice", "c2", t0 + 1_000).await?;
        assert_eq!(names(&f.state.sweep(&f.t, &r, t0 + 1_000 + GRACE).await?.left), ["alice"]);
        let now = t0 + 2_000;
        assert_eq!(f.history(&r, t0, now, now).await?, vec![("alice".into(), vec![(t0, Some(t0 + 1_000))])]);
        f.cleanup().await
    }

    #[tokio::test]
    async fn a_reconnect_after_the_grace_starts_a_new_interval_even_before_a_sweep() -> anyhow::Result<()> {
        let f = Fixture::new().await?;
        let (t0, r) = (f.t0, f.r.clone());
        f.connect(&r, "alice", "c1", t0).await?;
        f.disconnect("alice", "c1", t0 + 100).await?;
        let back = f.connect(&r, "alice", "c2", t0 + 100 + GRACE).await?;
        assert!(back.first && back.previous_ended);
        // The late sweep removes the old socket without announcing her as left again.
        assert!(f.state.sweep(&f.t, &r, t0 + 100 + GRACE + 1).await?.left.is_empty());
        assert_eq!(f.state.online(&f.t, &r, t0 + 1_000).await?, vec!["alice"]);
        let now = t0 + 1_000;
        let expect = vec![(t0, Some(t0 + 100)), (t0 + 100 + GRACE, None)];
        assert_eq!(f.history(&r, t0, now, now).await?, vec![("alice".into(), expect)]);
        f.cleanup().await
    }

    #[tokio::test]
    async fn a_lease_that_runs_out_closes_its_sockets_at_its_end() -> anyhow::Result<()> {
        let f = Fixture::new().await?;
        let t0 = f.t0;
        let (r1, r2) = (f.r.clone(), RoomId::parse("room_b")?);
        f.state.lease(&f.gw, 1_000, t0).await?;
        f.state.lease(&f.gw, 10, t0).await?; // never shortens
        f.connect(&r1, "alice", "c1", t0 + 1).await?;
        f.connect(&r1, "bob", "c2", t0 + 2).await?;
        f.connect(&r2, "alice", "c3", t0 + 3).await?;
        // Bob is typing when the gateway dies.
        let bob = UserId::parse("bob")?;
        f.state.typing(&f.t, &r1, &bob, None, true, 5_000, t0 + 4).await?;
        // A socket on another gateway, whose lease lives on.
        let other = GatewayId::parse("gw_b")?;
        f.state.connect(&f.t, &r1, &UserId::parse("carol")?, None, &other, "c4", t0 + 5).await?;
        f.state.lease(&other, 60_000, t0 + 5).await?;

        assert_eq!(f.state.expire_lease(t0 + 999).await?, None);
        assert!(f.state.due_rooms(t0 + 999, 10).await?.is_empty(), "nothing is due");
        assert_eq!(f.state.expire_lease(t0 + 1_500).await?, Some(("gw_a".to_owned(), 3)));
        assert_eq!(f.state.expire_lease(t0 + 1_500).await?, None, "the lease is gone");
        // Closed at t0 + 1000, so at t0 + 1500 their grace is over.
        let now = t0 + 1_500;
        assert_eq!(f.state.online(&f.t, &r1, now).await?, vec!["carol"]);
        assert_eq!(f.state.tenant_online(&f.t, now).await?, vec!["carol"]);
        let mut due = f.state.due_rooms(now, 10).await?;
        due.sort();
        assert_eq!(due, vec![(f.t.clone(), r1.clone()), (f.t.clone(), r2.clone())]);
        let swept = f.state.sweep(&f.t, &r1, now).await?;
        assert_eq!(names(&swept.left), ["alice", "bob"]);
        assert_eq!(names(&swept.stopped_typing), ["bob"]);
        assert_eq!(names(&f.state.sweep(&f.t, &r2, now).await?.left), ["alice"]);
        assert!(f.state.due_rooms(now, 10).await?.is_empty());
        let h = f.history(&r1, t0, now, now).await?;
        let expect: Vec<Spans> = vec![
            ("alice".into(), vec![(t0 + 1, Some(t0 + 1_000))]),
            ("bob".into(), vec![(t0 + 2, Some(t0 + 1_000))]),
            ("carol".into(), vec![(t0 + 5, None)]),
        ];
        assert_eq!(h, expect);
        f.cleanup().await
    }

    #[tokio::test]
    async fn a_big_gateway_is_closed_and_swept_in_chunks() -> anyhow::Result<()> {
        let mut f = Fixture::new().await?;
        let (lease_chunk, sweep_chunk) = (10, 20);
        f.state.chunks = (lease_chunk, sweep_chunk);
        let (t0, r) = (f.t0, f.r.clone());
        let n = lease_chunk * 2 + 5;
        f.state.lease(&f.gw, 1_000, t0).await?;
        for i in 0..n {
            f.connect(&r, &format!("u{i}"), &format!("c{i}"), t0 + 1).await?;
        }
        let now = t0 + 1_000 + GRACE;
        let mut closed = Vec::new();
        while let Some((_, k)) = f.state.expire_lease(now).await? {
            closed.push(k);
        }
        assert_eq!(closed, [lease_chunk, lease_chunk, 5]);
        let mut left = Vec::new();
        while !f.state.due_rooms(now, 10).await?.is_empty() {
            left.push(f.state.sweep(&f.t, &r, now).await?.left.len());
        }
        assert_eq!(left, [sweep_chunk, n - sweep_chunk]);
        assert!(f.state.online(&f.t, &r, now).await?.is_empty());
        assert!(f.state.tenant_online(&f.t, now).await?.is_empty());
        f.cleanup().await
    }

    #[tokio::test]
    async fn a_socket_of_a_gateway_without_a_lease_gets_the_default_one() -> anyhow::Result<()> {
        let f = Fixture::new().await?;
        let (t0, r) = (f.t0, f.r.clone());
        f.connect(&r, "ghost", "c1", t0).await?;
        assert_eq!(f.state.expire_lease(t0 + LEASE - 1).await?, None);
        assert_eq!(f.state.expire_lease(t0 + LEASE).await?, Some(("gw_a".to_owned(), 1)));
        assert_eq!(names(&f.state.sweep(&f.t, &r, t0 + LEASE + GRACE).await?.left), ["ghost"]);
        f.cleanup().await
    }

    #[tokio::test]
    async fn typing_expires_and_is_cleared_when_the_connection_dies() -> anyhow::Result<()> {
        let f = Fixture::new().await?;
        let (t0, r) = (f.t0, f.r.clone());
        let alice = UserId::parse("alice")?;
        assert!(f.state.typing(&f.t, &r, &alice, Some("A"), true, 1_000, t0).await?);
        assert!(f.state.due_rooms(t0 + 999, 10).await?.is_empty());
        assert_eq!(f.state.due_rooms(t0 + 1_000, 10).await?.len(), 1);
        let swept = f.state.sweep(&f.t, &r, t0 + 1_000).await?;
        assert_eq!(swept.stopped_typing, vec![(alice.clone(), Some("A".to_owned()))]);
        assert!(f.state.due_rooms(t0 + 10_000, 10).await?.is_empty(), "the room left the queue");
        assert!(!f.state.typing(&f.t, &r, &alice, None, false, 1_000, t0 + 1_001).await?, "no change");
        // A typer whose socket closes stops at once, not after the typing time.
        f.connect(&r, "alice", "c1", t0 + 2_000).await?;
        f.state.typing(&f.t, &r, &alice, None, true, 5_000, t0 + 2_001).await?;
        f.disconnect("alice", "c1", t0 + 2_002).await?;
        assert_eq!(names(&f.state.sweep(&f.t, &r, t0 + 2_002).await?.stopped_typing), ["alice"]);
        f.cleanup().await
    }

    #[tokio::test]
    async fn history_answers_many_spans_with_what_overlaps_each() -> anyhow::Result<()> {
        let f = Fixture::new().await?;
        let t0 = f.t0;
        let (r1, r2, r3) = (f.r.clone(), RoomId::parse("room_b")?, RoomId::parse("room_c")?);
        f.connect(&r1, "alice", "c1", t0 + 1_000).await?;
        f.disconnect("alice", "c1", t0 + 2_000).await?;
        f.state.sweep(&f.t, &r1, t0 + 2_000 + GRACE).await?;
        f.connect(&r2, "bob", "c2", t0 + 1_500).await?;
        let now = t0 + 5_000;
        let spans = [
            f.span(&r1, t0 + 500, t0 + 900),      // before the interval
            f.span(&r1, t0 + 900, t0 + 1_000),    // touches its start
            f.span(&r1, t0 + 1_500, t0 + 1_600),  // inside it
            f.span(&r1, t0 + 2_000, t0 + 4_000),  // touches its end
            f.span(&r1, t0 + 2_001, t0 + 4_000),  // after it
            f.span(&r2, t0 + 4_000, t0 + 4_500),  // an open interval
            f.span(&r3, t0 + 1_000, t0 + 4_000),  // a room nobody was in
            f.span(&r1, t0 - 10_000, t0 + 4_000), // starts before the history began
        ];
        let answers = f.state.history(&spans, now).await?;
        assert_eq!(answers.len(), spans.len());
        for (a, s) in answers.iter().zip(&spans) {
            assert_eq!((&a.tenant_id, &a.room_id), (&s.tenant_id, &s.room_id));
        }
        let alice = || vec![("alice".to_owned(), vec![(t0 + 1_000, Some(t0 + 2_000))])];
        let got: Vec<_> = answers.iter().map(|a| (a.complete, flat(a.clone()))).collect();
        let expect = vec![
            (true, vec![]),
            (true, alice()),
            (true, alice()),
            (true, alice()),
            (true, vec![]),
            (true, vec![("bob".to_owned(), vec![(t0 + 1_500, None)])]),
            (true, vec![]),
            (false, alice()),
        ];
        assert_eq!(got, expect);
        f.cleanup().await
    }

    #[tokio::test]
    async fn old_intervals_are_pruned_on_write_and_spans_before_the_kept_history_are_incomplete() -> anyhow::Result<()>
    {
        let f = Fixture::new().await?;
        let (t0, r) = (f.t0, f.r.clone());
        f.connect(&r, "alice", "c1", t0).await?;
        f.disconnect("alice", "c1", t0 + 100).await?;
        f.state.sweep(&f.t, &r, t0 + 100 + GRACE).await?;
        // Long after: bob's arrival prunes alice's interval, which ended too long ago.
        let later = t0 + 100 + KEEP + 1;
        f.connect(&r, "bob", "c2", later).await?;
        let h = f.state.history(&[f.span(&r, t0, later), f.span(&r, later - KEEP, later)], later).await?;
        assert_eq!(h.iter().map(|a| a.complete).collect::<Vec<_>>(), [false, true]);
        assert_eq!(flat(h[0].clone()), vec![("bob".into(), vec![(later, None)])]);
        f.cleanup().await
    }

    #[tokio::test]
    async fn a_room_whose_history_is_all_closed_expires_on_its_own() -> anyhow::Result<()> {
        let f = Fixture::new().await?;
        let (t0, r) = (f.t0, f.r.clone());
        f.connect(&r, "alice", "c1", t0).await?;
        let mut redis = f.redis.clone();
        let hist = f.state.key("hist", &f.t, &r);
        let ttl: i64 = redis::cmd("PTTL").arg(&hist).query_async(&mut redis).await?;
        assert_eq!(ttl, -1, "an open interval keeps the history");
        f.disconnect("alice", "c1", t0 + 100).await?;
        f.state.sweep(&f.t, &r, t0 + 100 + GRACE).await?;
        let ttl: i64 = redis::cmd("PTTL").arg(&hist).query_async(&mut redis).await?;
        assert!(ttl > 0 && ttl <= KEEP, "closed history expires after the history time, got {ttl}");
        f.cleanup().await
    }
}
