//! A NATS cluster: `nats-server` nodes with JetStream, each routed to all the others,
//! as the NATS documentation configures a cluster (`--cluster`, `--routes`,
//! `--cluster_name`, a `--server_name` per node for JetStream).

use std::path::PathBuf;
use std::process::Command;

use anyhow::anyhow;
use serde_json::Value;

use super::{Proc, TempDir, free_port};
use crate::eventually_within;

/// One node: its ports and, while it runs, its process.
#[derive(Debug)]
pub struct NatsNode {
    pub name: String,
    pub client_port: u16,
    pub cluster_port: u16,
    pub monitor_port: u16,
    store: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
}

/// A NATS cluster for one test; every node is killed when it is dropped.
#[derive(Debug)]
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    routes: String,
    cluster_name: String,
    http: reqwest::Client,
    // Last: removed after the processes are gone.
    _dir: TempDir,
}

impl NatsCluster {
    /// Starts `n` nodes and waits until JetStream has a meta leader.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        let dir = TempDir::new("chat-nats-")?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("n{}", i + 1);
            nodes.push(NatsNode {
                client_port: free_port()?,
                cluster_port: free_port()?,
                monitor_port: free_port()?,
                store: dir.sub(&format!("{name}-store"))?,
                log: dir.path().join(format!("{name}.log")),
                name,
                proc: None,
            });
        }
        let routes = nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.cluster_port)).collect::<Vec<_>>().join(",");
        let mut cluster = Self {
            nodes,
            routes,
            cluster_name: crate::unique("chat-test-"),
            http: reqwest::Client::builder().timeout(std::time::Duration::from_secs(2)).build()?,
            _dir: dir,
        };
        for i in 0..n {
            cluster.launch(i)?;
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    fn launch(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let mut cmd = Command::new("nats-server");
        cmd.args(["-a", "127.0.0.1", "-p", &node.client_port.to_string(), "-m", &node.monitor_port.to_string()])
            .args(["--server_name", &node.name, "--cluster_name", &self.cluster_name])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", node.cluster_port), "--routes", &self.routes])
            .args(["-js", "-sd", &node.store.to_string_lossy()]);
        node.proc = Some(Proc::spawn(&format!("nats {}", node.name), cmd, &node.log)?);
        Ok(())
    }

    /// Every server's client URL, comma-separated (what `NATS_URL` takes).
    pub fn url(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.client_port)).collect::<Vec<_>>().join(",")
    }

    /// Each node's monitoring URL.
    pub fn monitor_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("http://127.0.0.1:{}", n.monitor_port)).collect()
    }

    async fn monitor(&self, i: usize, path: &str) -> anyhow::Result<Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.nodes[i].monitor_port);
        Ok(self.http.get(&url).send().await?.error_for_status()?.json().await?)
    }

    /// Waits until every running node is up and JetStream has elected a meta leader
    /// that they all know.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|i| self.nodes[*i].proc.is_some()).collect();
        eventually_within("the NATS cluster to elect a JetStream leader", 120, || async {
            for &i in &running {
                let jsz = self.monitor(i, "/jsz").await?;
                let leader = jsz.pointer("/meta_cluster/leader").and_then(Value::as_str).unwrap_or_default();
                if leader.is_empty() {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await
    }

    /// Kills node `i` with SIGKILL (a lost machine).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.kill();
        }
    }

    /// Starts node `i` again with its store, and waits for the cluster.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.launch(i)?;
        self.wait_ready().await
    }

    /// The node that a client connection named `name` (a service's connection name)
    /// is on, if any node has one.
    pub async fn node_of(&self, name: &str) -> anyhow::Result<Option<usize>> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].proc.is_none() {
                continue;
            }
            let connz = self.monitor(i, "/connz?limit=1024").await?;
            let conns = connz.get("connections").and_then(Value::as_array).cloned().unwrap_or_default();
            if conns.iter().any(|c| c.get("name").and_then(Value::as_str) == Some(name)) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }
}

/// How many copies JetStream keeps of `stream` (its `num_replicas`), and how many
/// nodes hold a current one (the leader and the replicas that are up to date), as the
/// stream's info says through `client`.
pub async fn stream_replicas(client: &async_nats::Client, stream: &str) -> anyhow::Result<(usize, usize)> {
    let js = async_nats::jetstream::new(client.clone());
    let mut s = js.get_stream(stream).await.map_err(|e| anyhow!("stream {stream}: {e}"))?;
    let info = s.info().await.map_err(|e| anyhow!("stream {stream} info: {e}"))?;
    let configured = info.config.num_replicas;
    let current = info.cluster.as_ref().map_or(0, |c| {
        usize::from(c.leader.as_deref().is_some_and(|l| !l.is_empty()))
            + c.replicas.iter().filter(|p| p.current && !p.offline).count()
    });
    Ok((configured, current))
}
