//! Past one machine: the services on clustered NATS, replicated PostgreSQL and Redis
//! with Sentinel, and tenants on two PostgreSQL clusters. Each test starts the engines
//! it needs from the binaries installed on the machine (`chat_test_support::cluster`:
//! nats-server, initdb/pg_basebackup/postgres, redis-server in Sentinel mode), on free
//! ports, and the services in-process on them; then it takes a node away the way a
//! machine's loss does (SIGKILL), without restarting any service, and checks the
//! delivery promises: every acknowledged message stored once, in `seq` order, seen by
//! the sockets, and standby reads that never show less than the caller saw.
//!
//! Timings are printed, not asserted: the bounds below only guard against hangs.

mod nats;
mod placement;
mod postgres;
mod redis;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chat_test_support::{Client, WsClient};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An acknowledged send: its `seq`, message id and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub seq: i64,
    pub id: String,
    pub content: String,
}

/// Sends `content` to `room` with `Idempotency-Key: key`, as the chaos suite's clients
/// do: a failure (connection error, 5xx, 429) is retried with the same key, on
/// `clients` in turn, until it is acknowledged (bounded at 120 s). Returns the
/// acknowledgement and how many attempts failed.
pub async fn send_acked(clients: &[Client], room: &str, key: &str, content: &str) -> anyhow::Result<(Acked, u32)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut failed = 0u32;
    let mut last;
    for attempt in 0usize.. {
        let c = &clients[attempt % clients.len()];
        let res = c
            .request(reqwest::Method::POST, &format!("/rooms/{room}/messages"))
            .header("Idempotency-Key", key)
            .json(&json!({"content": content}))
            .send()
            .await;
        match res {
            Ok(r) if r.status() == StatusCode::CREATED || r.status() == StatusCode::OK => {
                let body: Value = r.json().await?;
                let acked = Acked {
                    seq: body["seq"].as_i64().context("no seq")?,
                    id: body["message_id"].as_str().context("no message_id")?.to_owned(),
                    content: body["content"].as_str().unwrap_or_default().to_owned(),
                };
                return Ok((acked, failed));
            }
            Ok(r) if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS => {
                last = format!("{} {}", r.status(), r.text().await.unwrap_or_default());
            }
            Ok(r) => bail!("send refused for good: {} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        failed += 1;
        if Instant::now() > deadline {
            bail!("send {key} not acknowledged within 120 s (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(50 + 20 * u64::from(failed.min(20)))).await;
    }
    unreachable!("the loop only ends by returning")
}

/// A room's whole history through `client`, paged by `after_seq`, retrying failures.
pub async fn history(client: &Client, room: &str) -> anyhow::Result<Vec<Acked>> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let mut page = None;
        for _ in 0..200 {
            match client.get(&format!("/rooms/{room}/messages?after_seq={after}&limit=100")).await {
                Ok(r) if r.status == StatusCode::OK => {
                    page = Some(r.body);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let page = page.context("history kept failing")?;
        let msgs = page.as_array().cloned().or_else(|| page["messages"].as_array().cloned()).unwrap_or_default();
        for m in &msgs {
            out.push(Acked {
                seq: m["seq"].as_i64().context("no seq")?,
                id: m["message_id"].as_str().context("no message_id")?.to_owned(),
                content: m["content"].as_str().unwrap_or_default().to_owned(),
            });
        }
        match msgs.last() {
            Some(m) if msgs.len() == 100 => after = m["seq"].as_i64().context("no seq")?,
            _ => return Ok(out),
        }
    }
}

/// Checks that history holds every acknowledged send exactly as acknowledged, and
/// nothing but `seq` 1..N.
pub fn check_history(history: &[Acked], acked: &[Acked]) -> anyhow::Result<()> {
    let by_seq: BTreeMap<i64, &Acked> = history.iter().map(|m| (m.seq, m)).collect();
    if by_seq.len() != history.len() {
        bail!("a seq appears twice in history: {history:?}");
    }
    let seqs: Vec<i64> = by_seq.keys().copied().collect();
    let expected: Vec<i64> = (1..=history.len() as i64).collect();
    if seqs != expected {
        bail!("history seqs are not 1..{}: {seqs:?}", history.len());
    }
    for a in acked {
        match by_seq.get(&a.seq) {
            Some(m) if **m == *a => {}
            other => bail!("acknowledged {a:?}, history has {other:?}"),
        }
    }
    let mut contents: Vec<&str> = history.iter().map(|m| m.content.as_str()).collect();
    contents.sort_unstable();
    contents.dedup();
    if contents.len() != history.len() {
        bail!("a message was stored twice: {history:?}");
    }
    Ok(())
}

/// A `/ws/{room}` reader that reconnects with `last_seq` after any disconnect (to the
/// other gateway when one is down), until it has seen `upto`.
pub struct Reader {
    pub urls: Vec<String>,
    pub seen: Vec<i64>,
    pub reconnects: u32,
}

impl Reader {
    pub fn new(urls: Vec<String>) -> Self {
        Self { urls, seen: Vec::new(), reconnects: 0 }
    }

    /// Reads until every seq up to `upto` arrived (bounded at 120 s); fails on a seq
    /// seen twice.
    pub async fn read_until(&mut self, upto: i64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut side = 0;
        while self.last() < upto {
            if Instant::now() > deadline {
                bail!("socket stuck at seq {} of {upto} ({} reconnects)", self.last(), self.reconnects);
            }
            let url = format!("{}&last_seq={}", self.urls[side % self.urls.len()], self.last());
            let Ok(mut ws) = WsClient::connect(&url).await else {
                side += 1;
                self.reconnects += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            loop {
                let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
                match frame {
                    Ok(Ok(Ok(f))) if f["type"] == "message" => {
                        let seq = f["data"]["seq"].as_i64().context("a message frame without seq")?;
                        if self.seen.contains(&seq) {
                            bail!("socket saw seq {seq} twice");
                        }
                        if seq != self.last() + 1 {
                            bail!("socket jumped from seq {} to {seq}", self.last());
                        }
                        self.seen.push(seq);
                        if self.last() >= upto {
                            return Ok(());
                        }
                    }
                    Ok(Ok(Ok(_))) => {}
                    // Ended, or nothing for 10 s: connect again from where we are.
                    _ => break,
                }
            }
            side += 1;
            self.reconnects += 1;
        }
        Ok(())
    }

    pub fn last(&self) -> i64 {
        self.seen.last().copied().unwrap_or(0)
    }
}

/// A counter of a service's `/metrics` (summed over its label sets matching `labels`).
pub async fn metric(ops_port: u16, name: &str, labels: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{ops_port}/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}
