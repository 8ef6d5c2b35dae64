//! Redis with Sentinel for one test: a master, a replica of it, and three Sentinels
//! watching them (quorum 2), configured as the Redis Sentinel documentation does, with
//! a short `down-after-milliseconds` so a failover takes seconds.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, anyhow};

use super::{Proc, TempDir, free_port, port_open};
use crate::eventually_within;

/// The master's name in the Sentinels' configuration.
pub const MASTER_NAME: &str = "chat";

/// How long a master must be unreachable before the Sentinels agree it is down.
pub const DOWN_AFTER_MS: u64 = 1_000;

/// One redis-server (data node) with its port.
#[derive(Debug)]
pub struct RedisNode {
    pub port: u16,
    proc: Option<Proc>,
}

impl RedisNode {
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }
}

/// A master, its replica and three Sentinels.
#[derive(Debug)]
pub struct RedisSentinels {
    /// Data nodes: the first started as the master, the second as its replica.
    pub nodes: Vec<RedisNode>,
    pub sentinel_ports: Vec<u16>,
    _sentinels: Vec<Proc>,
    dir: TempDir,
}

impl RedisSentinels {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = TempDir::new("chat-redis-")?;
        let (master_port, replica_port) = (free_port()?, free_port()?);
        let mut nodes = Vec::new();
        for (i, port) in [master_port, replica_port].into_iter().enumerate() {
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--dir", &dir.path().to_string_lossy(), "--dbfilename", &format!("dump-{port}.rdb")])
                // The first sync at once, not after the default 5 s wait for more replicas.
                .args(["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]);
            if i == 1 {
                cmd.args(["--replicaof", "127.0.0.1", &master_port.to_string()]);
            }
            let proc = Proc::spawn(&format!("redis :{port}"), cmd, &dir.path().join(format!("redis-{port}.log")))?;
            nodes.push(RedisNode { port, proc: Some(proc) });
        }
        for n in &nodes {
            let port = n.port;
            eventually_within(&format!("redis on :{port}"), 60, || async move { Ok(port_open(port).await) }).await?;
        }
        let mut sentinel_ports = Vec::new();
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port()?;
            let conf: PathBuf = dir.path().join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir.path().display()
                ),
            )?;
            let mut cmd = Command::new("redis-server");
            cmd.arg(&conf).arg("--sentinel");
            let log = dir.path().join(format!("sentinel-{port}.log"));
            sentinels.push(Proc::spawn(&format!("sentinel :{port}"), cmd, &log)?);
            sentinel_ports.push(port);
        }
        let set = Self { nodes, sentinel_ports, _sentinels: sentinels, dir };
        set.wait_watched().await?;
        Ok(set)
    }

    /// Waits until every Sentinel knows the master, its replica, and the other two.
    async fn wait_watched(&self) -> anyhow::Result<()> {
        eventually_within("the Sentinels to see the master, its replica and each other", 120, || async {
            for &port in &self.sentinel_ports {
                let mut c = connect(port).await?;
                let master: Vec<String> =
                    redis::cmd("SENTINEL").arg("master").arg(MASTER_NAME).query_async(&mut c).await?;
                let field = |name: &str| {
                    master.iter().position(|f| f == name).and_then(|i| master.get(i + 1)).cloned().unwrap_or_default()
                };
                if field("num-slaves") != "1" || field("num-other-sentinels") != "2" {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await
    }

    /// `redis+sentinel://…/<master>`: what `REDIS_URL` is with Sentinel.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinel_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The Sentinels as `host:port,…` (what `.dev/cluster.env`'s `REDIS_SENTINELS` lists).
    pub fn sentinels(&self) -> String {
        self.sentinel_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    /// The master's port as a Sentinel names it now.
    pub async fn master_port(&self) -> anyhow::Result<u16> {
        let mut last = None;
        for &port in &self.sentinel_ports {
            match master_of(port).await {
                Ok(p) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no Sentinel")))
    }

    /// `redis://127.0.0.1:<master>`: the master now, for a client that cannot follow
    /// Sentinel.
    pub async fn master_url(&self) -> anyhow::Result<String> {
        Ok(format!("redis://127.0.0.1:{}", self.master_port().await?))
    }

    /// Kills the master with SIGKILL; returns its port.
    pub async fn kill_master(&mut self) -> anyhow::Result<u16> {
        let port = self.master_port().await?;
        let node = self.nodes.iter_mut().find(|n| n.port == port).context("the master is not one of ours")?;
        node.kill();
        Ok(port)
    }

    /// Waits until every Sentinel names another master than `old`, and that one says
    /// it is the master.
    pub async fn wait_failover(&self, old: u16) -> anyhow::Result<u16> {
        eventually_within("Sentinel to promote the replica", 120, || async move {
            for &port in &self.sentinel_ports {
                if master_of(port).await? == old {
                    return Ok(false);
                }
            }
            let new = self.master_port().await?;
            let mut c = connect(new).await?;
            let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await?;
            Ok(matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master"))
        })
        .await?;
        self.master_port().await
    }

    /// The folder of the logs (for a failing test to point at).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

async fn connect(port: u16) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(1)))
        .set_response_timeout(Some(std::time::Duration::from_secs(2)));
    Ok(client.get_multiplexed_async_connection_with_config(&config).await?)
}

async fn master_of(sentinel: u16) -> anyhow::Result<u16> {
    let mut c = connect(sentinel).await?;
    let addr: Option<(String, String)> =
        redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(MASTER_NAME).query_async(&mut c).await?;
    let (_, port) = addr.ok_or_else(|| anyhow!("Sentinel :{sentinel} knows no master {MASTER_NAME}"))?;
    Ok(port.parse()?)
}
