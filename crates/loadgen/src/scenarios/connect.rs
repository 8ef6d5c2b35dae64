//! `connect`: how long N members take to connect to one room (issue 21's big-room
//! target: 1,000 in 2 s, 5,000 in 10 s), and what the room does meanwhile.
//!
//! One group room of `--members` members is created first (not measured). Then every
//! member opens a `/ws` socket to it (`--concurrency` handshakes in flight at once, as
//! a reconnect storm after a gateway restart would), each waiting for its
//! `connection_status`. Reported: the seconds until the last socket is connected, the
//! seconds until the room is quiet again (no frame to any socket for `--quiet-ms`: the
//! presence frames every join causes have all arrived), how many frames the sockets
//! received in all (text frames: O(n²) when every join is told to every socket already
//! there), and
//! every process's CPU seconds.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::client::{Stack, now_ns};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Members of the room, each connecting one socket.
    #[arg(long, default_value_t = 1_000)]
    pub members: usize,
    /// Socket handshakes in flight at once.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// The room counts as quiet after this long without a frame to any socket.
    #[arg(long, default_value_t = 1_000)]
    pub quiet_ms: u64,
    /// Longest wait for the room to become quiet, in seconds.
    #[arg(long, default_value_t = 300)]
    pub max_wait: u64,
}

pub async fn run(stack: &Stack, sources: &[IpAddr], args: &Args) -> anyhow::Result<Value> {
    anyhow::ensure!(args.members >= 2, "--members must be at least 2");
    let members: Vec<String> = (0..args.members).map(|i| format!("m{i}")).collect();
    let room = stack.room(&members).await?;
    let frames = Arc::new(AtomicU64::new(0));
    let last_frame = Arc::new(AtomicU64::new(0));
    let (figures, wall, cpu) = super::measured(|| async {
        let started = Instant::now();
        let opened = futures_util::stream::iter(members.iter().enumerate())
            .map(|(i, user)| {
                let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
                let (stack, room) = (stack.clone(), room.clone());
                async move { stack.connect(&room, user, source).await }
            })
            .buffer_unordered(args.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        let connected_s = started.elapsed().as_secs_f64();
        let mut readers = Vec::with_capacity(opened.len());
        for ws in opened {
            let mut ws = ws?;
            let (frames, last_frame) = (frames.clone(), last_frame.clone());
            readers.push(tokio::spawn(async move {
                // Text frames only: the gateway's pings are not the room's doing.
                while let Some(Ok(frame)) = ws.next().await {
                    if frame.is_text() {
                        frames.fetch_add(1, Ordering::Relaxed);
                        last_frame.store(u64::try_from(now_ns()).unwrap_or(0), Ordering::Relaxed);
                    }
                }
            }));
        }
        // Quiet: no frame for `quiet_ms` (frames that arrived before a socket's reader
        // started are in its buffer and count when read).
        let quiet = Duration::from_millis(args.quiet_ms);
        let deadline = started + Duration::from_secs(args.max_wait);
        let settled_s = loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let last = last_frame.load(Ordering::Relaxed);
            let since = u64::try_from(now_ns()).unwrap_or(0).saturating_sub(last);
            if last == 0 && started.elapsed() > quiet || last > 0 && since >= quiet.as_nanos() as u64 {
                let settled =
                    if last == 0 { connected_s } else { started.elapsed().as_secs_f64() - since as f64 / 1e9 };
                break settled.max(connected_s);
            }
            if Instant::now() > deadline {
                break started.elapsed().as_secs_f64();
            }
        };
        for r in &readers {
            r.abort();
        }
        Ok(json!({"connected_s": connected_s, "settled_s": settled_s}))
    })
    .await?;
    let received = frames.load(Ordering::Relaxed);
    let connected_s = figures["connected_s"].as_f64().unwrap_or(0.0);
    let settled_s = figures["settled_s"].as_f64().unwrap_or(0.0);
    let summary = format!(
        "connect: {} members connected to one room in {:.2} s, quiet after {:.2} s; {} frames to the sockets meanwhile ({:.1} per member); stack CPU {:.2} s",
        args.members,
        connected_s,
        settled_s,
        received,
        received as f64 / args.members as f64,
        cpu["by_process"]
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.as_str() != "loadgen").filter_map(|(_, v)| v.as_f64()).sum::<f64>())
            .unwrap_or(0.0),
    );
    Ok(json!({
        "scenario": "connect",
        "members": args.members,
        "concurrency": args.concurrency,
        "connected_s": (connected_s * 1000.0).round() / 1000.0,
        "settled_s": (settled_s * 1000.0).round() / 1000.0,
        "frames": received,
        "frames_per_member": received as f64 / args.members as f64,
        "duration_s": (wall * 100.0).round() / 100.0,
        "cpu_seconds": cpu,
        "summary": summary,
    }))
}
