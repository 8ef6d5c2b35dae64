//! Redis connections that follow a failover, for the services that keep shared state
//! in Redis (the gateway's rate limits, presence).
//!
//! [`connect`] takes the `REDIS_URL` setting in one of two forms and returns a
//! [`Redis`]: a cheap clone that every task of a service shares and that runs
//! commands, scripts and pipelines like redis-rs' `ConnectionManager` does (it is a
//! `redis::aio::ConnectionLike`).
//!
//! - `redis://[user:password@]host:port[/db]` (also `rediss://`, `unix://`): one
//!   server, through `ConnectionManager`, which reconnects to it by itself.
//! - `redis+sentinel://[user:password@]host:port[,host:port…]/master[/db]` with
//!   optional `?sentinel_username=…&sentinel_password=…`: the master that Redis
//!   Sentinel names `master`. The hosts are Sentinels (port 26379 when left out); the
//!   credentials before `@` and the database are the data nodes'. This follows the
//!   Sentinel client protocol (redis.io, "Sentinel client spec"): ask the Sentinels
//!   in turn for the master's address, connect, and check with `ROLE` that the node
//!   really is the master. When a command fails in a way a failover explains (the
//!   connection dropped or was refused, a timeout, `READONLY` from a demoted master),
//!   and in any case every [`POLL_EVERY`], the Sentinels are asked again; when they
//!   name another master, new commands go to it. The failover itself is Sentinel's
//!   (quorum, promotion, reconfiguring the old master as a replica): nothing here
//!   decides which node is the master.
//!
//! A command that fails while the master moves fails (as with `ConnectionManager`);
//! the callers here already treat Redis errors as transient (the rate limiter lets
//! requests through, presence answers an error and the gateway retries or reports).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// How often a Sentinel-backed handle asks the Sentinels where the master is, besides
/// asking after a failed command: a switchover that leaves the old master up as a
/// replica answers reads without an error, so only asking finds it.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Fewest time between two lookups triggered by failing commands (a burst of
/// failures during a failover asks once, not once per command).
const REFRESH_MIN_GAP: Duration = Duration::from_millis(100);

/// Bounds on one connection attempt to a Sentinel or a data node: a node that does
/// not answer must not hold up finding the one that does.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest wait for a data node's reply before the command fails and the Sentinels
/// are asked again (a master that hangs rather than dies).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The Sentinel port when an address gives none.
pub const SENTINEL_PORT: u16 = 26379;

static MASTER_SWITCHES: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    let c = prometheus::IntCounter::new(
        "chat_redis_master_switches_total",
        "Times this process moved its Redis connection to another master named by Sentinel",
    );
    match c {
        Ok(c) => {
            let _ = prometheus::register(Box::new(c.clone()));
            c
        }
        Err(e) => panic!("metric definition is invalid: {e}"),
    }
});

/// What a `REDIS_URL` names.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// One server, as redis-rs takes its URL.
    Server(String),
    /// A master found through Sentinels.
    Sentinel(SentinelTarget),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Server(url) => write!(f, "Server({})", redact(url)),
            Self::Sentinel(s) => s.fmt(f),
        }
    }
}

/// The parts of a `redis+sentinel://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelTarget {
    /// The Sentinels, in the order given (asked in turn, the last one that answered first).
    pub sentinels: Vec<(String, u16)>,
    /// The master's name in the Sentinels' configuration.
    pub master: String,
    pub db: i64,
    /// `user:password` of the data nodes, as written in the URL (percent-encoded).
    userinfo: Option<String>,
    /// `user:password` of the Sentinels, percent-encoded.
    sentinel_userinfo: Option<String>,
}

impl std::fmt::Debug for SentinelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelTarget")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("auth", &self.userinfo.is_some())
            .field("sentinel_auth", &self.sentinel_userinfo.is_some())
            .finish()
    }
}

impl SentinelTarget {
    /// The URL of the data node at `host:port`, with the target's credentials and db.
    fn node_url(&self, host: &str, port: u16) -> String {
        let auth = self.userinfo.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        format!("redis://{auth}{}:{port}/{}", bracket(host), self.db)
    }

    fn sentinel_url(&self, host: &str, port: u16) -> String {
        let auth = self.sentinel_userinfo.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        format!("redis://{auth}{}:{port}", bracket(host))
    }
}

/// IPv6 literals go in brackets in a URL.
fn bracket(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_owned() }
}

/// A URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Reads a `REDIS_URL` setting (see the crate documentation for the two forms). An
/// error names what is wrong with it.
pub fn parse(url: &str) -> anyhow::Result<Target> {
    let url = url.trim();
    let Some(rest) = url.strip_prefix("redis+sentinel://") else {
        // One server: redis-rs decides what it accepts, and says why it does not.
        redis::Client::open(url).map_err(|e| anyhow!("REDIS_URL {}: {e}", redact(url)))?;
        return Ok(Target::Server(url.to_owned()));
    };
    let shown = redact(url);
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    if userinfo.is_some_and(str::is_empty) {
        bail!("REDIS_URL {shown}: nothing before '@' (give user:password, or leave the '@' out)");
    }
    let mut sentinels = Vec::new();
    for (i, entry) in hosts.split(',').enumerate() {
        sentinels.push(host_port(entry).map_err(|e| anyhow!("REDIS_URL {shown}: Sentinel {}: {e}", i + 1))?);
    }
    let mut parts = path.split('/');
    let master = parts.next().unwrap_or_default();
    if master.is_empty() {
        bail!("REDIS_URL {shown}: no master name (redis+sentinel://host:26379,…/<master name>[/<db>])");
    }
    if master.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("REDIS_URL {shown}: the master name {master:?} has spaces or control characters");
    }
    let db = match parts.next() {
        None | Some("") => 0,
        Some(d) => d
            .parse::<i64>()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| anyhow!("REDIS_URL {shown}: the database {d:?} is not a number from 0 up"))?,
    };
    if let Some(extra) = parts.next() {
        bail!("REDIS_URL {shown}: unexpected {extra:?} after the database (…/<master name>[/<db>])");
    }
    let (mut s_user, mut s_pass) = (None, None);
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sentinel_username", v)) => s_user = Some(v.to_owned()),
            Some(("sentinel_password", v)) => s_pass = Some(v.to_owned()),
            _ => bail!(
                "REDIS_URL {shown}: unknown parameter {:?} (known: sentinel_username, sentinel_password)",
                pair.split('=').next().unwrap_or(pair)
            ),
        }
    }
    let sentinel_userinfo = match (s_user, s_pass) {
        (None, None) => None,
        (u, p) => Some(format!("{}:{}", u.unwrap_or_default(), p.unwrap_or_default())),
    };
    Ok(Target::Sentinel(SentinelTarget {
        sentinels,
        master: master.to_owned(),
        db,
        userinfo: userinfo.map(str::to_owned),
        sentinel_userinfo,
    }))
}

/// `host[:port]` or `[v6]:port`; the port defaults to the Sentinel port.
fn host_port(entry: &str) -> anyhow::Result<(String, u16)> {
    let entry = entry.trim();
    if entry.is_empty() {
        bail!("empty (separate Sentinels with single commas)");
    }
    let (host, port) = if let Some(v6) = entry.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| anyhow!("{entry:?}: no ']' after an IPv6 address"))?;
        (host, after.strip_prefix(':'))
    } else {
        match entry.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (entry, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        bail!("{entry:?} is not host:port");
    }
    let port = match port {
        None => SENTINEL_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| anyhow!("{entry:?}: bad port {p:?}"))?,
    };
    Ok((host.to_owned(), port))
}

/// A Redis connection shared by every task of a service (see the crate documentation).
#[derive(Clone)]
pub struct Redis(Handle);

#[derive(Clone)]
enum Handle {
    Server { conn: ConnectionManager, db: i64 },
    Sentinel(Arc<Follower>),
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Handle::Server { .. } => f.write_str("Redis(server)"),
            Handle::Sentinel(s) => {
                let (host, port) = s.current().addr.clone();
                write!(f, "Redis(master {} at {host}:{port})", s.target.master)
            }
        }
    }
}

/// Connects to what `url` names (see [`parse`]). `name` labels the logs of this
/// connection (the service's name). Fails when the server, or no Sentinel, answers
/// within a few seconds, or the Sentinels know no such master.
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Redis> {
    match parse(url)? {
        Target::Server(url) => {
            let client = redis::Client::open(url.as_str()).with_context(|| format!("REDIS_URL {}", redact(&url)))?;
            let db = client.get_connection_info().redis_settings().db();
            let conn = ConnectionManager::new(client)
                .await
                .with_context(|| format!("connecting to Redis at {}", redact(&url)))?;
            Ok(Redis(Handle::Server { conn, db }))
        }
        Target::Sentinel(target) => {
            let follower = Follower::start(target, name).await?;
            Ok(Redis(Handle::Sentinel(follower)))
        }
    }
}

impl Redis {
    /// Where commands go now: the server, or the master the Sentinels named last.
    pub fn current_addr(&self) -> Option<(String, u16)> {
        match &self.0 {
            Handle::Server { .. } => None,
            Handle::Sentinel(f) => Some(f.current().addr.clone()),
        }
    }

    /// Asks the Sentinels where the master is now and moves there if it moved (what
    /// happens by itself every [`POLL_EVERY`] and after a failed command). Returns
    /// whether it moved. A single server has nowhere to move.
    pub async fn follow_now(&self) -> anyhow::Result<bool> {
        match &self.0 {
            Handle::Server { .. } => Ok(false),
            Handle::Sentinel(f) => f.refresh().await,
        }
    }

    fn conn(&self) -> (ConnectionManager, Option<Arc<Follower>>) {
        match &self.0 {
            Handle::Server { conn, .. } => (conn.clone(), None),
            Handle::Sentinel(f) => (f.current().conn.clone(), Some(f.clone())),
        }
    }
}

/// Whether an error is one a failover explains: the connection went away or was
/// refused, the node took too long, or it is no longer the master.
fn master_may_have_moved(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.code() == Some("READONLY")
        || e.code() == Some("MASTERDOWN")
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (mut conn, follower) = self.conn();
            let result = conn.send_packed_command(cmd).await;
            if let (Err(e), Some(f)) = (&result, follower)
                && master_may_have_moved(e)
            {
                f.refresh_soon();
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (mut conn, follower) = self.conn();
            let result = conn.send_packed_commands(pipeline, offset, count).await;
            if let (Err(e), Some(f)) = (&result, follower)
                && master_may_have_moved(e)
            {
                f.refresh_soon();
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Handle::Server { db, .. } => *db,
            Handle::Sentinel(f) => f.target.db,
        }
    }
}

/// The master a Sentinel-backed handle talks to now.
struct Node {
    addr: (String, u16),
    conn: ConnectionManager,
}

/// Follows the master the Sentinels name.
struct Follower {
    target: SentinelTarget,
    name: String,
    current: RwLock<Arc<Node>>,
    /// A lookup is running (one at a time).
    refreshing: AtomicBool,
    /// When the last lookup that a failed command asked for started.
    last_refresh: std::sync::Mutex<Option<Instant>>,
    /// The Sentinel that answered last, asked first next time.
    preferred: AtomicUsize,
}

impl Follower {
    async fn start(target: SentinelTarget, name: &str) -> anyhow::Result<Arc<Self>> {
        let preferred = AtomicUsize::new(0);
        let addr = ask_sentinels(&target, &preferred).await?;
        let conn = open_master(&target, &addr).await?;
        tracing::info!(service = name, master = %target.master, host = %addr.0, port = addr.1, "Redis master found through Sentinel");
        let follower = Arc::new(Self {
            target,
            name: name.to_owned(),
            current: RwLock::new(Arc::new(Node { addr, conn })),
            refreshing: AtomicBool::new(false),
            last_refresh: std::sync::Mutex::new(None),
            preferred,
        });
        tokio::spawn(poll(Arc::downgrade(&follower)));
        Ok(follower)
    }

    fn current(&self) -> Arc<Node> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// A lookup in the background, unless one ran very recently.
    fn refresh_soon(self: &Arc<Self>) {
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < REFRESH_MIN_GAP) {
                return;
            }
            *last = Some(Instant::now());
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.refresh().await {
                tracing::warn!(service = %this.name, error = %format!("{e:#}"), "looking the Redis master up failed");
            }
        });
    }

    /// Asks the Sentinels where the master is; moves there when it is elsewhere.
    async fn refresh(&self) -> anyhow::Result<bool> {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let result = self.look_up_and_move().await;
        self.refreshing.store(false, Ordering::Release);
        result
    }

    async fn look_up_and_move(&self) -> anyhow::Result<bool> {
        let addr = ask_sentinels(&self.target, &self.preferred).await?;
        let old = self.current();
        if addr == old.addr {
            return Ok(false);
        }
        let conn = open_master(&self.target, &addr).await?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Arc::new(Node { addr: addr.clone(), conn });
        MASTER_SWITCHES.inc();
        tracing::warn!(
            service = %self.name,
            master = %self.target.master,
            from = %format!("{}:{}", old.addr.0, old.addr.1),
            to = %format!("{}:{}", addr.0, addr.1),
            "Redis master moved (Sentinel failover); following it"
        );
        Ok(true)
    }
}

/// Asks the Sentinels every [`POLL_EVERY`] while a handle exists.
async fn poll(follower: Weak<Follower>) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(f) = follower.upgrade() else { return };
        if let Err(e) = f.refresh().await {
            tracing::debug!(service = %f.name, error = %format!("{e:#}"), "asking the Sentinels failed");
        }
    }
}

/// The master's address from the first Sentinel that knows it, starting with the one
/// that answered last. The error lists what each Sentinel said.
async fn ask_sentinels(target: &SentinelTarget, preferred: &AtomicUsize) -> anyhow::Result<(String, u16)> {
    let n = target.sentinels.len();
    let first = preferred.load(Ordering::Relaxed) % n.max(1);
    let mut failures = Vec::new();
    for k in 0..n {
        let i = (first + k) % n;
        let (host, port) = &target.sentinels[i];
        match ask_sentinel(target, host, *port).await {
            Ok(addr) => {
                preferred.store(i, Ordering::Relaxed);
                return Ok(addr);
            }
            Err(e) => failures.push(format!("{host}:{port}: {e:#}")),
        }
    }
    bail!("no Sentinel named a master {:?}: {}", target.master, failures.join("; "))
}

async fn ask_sentinel(target: &SentinelTarget, host: &str, port: u16) -> anyhow::Result<(String, u16)> {
    let client = redis::Client::open(target.sentinel_url(host, port))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONNECT_TIMEOUT));
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
    let addr: Option<(String, String)> =
        redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(&target.master).query_async(&mut conn).await?;
    let (h, p) = addr.ok_or_else(|| anyhow!("does not monitor a master named {:?}", target.master))?;
    let p = p.parse::<u16>().map_err(|_| anyhow!("answered a bad port {p:?}"))?;
    Ok((h, p))
}

/// Connects to the node the Sentinels named and checks with `ROLE` that it is the
/// master (right after a failover a Sentinel may still name the old one).
async fn open_master(target: &SentinelTarget, addr: &(String, u16)) -> anyhow::Result<ConnectionManager> {
    let url = target.node_url(&addr.0, addr.1);
    let client = redis::Client::open(url.as_str()).with_context(|| redact(&url))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1);
    let mut conn = ConnectionManager::new_with_config(client, config)
        .await
        .with_context(|| format!("connecting to the Redis master at {}:{}", addr.0, addr.1))?;
    let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
    match role.first() {
        Some(Value::BulkString(b)) if b == b"master" => Ok(conn),
        Some(Value::SimpleString(s)) if s == "master" => Ok(conn),
        other => bail!("{}:{} is not a master (ROLE says {other:?})", addr.0, addr.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelTarget {
        match parse(url) {
            Ok(Target::Sentinel(s)) => s,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn one_server_urls_are_left_to_redis_rs() -> anyhow::Result<()> {
        assert_eq!(parse("redis://127.0.0.1:6379")?, Target::Server("redis://127.0.0.1:6379".into()));
        assert!(parse("http://127.0.0.1:6379").is_err());
        Ok(())
    }

    #[test]
    fn sentinel_urls_name_sentinels_master_and_db() {
        let s = sentinel("redis+sentinel://h1:26379,h2:26380,[::1]:26381,h4/mymaster/3");
        assert_eq!(
            s.sentinels,
            vec![("h1".into(), 26379), ("h2".into(), 26380), ("::1".into(), 26381), ("h4".into(), SENTINEL_PORT)]
        );
        assert_eq!((s.master.as_str(), s.db), ("mymaster", 3));
        assert_eq!(s.node_url("10.0.0.5", 6380), "redis://10.0.0.5:6380/3");
        assert_eq!(s.node_url("::1", 6380), "redis://[::1]:6380/3");

        let s = sentinel("redis+sentinel://:pw@h1:26379/m?sentinel_password=spw");
        assert_eq!(s.node_url("h", 1), "redis://:pw@h:1/0");
        assert_eq!(s.sentinel_url("h1", 26379), "redis://:spw@h1:26379");
        assert!(!format!("{s:?}").contains("pw"), "credentials stay out of Debug");
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong() {
        for (url, says) in [
            ("redis+sentinel://h1:26379", "no master name"),
            ("redis+sentinel://h1:26379/", "no master name"),
            ("redis+sentinel://h1:26379,,h2/m", "Sentinel 2: empty"),
            ("redis+sentinel://h1:0/m", "bad port"),
            ("redis+sentinel://h1:x/m", "bad port"),
            ("redis+sentinel://h1/m/-1", "database"),
            ("redis+sentinel://h1/m/0/x", "unexpected"),
            ("redis+sentinel://h1/m?password=x", "unknown parameter \"password\""),
            ("redis+sentinel://@h1/m", "nothing before '@'"),
            ("redis+sentinel://[::1/m", "no ']'"),
        ] {
            match parse(url) {
                Ok(t) => panic!("{url} was accepted as {t:?}"),
                Err(e) => assert!(e.to_string().contains(says), "{url}: {e}"),
            }
        }
    }

    #[test]
    fn passwords_stay_out_of_errors() {
        let err = parse("redis+sentinel://u:secret@h1:26379").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("u:***@") && !err.contains("secret"), "{err}");
    }
}
