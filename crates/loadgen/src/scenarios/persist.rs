//! `persist`: messages stored and acknowledged per second, over REST (`POST
//! /rooms/{id}/messages`) or WebSocket (`send_message` answered by `message_sent`).
//! Closed loop: each of `--concurrency` workers has one message in flight, in its
//! own room, for `--duration` seconds; the ack latency of every send is recorded.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::Stack;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Workers (sends in flight at once).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// `rest` or `ws`.
    #[arg(long, default_value = "rest")]
    pub via: String,
}

pub async fn run(stack: &Stack, sources: &[IpAddr], args: &Args) -> anyhow::Result<Value> {
    let mut rooms = Vec::with_capacity(args.concurrency);
    for i in 0..args.concurrency {
        rooms.push(stack.room(&[format!("p{i}")]).await?);
    }
    let (figures, wall, cpu) = super::measured(|| async {
        let deadline = Instant::now() + Duration::from_secs(args.duration);
        let mut tasks = Vec::new();
        for (i, room) in rooms.iter().enumerate() {
            let (stack, room, via) = (stack.clone(), room.clone(), args.via.clone());
            let source = sources.get(i % sources.len().max(1)).copied();
            tasks.push(tokio::spawn(async move {
                let mut hist = crate::histogram()?;
                let user = format!("p{i}");
                let mut n = 0u64;
                if via == "ws" {
                    let mut ws = stack.connect(&room, &user, source).await?;
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        let frame = json!({"type": "send_message", "data": {"content": format!("m{n}"), "local_id": format!("l{n}")}});
                        ws.send(Message::text(frame.to_string())).await?;
                        loop {
                            match ws.next().await {
                                Some(Ok(Message::Text(t))) if t.contains("\"message_sent\"") => break,
                                Some(Ok(Message::Text(t))) if t.contains("\"error\"") => anyhow::bail!("send failed: {t}"),
                                Some(Ok(_)) => {}
                                _ => anyhow::bail!("socket ended"),
                            }
                        }
                        hist.record(started.elapsed().as_micros() as u64)?;
                        n += 1;
                    }
                } else {
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        stack.send(&room, &user, &format!("m{n}")).await?;
                        hist.record(started.elapsed().as_micros() as u64)?;
                        n += 1;
                    }
                }
                anyhow::Ok(hist)
            }));
        }
        let mut all = crate::histogram()?;
        for t in tasks {
            all.add(t.await??)?;
        }
        Ok(json!({"messages": all.len(), "latency": crate::percentiles(&all)}))
    })
    .await?;
    let messages = figures["messages"].as_u64().unwrap_or(0) as f64;
    let rate = messages / wall;
    let cpu_total = cpu["total"].as_f64().unwrap_or(0.0);
    let summary = format!(
        "persist via {}: {:.0} messages/s stored and acknowledged, ack p50 {} ms, p99 {} ms ({} workers, {:.1} s, {:.1} CPU-s in all)",
        args.via, rate, figures["latency"]["p50_ms"], figures["latency"]["p99_ms"], args.concurrency, wall, cpu_total
    );
    Ok(json!({
        "scenario": format!("persist-{}", args.via),
        "concurrency": args.concurrency,
        "duration_s": (wall * 100.0).round() / 100.0,
        "messages_per_s": rate.round(),
        "messages_per_cpu_s": if cpu_total > 0.0 { (messages / cpu_total).round() } else { 0.0 },
        "latency": figures["latency"],
        "cpu_seconds": cpu,
        "summary": summary,
    }))
}
