//! `fanout` and `bigroom`: every member of every room connected; senders post over
//! REST at a fixed open-loop rate (each send fires on schedule in its own task, so a
//! slow reply never delays the next send — no coordinated omission). Each message
//! carries its send time; receivers record send->deliver latency. With `--search`,
//! the rate grows step by step and the result is the highest rate whose p99 stayed
//! within `--max-p99-ms` with (nearly) every delivery made.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Stack, now_ns};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Rooms.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Members per room, all connected.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Messages per second, over all rooms.
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
    /// Seconds per step.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Raise the rate by half each step until p99 exceeds --max-p99-ms.
    #[arg(long)]
    pub search: bool,
    #[arg(long, default_value_t = 50.0)]
    pub max_p99_ms: f64,
    /// Most steps when searching.
    #[arg(long, default_value_t = 8)]
    pub max_steps: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BigArgs {
    /// Members of the one room, all connected.
    #[arg(long, default_value_t = 5000)]
    pub members: usize,
    /// Messages per second from the one sender.
    #[arg(long, default_value_t = 20)]
    pub rate: u64,
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
}

/// What one step measured.
struct Step {
    rate: u64,
    sent: u64,
    failed: u64,
    delivered: u64,
    hist: hdrhistogram::Histogram<u64>,
    wall: f64,
    cpu: Value,
}

/// Readers' per-step histograms, merged when the run ends.
type Shared = Arc<std::sync::Mutex<Vec<hdrhistogram::Histogram<u64>>>>;

pub async fn run(stack: &Stack, sources: &[IpAddr], args: &Args) -> anyhow::Result<Value> {
    let steps = if args.search { args.max_steps } else { 1 };
    let result = drive(stack, sources, args.rooms, args.members, args.rate, args.duration, steps).await?;
    Ok(result.with_name("fanout", args.rooms, args.members, args.max_p99_ms, args.search))
}

pub async fn run_big(stack: &Stack, sources: &[IpAddr], args: &BigArgs) -> anyhow::Result<Value> {
    let result = drive(stack, sources, 1, args.members, args.rate, args.duration, 1).await?;
    Ok(result.with_name("bigroom", 1, args.members, f64::MAX, false))
}

struct Outcome {
    steps: Vec<Step>,
}

impl Outcome {
    fn with_name(self, name: &str, rooms: usize, members: usize, max_p99: f64, search: bool) -> Value {
        let expected = |s: &Step| s.sent * members as u64;
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                let cpu_total = s.cpu["total"].as_f64().unwrap_or(0.0);
                json!({
                    "rate": s.rate,
                    "sent": s.sent,
                    "send_errors": s.failed,
                    "deliveries": s.delivered,
                    "expected_deliveries": expected(s),
                    "deliveries_per_s": (s.delivered as f64 / s.wall).round(),
                    "deliveries_per_cpu_s": if cpu_total > 0.0 { (s.delivered as f64 / cpu_total).round() } else { 0.0 },
                    "latency": crate::percentiles(&s.hist),
                    "duration_s": (s.wall * 100.0).round() / 100.0,
                    "cpu_seconds": s.cpu,
                })
            })
            .collect();
        let ok = |s: &Step| {
            !s.hist.is_empty()
                && (s.hist.value_at_quantile(0.99) as f64 / 1000.0) <= max_p99
                && s.delivered * 100 >= expected(s) * 99
        };
        let best = self.steps.iter().filter(|s| ok(s)).max_by_key(|s| s.rate);
        let last = self.steps.last();
        let headline = best.or(last);
        let summary = match headline {
            Some(s) => format!(
                "{name}: {} rooms x {} members; at {} msg/s: {:.0} deliveries/s, send->deliver p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms{}",
                rooms,
                members,
                s.rate,
                s.delivered as f64 / s.wall,
                s.hist.value_at_quantile(0.5) as f64 / 1000.0,
                s.hist.value_at_quantile(0.99) as f64 / 1000.0,
                s.hist.value_at_quantile(0.999) as f64 / 1000.0,
                match (search, best.is_some()) {
                    (true, true) => format!(" (highest rate with p99 <= {max_p99} ms)"),
                    (true, false) => format!(" (no rate kept p99 <= {max_p99} ms; last step shown)"),
                    _ => String::new(),
                },
            ),
            None => format!("{name}: no step ran"),
        };
        json!({
            "scenario": name,
            "rooms": rooms,
            "members": members,
            "search": search,
            "max_p99_ms": if search { json!(max_p99) } else { Value::Null },
            "best_rate": best.map(|s| s.rate),
            "deliveries_per_s": headline.map(|s| (s.delivered as f64 / s.wall).round()),
            "latency": headline.map(|s| crate::percentiles(&s.hist)),
            "steps": steps,
            "summary": summary,
        })
    }
}

async fn drive(
    stack: &Stack,
    sources: &[IpAddr],
    rooms: usize,
    members: usize,
    rate: u64,
    duration: u64,
    steps: usize,
) -> anyhow::Result<Outcome> {
    // Rooms, then every member's socket.
    let mut room_ids = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let users: Vec<String> = (0..members).map(|m| format!("r{r}m{m}")).collect();
        room_ids.push(stack.room(&users).await?);
    }
    let delivered: Arc<Vec<AtomicU64>> = Arc::new((0..steps).map(|_| AtomicU64::new(0)).collect());
    let shared: Shared = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let connecting = Arc::new(Semaphore::new(256));
    let mut readers = Vec::new();
    eprintln!("connecting {} sockets...", rooms * members);
    for (r, room) in room_ids.iter().enumerate() {
        for m in 0..members {
            let permit = connecting.clone().acquire_owned().await?;
            let source = sources.get((r * members + m) % sources.len().max(1)).copied();
            let ws = stack.connect(room, &format!("r{r}m{m}"), source).await?;
            drop(permit);
            let (delivered, shared, mut stop) = (delivered.clone(), shared.clone(), stop_rx.clone());
            readers.push(tokio::spawn(async move {
                let mut ws = ws;
                let mut hists: Vec<hdrhistogram::Histogram<u64>> = (0..steps)
                    .map(|_| hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2))
                    .collect::<Result<_, _>>()?;
                loop {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => break,
                        msg = ws.next() => match msg {
                            Some(Ok(Message::Text(t))) => {
                                // Content is "t:<step>:<ns>".
                                if let Some(i) = t.find("\"content\":\"t:") {
                                    let rest = &t[i + 13..];
                                    let mut parts = rest.split([':', '"']);
                                    if let (Some(step), Some(ns)) = (parts.next(), parts.next())
                                        && let (Ok(step), Ok(ns)) = (step.parse::<usize>(), ns.parse::<i64>())
                                        && step < steps
                                    {
                                        let us = ((now_ns() - ns) / 1000).max(1) as u64;
                                        let _ = hists[step].record(us.min(60_000_000));
                                        delivered[step].fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        }
                    }
                }
                if let Ok(mut all) = shared.lock() {
                    if all.is_empty() {
                        all.extend(hists);
                    } else {
                        for (a, h) in all.iter_mut().zip(hists) {
                            let _ = a.add(h);
                        }
                    }
                }
                anyhow::Ok(())
            }));
        }
    }
    eprintln!("connected; sending");

    let mut outcome = Outcome { steps: Vec::new() };
    let mut step_rate = rate.max(1);
    for step in 0..steps {
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let cpu_before = crate::procstat::cpu_seconds();
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / step_rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut n: u64 = 0;
        let until = started + Duration::from_secs(duration);
        let mut inflight = Vec::new();
        while Instant::now() < until {
            tick.tick().await;
            let r = (n as usize) % rooms;
            let (stack, room, sent, failed) = (stack.clone(), room_ids[r].clone(), sent.clone(), failed.clone());
            inflight.push(tokio::spawn(async move {
                match stack.send(&room, &format!("r{r}m0"), &format!("t:{step}:{}", now_ns())).await {
                    Ok(_) => sent.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }));
            n += 1;
            if inflight.len() >= 4096 {
                inflight.retain(|t| !t.is_finished());
            }
        }
        for t in inflight {
            let _ = t.await;
        }
        // Let the last deliveries arrive.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let wall = started.elapsed().as_secs_f64() - 2.0;
        let cpu = crate::procstat::cpu_delta(&cpu_before, &crate::procstat::cpu_seconds());
        let total: f64 = cpu.values().sum();
        outcome.steps.push(Step {
            rate: step_rate,
            sent: sent.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
            delivered: delivered[step].load(Ordering::Relaxed),
            hist: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2)?,
            wall,
            cpu: json!({"by_process": cpu, "total": (total * 100.0).round() / 100.0}),
        });
        eprintln!(
            "step {step}: {step_rate} msg/s sent {} delivered {}",
            sent.load(Ordering::Relaxed),
            delivered[step].load(Ordering::Relaxed)
        );
        step_rate = step_rate * 3 / 2 + 1;
    }
    let _ = stop_tx.send(true);
    for r in readers {
        let _ = r.await;
    }
    let hists = shared.lock().map(|mut h| std::mem::take(&mut *h)).unwrap_or_default();
    for (s, h) in outcome.steps.iter_mut().zip(hists) {
        s.hist = h;
    }
    Ok(outcome)
}
