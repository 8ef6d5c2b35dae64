//! `idle`: opens `--connections` sockets spread over the `--sources` addresses (each
//! source gives ~28,000 ephemeral ports towards the gateway), holds them idle, and
//! reports the gateway's resident memory per connection. Run with a file limit above
//! the connection count (`ulimit -n`), here and in the gateway.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::client::Stack;
use crate::procstat;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Sockets to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Members per room (each socket is a member in its room).
    #[arg(long, default_value_t = 100)]
    pub per_room: usize,
    /// Seconds to hold the sockets idle before measuring.
    #[arg(long, default_value_t = 5)]
    pub hold: u64,
    /// The gateway's process name, for its memory.
    #[arg(long, default_value = "gateway")]
    pub process: String,
}

pub async fn run(stack: &Stack, sources: &[IpAddr], args: &Args) -> anyhow::Result<Value> {
    let per_room = args.per_room.max(1);
    let rooms = args.connections.div_ceil(per_room);
    let mut room_ids = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let users: Vec<String> = (0..per_room).map(|m| format!("i{r}m{m}")).collect();
        room_ids.push(stack.room(&users).await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = procstat::rss_bytes(&args.process);
    let (figures, wall, cpu) = super::measured(|| async {
        let permits = Arc::new(Semaphore::new(256));
        let mut tasks = Vec::with_capacity(args.connections);
        for i in 0..args.connections {
            let permit = permits.clone().acquire_owned().await?;
            let (stack, room) = (stack.clone(), room_ids[i / per_room].clone());
            let source = sources.get(i % sources.len().max(1)).copied();
            let user = format!("i{}m{}", i / per_room, i % per_room);
            tasks.push(tokio::spawn(async move {
                let ws = stack.connect(&room, &user, source).await;
                drop(permit);
                ws
            }));
        }
        let mut sockets = Vec::with_capacity(tasks.len());
        let mut failed = 0usize;
        for t in tasks {
            match t.await? {
                Ok(ws) => sockets.push(ws),
                Err(e) => {
                    if failed == 0 {
                        eprintln!("a connection failed: {e:#}");
                    }
                    failed += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
        let rss_after = procstat::rss_bytes(&args.process);
        let open = sockets.len();
        drop(sockets);
        Ok(json!({"open": open, "failed": failed, "rss_after": rss_after}))
    })
    .await?;
    let open = figures["open"].as_u64().unwrap_or(0);
    let rss_after = figures["rss_after"].as_u64().unwrap_or(0);
    let per_conn = rss_after.saturating_sub(rss_before).checked_div(open).unwrap_or(0);
    let summary = format!(
        "idle: {open} sockets open ({} failed) from {} source address(es); gateway RSS {:.1} MiB -> {:.1} MiB, {:.1} KiB per connection",
        figures["failed"],
        sources.len(),
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0,
        per_conn as f64 / 1024.0
    );
    Ok(json!({
        "scenario": "idle",
        "connections": open,
        "failed": figures["failed"],
        "sources": sources.len(),
        "gateway_rss_before": rss_before,
        "gateway_rss_after": rss_after,
        "bytes_per_connection": per_conn,
        "duration_s": (wall * 100.0).round() / 100.0,
        "cpu_seconds": cpu,
        "summary": summary,
    }))
}
