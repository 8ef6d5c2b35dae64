//! `history`: history pages per second (`GET /rooms/{id}/messages?after_seq=&limit=`)
//! at random positions in a room with `--messages` messages.

use std::time::{Duration, Instant};

use rand::Rng as _;
use serde_json::{Value, json};

use crate::client::Stack;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Messages in the room (seeded first, over REST).
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Seconds to read for.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Readers at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Page size.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

pub async fn run(stack: &Stack, args: &Args) -> anyhow::Result<Value> {
    let room = stack.room(&["reader".to_owned()]).await?;
    // Seed with many senders in parallel (one room: they serialize on its seq).
    let seeders = 64u64;
    let per = args.messages.div_ceil(seeders);
    let mut tasks = Vec::new();
    for s in 0..seeders {
        let (stack, room) = (stack.clone(), room.clone());
        let count = per.min(args.messages.saturating_sub(s * per));
        tasks.push(tokio::spawn(async move {
            for i in 0..count {
                stack.send(&room, "reader", &format!("history message {s}-{i}")).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let total = args.messages as i64;
    let (figures, wall, cpu) = super::measured(|| async {
        let deadline = Instant::now() + Duration::from_secs(args.duration);
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency {
            let (stack, room, limit) = (stack.clone(), room.clone(), args.limit);
            tasks.push(tokio::spawn(async move {
                let mut hist = crate::histogram()?;
                while Instant::now() < deadline {
                    let after = rand::rng().random_range(0..total.max(1));
                    let started = Instant::now();
                    let res = stack
                        .http
                        .get(format!("{}/rooms/{room}/messages?after_seq={after}&limit={limit}", stack.url))
                        .header("X-API-Key", &stack.api_key)
                        .header("X-User-Id", "reader")
                        .send()
                        .await?;
                    anyhow::ensure!(res.status().is_success(), "history page: {}", res.status());
                    let _ = res.bytes().await?;
                    hist.record(started.elapsed().as_micros() as u64)?;
                }
                anyhow::Ok(hist)
            }));
        }
        let mut all = crate::histogram()?;
        for t in tasks {
            all.add(t.await??)?;
        }
        Ok(json!({"pages": all.len(), "latency": crate::percentiles(&all)}))
    })
    .await?;
    let pages = figures["pages"].as_u64().unwrap_or(0) as f64;
    let cpu_total = cpu["total"].as_f64().unwrap_or(0.0);
    let summary = format!(
        "history: {:.0} pages/s of {} messages from a room of {}, p99 {} ms ({:.1} CPU-s in all)",
        pages / wall,
        args.limit,
        args.messages,
        figures["latency"]["p99_ms"],
        cpu_total
    );
    Ok(json!({
        "scenario": "history",
        "room_messages": args.messages,
        "page_size": args.limit,
        "concurrency": args.concurrency,
        "duration_s": (wall * 100.0).round() / 100.0,
        "pages_per_s": (pages / wall).round(),
        "pages_per_cpu_s": if cpu_total > 0.0 { (pages / cpu_total).round() } else { 0.0 },
        "latency": figures["latency"],
        "cpu_seconds": cpu,
        "summary": summary,
    }))
}
