//! `idle`: opens sockets spread over the `--sources` addresses (each source gives
//! ~28,000 ephemeral ports towards the gateway), holds them idle, and reports the
//! gateway's resident memory per connection at each count of `--connections`
//! (e.g. `10000,18000`: the first 10,000 are measured, then 8,000 more are opened and
//! all 18,000 measured, in one run against one gateway). Run it first against a freshly
//! started gateway: memory the allocator kept from an earlier scenario would be reused
//! by new sockets and hide their cost. Run with a file limit above the largest count
//! (`ulimit -n`), here and in the gateway.
//!
//! Every watched process's memory is reported too (`rss_delta_by_process`: growth
//! since before the sockets opened, per connection): presence and Redis hold per-socket
//! state as well. On a machine running other stacks, `LOADGEN_PROC_ROOTS` (see
//! `procstat`) keeps their processes of the same names out of the figures.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::client::{Socket, Stack};
use crate::procstat;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Socket counts to measure at, ascending (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    pub connections: Vec<usize>,
    /// Members per room (each socket is a member in its room).
    #[arg(long, default_value_t = 100)]
    pub per_room: usize,
    /// Seconds to hold the sockets idle before each measurement.
    #[arg(long, default_value_t = 5)]
    pub hold: u64,
    /// The gateway's process name, for its memory.
    #[arg(long, default_value = "gateway")]
    pub process: String,
}

/// One result line per checkpoint.
pub async fn run(stack: &Stack, sources: &[IpAddr], args: &Args) -> anyhow::Result<Value> {
    let mut counts = args.connections.clone();
    counts.sort_unstable();
    counts.dedup();
    let total = counts.last().copied().unwrap_or(0);
    anyhow::ensure!(total > 0, "--connections needs at least one positive count");
    let per_room = args.per_room.max(1);
    let rooms = total.div_ceil(per_room);
    let mut room_ids = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let users: Vec<String> = (0..per_room).map(|m| format!("i{r}m{m}")).collect();
        room_ids.push(stack.room(&users).await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = procstat::rss_bytes(&args.process);
    let all_before = procstat::rss_all();
    let mut sockets: Vec<Socket> = Vec::with_capacity(total);
    let mut failed = 0usize;
    let mut lines = Vec::with_capacity(counts.len());
    for &target in &counts {
        let (open_now, failed_now, room_ids) = (&mut sockets, &mut failed, &room_ids);
        let (figures, wall, cpu) = super::measured(|| async move {
            let permits = Arc::new(Semaphore::new(256));
            let mut tasks = Vec::with_capacity(target.saturating_sub(open_now.len()));
            for i in open_now.len() + *failed_now..target {
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
            for t in tasks {
                match t.await? {
                    Ok(ws) => open_now.push(ws),
                    Err(e) => {
                        if *failed_now == 0 {
                            eprintln!("a connection failed: {e:#}");
                        }
                        *failed_now += 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(args.hold)).await;
            Ok(json!({"rss_after": procstat::rss_bytes(&args.process), "all_after": procstat::rss_all()}))
        })
        .await?;
        let open = sockets.len() as u64;
        let rss_after = figures["rss_after"].as_u64().unwrap_or(0);
        let per_conn = rss_after.saturating_sub(rss_before).checked_div(open).unwrap_or(0);
        // Bytes per connection each process grew by (signed: a process may shrink).
        let by_process: serde_json::Map<String, Value> = all_before
            .iter()
            .filter_map(|(name, before)| {
                let after = figures["all_after"][name].as_u64()?;
                let grew = after as i64 - *before as i64;
                Some((name.clone(), json!(grew.checked_div(open as i64).unwrap_or(0))))
            })
            .collect();
        let summary = format!(
            "idle: {open} sockets open ({failed} failed) from {} source address(es); gateway RSS {:.1} MiB -> {:.1} MiB, {:.2} KiB per connection",
            sources.len(),
            rss_before as f64 / 1048576.0,
            rss_after as f64 / 1048576.0,
            per_conn as f64 / 1024.0
        );
        lines.push(json!({
            "scenario": "idle",
            "connections": open,
            "failed": failed,
            "sources": sources.len(),
            "gateway_rss_before": rss_before,
            "gateway_rss_after": rss_after,
            "bytes_per_connection": per_conn,
            "rss_delta_by_process": by_process,
            "duration_s": (wall * 100.0).round() / 100.0,
            "cpu_seconds": cpu,
            "summary": summary,
        }));
    }
    drop(sockets);
    Ok(Value::Array(lines))
}
