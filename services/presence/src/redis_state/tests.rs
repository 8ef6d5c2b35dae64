//! Against the real Redis (`REDIS_URL`, default localhost), each test under a prefix
//! of its own, with explicit times so nothing waits on the clock.

use chat_domain::ids::{GatewayId, RoomId, TenantId, UserId};
use chat_domain::proto::presence::{HistorySpan, RoomHistory};
use chat_redis::Redis;

use crate::redis_state::handle::{State, Timing, now_ms};
use crate::redis_state::history::time;
use crate::redis_state::sockets::{Announced, Registered};
use crate::redis_state::sweep::Swept;

const GRACE: i64 = 300;
const LEASE: i64 = 3_000;
const KEEP: i64 = 3_600_000;

struct Fixture {
    state: State,
    redis: Redis,
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
        let redis = chat_redis::connect(&url, "presence-test").await?;
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
    assert_eq!(f.state.sweep(&f.t, &r, t0 + 200 + GRACE - 1).await?, Swept { users: 1, ..Swept::default() });
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
    assert!(!f.state.lease(&f.gw, 1_000, t0).await?, "a first lease is one presence did not know");
    assert!(f.state.lease(&f.gw, 10, t0).await?, "then it knows it"); // never shortens
    f.connect(&r1, "alice", "c1", t0 + 1).await?;
    f.connect(&r1, "bob", "c2", t0 + 2).await?;
    f.connect(&r2, "alice", "c3", t0 + 3).await?;
    // Bob is typing when the gateway dies.
    let bob = UserId::parse("bob")?;
    f.state.typing(&f.t, &r1, &bob, None, true, 5_000, t0 + 4).await?;
    // A socket on another gateway, whose lease lives on.
    let other = GatewayId::parse("gw_b")?;
    f.state.connect(&f.t, &r1, &UserId::parse("carol")?, None, &other, "c4", t0 + 5).await?;
    assert!(f.state.lease(&other, 60_000, t0 + 5).await?, "a socket's connect leased its gateway");
    assert_eq!(f.state.leased_gateways().await?, vec!["gw_a".to_owned(), "gw_b".to_owned()]);

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
async fn old_intervals_are_pruned_on_write_and_spans_before_the_kept_history_are_incomplete() -> anyhow::Result<()> {
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

/// After Redis was away, every lease is given a whole lease more before any expires:
/// a gateway whose renewals could not land keeps its sockets (the failover that lost
/// them in the cluster test), and a lease already longer is not shortened.
#[tokio::test]
async fn leases_extended_after_an_outage_keep_their_sockets() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let t0 = f.t0;
    f.state.lease(&f.gw, 1_000, t0).await?;
    f.connect(&f.r, "alice", "c1", t0 + 1).await?;
    let long = GatewayId::parse("gw_long")?;
    f.state.lease(&long, 60_000, t0).await?;
    // Redis comes back at t0 + 2000, after the lease of gw_a ran out unrenewed.
    assert_eq!(f.state.extend_leases(t0 + 2_000 + LEASE).await?, 1, "only the lease running out before moves");
    assert_eq!(f.state.expire_lease(t0 + 2_000 + LEASE - 1).await?, None, "nobody's lease ran out");
    assert_eq!(f.state.online(&f.t, &f.r, t0 + 2_000).await?, vec!["alice"]);
    // The gateway renews as before; one that does not is expired a lease later.
    assert_eq!(f.state.expire_lease(t0 + 2_000 + LEASE + 1).await?, Some(("gw_a".to_owned(), 1)));
    assert_eq!(f.state.expire_lease(t0 + 59_000).await?, None, "the longer lease was not shortened");
    f.cleanup().await
}

/// A big room's `connect` answers with the count, not the list: n sockets joining cost
/// O(n) bytes in all, not O(n²). A room at the threshold still gets its whole list.
#[tokio::test]
async fn a_big_rooms_connect_counts_its_users_instead_of_listing_them() -> anyhow::Result<()> {
    let mut f = Fixture::new().await?;
    f.state = f.state.clone().with_big_room(3);
    let (t0, r) = (f.t0, f.r.clone());
    let mut found = Vec::new();
    for (i, u) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        found.push(f.connect(&r, u, &format!("c{i}"), t0 + i as i64).await?);
    }
    // A second socket of a user already there counts them once.
    let again = f.connect(&r, "e", "c9", t0 + 9).await?;
    assert_eq!(found.iter().map(|g| g.users).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(found[2].online, ["a", "b", "c"]);
    assert!(!f.state.is_big(found[2].users) && f.state.is_big(found[3].users));
    assert!(found[3].online.is_empty() && found[4].online.is_empty() && again.online.is_empty());
    assert_eq!((again.users, again.first), (5, false));
    // The whole list is still read on demand.
    assert_eq!(f.state.online(&f.t, &r, t0 + 10).await?, ["a", "b", "c", "d", "e"]);
    // A sweep says how many users remain, for the same decision about departures.
    f.disconnect("a", "c0", t0 + 20).await?;
    let swept = f.state.sweep(&f.t, &r, t0 + 20 + GRACE).await?;
    assert_eq!((names(&swept.left), swept.users), (vec!["a"], 4));
    f.cleanup().await
}

/// Sockets announced again in one call are registered as one `connect` each would be.
#[tokio::test]
async fn many_sockets_are_registered_in_one_call() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let (t0, r) = (f.t0, f.r.clone());
    let other = RoomId::parse("room_b")?;
    let (alice, bob) = (UserId::parse("alice")?, UserId::parse("bob")?);
    let socket = |room, user, conn| Announced { tenant: &f.t, room, user, name: Some("N"), conn };
    let sockets =
        [socket(&r, &alice, "c1"), socket(&r, &alice, "c2"), socket(&r, &bob, "c3"), socket(&other, &bob, "c4")];
    let found = f.state.connect_many(&f.gw, &sockets, t0).await?;
    assert_eq!(
        found.iter().map(|g| (g.first, g.users)).collect::<Vec<_>>(),
        [(true, 1), (false, 1), (true, 2), (true, 1)]
    );
    assert!(f.state.connect_many(&f.gw, &[], t0).await?.is_empty());
    assert_eq!(f.state.online(&f.t, &r, t0).await?, ["alice", "bob"]);
    assert_eq!(f.state.online(&f.t, &other, t0).await?, ["bob"]);
    // They are the gateway's like any other: its lease running out closes them all.
    assert_eq!(f.state.expire_lease(t0 + LEASE).await?, Some(("gw_a".to_owned(), 4)));
    f.cleanup().await
}
