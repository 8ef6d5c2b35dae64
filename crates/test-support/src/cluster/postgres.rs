//! PostgreSQL clusters of a test's own: [`PgServer`], one server made with `initdb`,
//! and [`PgPair`], a primary with a hot standby made with `pg_basebackup -R` that
//! streams its WAL (synchronously when asked: `synchronous_standby_names` names it),
//! which a test can kill, promote and pause — the streaming replication PostgreSQL's
//! documentation describes, as CloudNativePG and Patroni run it.
//!
//! The servers run as the `postgres` user when the tests run as root (PostgreSQL
//! refuses root), with `fsync=off`: the faults here kill processes, not the machine, so
//! what a commit wrote is in the page cache either way.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, anyhow, bail};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::{Proc, TempDir, free_port, run};
use crate::eventually_within;

/// The database the services use on these servers.
pub const DATABASE: &str = "chat";

/// The standby's `application_name`, which the primary's `synchronous_standby_names`
/// names.
pub const STANDBY_NAME: &str = "standby1";

/// Where PostgreSQL's server programs are: `PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin`, else the `PATH`.
fn pg_bin(program: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Path::new(&dir).join(program);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join(program).exists())
        .collect();
    versions.sort();
    versions.pop().map_or_else(|| PathBuf::from(program), |(_, bin)| bin.join(program))
}

/// The user the servers run as: `postgres` when we are root (uid, gid from /etc/passwd).
fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
    use std::os::unix::fs::MetadataExt as _;
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .context("PostgreSQL cannot run as root and there is no postgres user (apt-get install postgresql)")?;
    let fields: Vec<&str> = line.split(':').collect();
    let id = |i: usize| fields.get(i).and_then(|v| v.parse::<u32>().ok()).context("a malformed /etc/passwd line");
    Ok(Some((id(2)?, id(3)?)))
}

fn command(program: &str, user: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(pg_bin(program));
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn give(path: &Path, user: Option<(u32, u32)>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// `postgres://postgres@127.0.0.1:<port>/<db>`.
pub fn url(port: u16, db: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{db}")
}

/// Runs SQL (no result) on one server.
pub async fn execute(port: u16, db: &str, sql: &str) -> anyhow::Result<()> {
    let mut conn =
        AsyncPgConnection::establish(&url(port, db)).await.with_context(|| format!("connecting to :{port}"))?;
    conn.batch_execute(sql).await.with_context(|| format!("on :{port}: {sql}"))
}

/// One PostgreSQL server process and its data directory.
#[derive(Debug)]
pub struct PgNode {
    pub port: u16,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
}

impl PgNode {
    fn new(dir: &TempDir, name: &str, user: Option<(u32, u32)>) -> anyhow::Result<Self> {
        let socket_dir = dir.sub(&format!("{name}-sock"))?;
        give(&socket_dir, user)?;
        // Made here (the temporary directory is root's) and given to the server's user;
        // initdb and pg_basebackup fill an empty directory.
        let data = dir.sub(&format!("{name}-data"))?;
        give(&data, user)?;
        super::set_mode(&data, 0o700)?;
        Ok(Self { port: free_port()?, data, socket_dir, log: dir.path().join(format!("{name}.log")), proc: None })
    }

    fn start(&mut self, user: Option<(u32, u32)>, settings: &[String]) -> anyhow::Result<()> {
        let mut cmd = command("postgres", user);
        cmd.arg("-D").arg(&self.data).args(["-p", &self.port.to_string()]).arg("-k").arg(&self.socket_dir);
        for s in [
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "max_connections=200",
            "shared_buffers=32MB",
            "wal_level=replica",
            "max_wal_senders=10",
            "wal_keep_size=256MB",
            "hot_standby=on",
            "hot_standby_feedback=on",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(settings.iter().cloned())
        {
            cmd.args(["-c", &s]);
        }
        self.proc = Some(Proc::spawn(&format!("postgres :{}", self.port), cmd, &self.log)?);
        Ok(())
    }

    /// Waits until the server takes connections; fails at once if it exited.
    async fn wait_accepting(&mut self) -> anyhow::Result<()> {
        let port = self.port;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let proc = self.proc.as_mut().ok_or_else(|| anyhow!("postgres :{port} is not running"))?;
            proc.check_alive()?;
            if AsyncPgConnection::establish(&url(port, "postgres")).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("PostgreSQL on :{port} did not accept connections within 120 s:\n{}", proc.tail());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: the server (and, noticing its postmaster gone, its backends) stops at once.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn running(&self) -> bool {
        self.proc.is_some()
    }
}

fn initdb(node: &PgNode, user: Option<(u32, u32)>) -> anyhow::Result<()> {
    let mut cmd = command("initdb", user);
    cmd.arg("-D").arg(&node.data).args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
    run(cmd)
}

/// One PostgreSQL cluster (a single server) with the database [`DATABASE`].
#[derive(Debug)]
pub struct PgServer {
    pub node: PgNode,
    _dir: TempDir,
}

impl PgServer {
    pub async fn start() -> anyhow::Result<Self> {
        let user = server_user()?;
        let dir = TempDir::new("chat-pg-")?;
        let mut node = PgNode::new(&dir, "pg", user)?;
        initdb(&node, user)?;
        node.start(user, &[])?;
        node.wait_accepting().await?;
        execute(node.port, "postgres", &format!("CREATE DATABASE {DATABASE}")).await?;
        Ok(Self { node, _dir: dir })
    }

    pub fn url(&self) -> String {
        url(self.node.port, DATABASE)
    }
}

/// A primary and a hot standby streaming from it.
#[derive(Debug)]
pub struct PgPair {
    pub primary: PgNode,
    pub standby: PgNode,
    /// Whether the primary waits for the standby at each commit.
    pub synchronous: bool,
    user: Option<(u32, u32)>,
    _dir: TempDir,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl PgPair {
    /// Makes the primary (with [`DATABASE`]), copies it with `pg_basebackup`, starts the
    /// standby and waits until it streams (and, with `synchronous`, until the primary
    /// counts it as its synchronous standby).
    pub async fn start(synchronous: bool) -> anyhow::Result<Self> {
        let user = server_user()?;
        let dir = TempDir::new("chat-pgpair-")?;
        let mut primary = PgNode::new(&dir, "primary", user)?;
        let mut standby = PgNode::new(&dir, "standby", user)?;
        initdb(&primary, user)?;
        primary.start(user, &[])?;
        primary.wait_accepting().await?;
        execute(primary.port, "postgres", &format!("CREATE DATABASE {DATABASE}")).await?;
        let mut cmd = command("pg_basebackup", user);
        cmd.args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres", "-D"])
            .arg(&standby.data)
            .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"]);
        run(cmd).context("pg_basebackup")?;
        let conninfo = format!(
            "primary_conninfo=host=127.0.0.1 port={} user=postgres application_name={STANDBY_NAME}",
            primary.port
        );
        standby.start(user, &[conninfo])?;
        standby.wait_accepting().await?;
        if synchronous {
            // Only now: with no standby connected, every commit would wait. In the
            // primary's own configuration (postgresql.auto.conf), which the standby,
            // copied before, does not have: promoted, it does not wait for a standby of
            // its own that does not exist.
            let set = format!("ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'");
            execute(primary.port, "postgres", &set).await?;
            execute(primary.port, "postgres", "SELECT pg_reload_conf()").await?;
        }
        let pair = Self { primary, standby, synchronous, user, _dir: dir };
        pair.wait_streaming().await?;
        Ok(pair)
    }

    /// Waits until the primary streams to the standby (as its synchronous standby when
    /// the pair is synchronous).
    pub async fn wait_streaming(&self) -> anyhow::Result<()> {
        let (port, sync) = (self.primary.port, self.synchronous);
        eventually_within("the standby to stream from the primary", 120, || async move {
            let mut conn = AsyncPgConnection::establish(&url(port, "postgres")).await?;
            let c: Count = diesel::sql_query(format!(
                "SELECT count(*) AS n FROM pg_stat_replication WHERE state = 'streaming'{}",
                if sync { " AND sync_state = 'sync'" } else { "" }
            ))
            .get_result(&mut conn)
            .await?;
            Ok(c.n > 0)
        })
        .await
    }

    /// Both servers, the one that takes writes found by libpq: what a service's
    /// `DATABASE_URL` is on a replicated cluster. It fails over: after the standby is
    /// promoted, new connections find it.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{DATABASE}?target_session_attrs=read-write&connect_timeout=2",
            self.primary.port, self.standby.port
        )
    }

    /// Both servers, whichever is a standby: what `DATABASE_READ_URL` is.
    pub fn read_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{DATABASE}?target_session_attrs=read-only&connect_timeout=2",
            self.standby.port, self.primary.port
        )
    }

    /// Kills the primary with SIGKILL.
    pub fn kill_primary(&mut self) {
        self.primary.kill();
    }

    /// Promotes the standby (what CloudNativePG or Patroni do after the primary is lost)
    /// and waits until it takes writes.
    pub async fn promote(&self) -> anyhow::Result<()> {
        execute(self.standby.port, "postgres", "SELECT pg_promote(true, 60)").await?;
        let port = self.standby.port;
        eventually_within("the promoted standby to take writes", 120, || async move {
            #[derive(QueryableByName)]
            struct Recovery {
                #[diesel(sql_type = Bool)]
                r: bool,
            }
            let mut conn = AsyncPgConnection::establish(&url(port, "postgres")).await?;
            let r: Recovery = diesel::sql_query("SELECT pg_is_in_recovery() AS r").get_result(&mut conn).await?;
            Ok(!r.r)
        })
        .await
    }

    /// Stops the standby from applying the WAL it receives (it still receives and
    /// flushes it, so a synchronous primary goes on committing): reads there fall behind.
    pub async fn pause_replay(&self) -> anyhow::Result<()> {
        execute(self.standby.port, "postgres", "SELECT pg_wal_replay_pause()").await
    }

    pub async fn resume_replay(&self) -> anyhow::Result<()> {
        execute(self.standby.port, "postgres", "SELECT pg_wal_replay_resume()").await
    }

    /// Whether the primary runs (it is killed by [`PgPair::kill_primary`]).
    pub fn primary_running(&self) -> bool {
        self.primary.running()
    }

    /// The user the servers run as (for a test that starts more of them).
    pub fn user(&self) -> Option<(u32, u32)> {
        self.user
    }
}

/// Counts rows of a query that returns `n` (for assertions on a server directly).
pub async fn count(port: u16, sql: &str) -> anyhow::Result<i64> {
    let mut conn = AsyncPgConnection::establish(&url(port, DATABASE)).await?;
    let c: Count = diesel::sql_query(sql).get_result(&mut conn).await?;
    if c.n < 0 {
        bail!("a negative count from {sql}");
    }
    Ok(c.n)
}
