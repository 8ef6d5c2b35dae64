//! `fanout` and `bigroom`: every member of every room connected; one sender per room
//! (its first member) sends at a fixed open-loop rate over all rooms — by default as
//! `send_message` frames on its own `/ws` socket, as a chat app does (`--via rest`
//! posts over REST instead). Each send fires on schedule without waiting for the
//! previous one's answer, so slow replies cannot hide latency (no coordinated
//! omission). Each message carries its send time; receivers record send->deliver
//! latency. A send counts as persisted when its `message_sent` answer (or REST `201`)
//! arrives. With `--search`, the rate grows step by step and the result is the highest
//! rate whose p99 stayed within `--max-p99-ms` with (nearly) every delivery made.
//!
//! `--receivers socketio` has every member receive over `rest-chat.md`'s Socket.IO
//! (`/socket.io/`, WebSocket transport, `join-chat-room`) instead of `/ws`, same rooms
//! and members, so the two endpoints' costs sit side by side; the sender then sends on
//! a `/ws` socket of its own (one more delivery per message, not counted).
//!
//! Every step also reports the CPU the stack spent per message (every watched process
//! but the load generator itself), the figure of the design's budget.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
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
    /// `ws` (`send_message` on the sender's socket) or `rest`.
    #[arg(long, default_value = "ws")]
    pub via: String,
    /// How members receive: `ws` (`/ws/{room}`) or `socketio` (rest-chat.md's
    /// Socket.IO at `/socket.io/`, WebSocket transport, `join-chat-room`; the sender
    /// then sends on a `/ws` socket of its own unless `--via rest`).
    #[arg(long, default_value = "ws")]
    pub receivers: String,
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
    /// `ws` (`send_message` on the sender's socket) or `rest`.
    #[arg(long, default_value = "ws")]
    pub via: String,
}

/// How senders send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Ws,
    Rest,
}

impl Via {
    fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "ws" => Ok(Via::Ws),
            "rest" => Ok(Via::Rest),
            other => anyhow::bail!("--via must be ws or rest, not {other:?}"),
        }
    }
}

/// How members receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receivers {
    Ws,
    SocketIo,
}

impl Receivers {
    fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "ws" => Ok(Receivers::Ws),
            "socketio" => Ok(Receivers::SocketIo),
            other => anyhow::bail!("--receivers must be ws or socketio, not {other:?}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Receivers::Ws => "ws",
            Receivers::SocketIo => "socketio",
        }
    }
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
    /// Context switches per message sent, by process.
    switches: Value,
}

/// Readers' per-step histograms, merged when the run ends.
type Shared = Arc<std::sync::Mutex<Vec<hdrhistogram::Histogram<u64>>>>;

pub async fn run(stack: &Stack, sources: &[IpAddr], args: &Args) -> anyhow::Result<Value> {
    let steps = if args.search { args.max_steps } else { 1 };
    let via = Via::parse(&args.via)?;
    let receivers = Receivers::parse(&args.receivers)?;
    let result =
        drive(stack, sources, args.rooms, args.members, args.rate, args.duration, steps, via, receivers).await?;
    Ok(result.with_name("fanout", args.rooms, args.members, args.max_p99_ms, args.search, via, receivers))
}

pub async fn run_big(stack: &Stack, sources: &[IpAddr], args: &BigArgs) -> anyhow::Result<Value> {
    let via = Via::parse(&args.via)?;
    let result = drive(stack, sources, 1, args.members, args.rate, args.duration, 1, via, Receivers::Ws).await?;
    Ok(result.with_name("bigroom", 1, args.members, f64::MAX, false, via, Receivers::Ws))
}

/// CPU milliseconds the stack (every watched process but the load generator) spent
/// per message sent, in all and per process.
fn cpu_per_message(cpu: &Value, sent: u64) -> Value {
    let Some(by) = cpu["by_process"].as_object() else { return Value::Null };
    if sent == 0 {
        return Value::Null;
    }
    let ms = |s: f64| (s * 1000.0 / sent as f64 * 1000.0).round() / 1000.0;
    let stack: f64 = by.iter().filter(|(k, _)| k.as_str() != "loadgen").filter_map(|(_, v)| v.as_f64()).sum();
    let per: serde_json::Map<String, Value> = by
        .iter()
        .filter(|(k, _)| k.as_str() != "loadgen")
        .map(|(k, v)| (k.clone(), json!(ms(v.as_f64().unwrap_or(0.0)))))
        .collect();
    json!({"total": ms(stack), "by_process": per})
}

struct Outcome {
    steps: Vec<Step>,
}

impl Outcome {
    #[allow(clippy::too_many_arguments)]
    fn with_name(
        self,
        name: &str,
        rooms: usize,
        members: usize,
        max_p99: f64,
        search: bool,
        via: Via,
        receivers: Receivers,
    ) -> Value {
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
                    "cpu_ms_per_message": cpu_per_message(&s.cpu, s.sent),
                    "context_switches_per_message": s.switches,
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
                "{name}: {} rooms x {} members receiving over {}, sent over {}; at {} msg/s: {:.0} deliveries/s, send->deliver p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; stack CPU {} ms per message{}",
                rooms,
                members,
                if receivers == Receivers::SocketIo { "Socket.IO" } else { "/ws" },
                if via == Via::Ws { "/ws" } else { "REST" },
                s.rate,
                s.delivered as f64 / s.wall,
                s.hist.value_at_quantile(0.5) as f64 / 1000.0,
                s.hist.value_at_quantile(0.99) as f64 / 1000.0,
                s.hist.value_at_quantile(0.999) as f64 / 1000.0,
                cpu_per_message(&s.cpu, s.sent)["total"],
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
            "via": if via == Via::Ws { "ws" } else { "rest" },
            "receivers": receivers.name(),
            "max_p99_ms": if search { json!(max_p99) } else { Value::Null },
            "best_rate": best.map(|s| s.rate),
            "deliveries_per_s": headline.map(|s| (s.delivered as f64 / s.wall).round()),
            "latency": headline.map(|s| crate::percentiles(&s.hist)),
            "cpu_ms_per_message": headline.map(|s| cpu_per_message(&s.cpu, s.sent)),
            "context_switches_per_message": headline.map(|s| s.switches.clone()),
            "steps": steps,
            "summary": summary,
        })
    }
}

/// Per-step counters shared by the readers and the scheduler.
struct Counters {
    /// Messages whose persisted answer arrived, per step.
    acked: Vec<AtomicU64>,
    /// Sends answered with an error (or failed to go out), per step.
    failed: Vec<AtomicU64>,
    /// `message` frames carrying a step's timestamp, per step.
    delivered: Vec<AtomicU64>,
}

impl Counters {
    fn new(steps: usize) -> Arc<Self> {
        let zeros = || (0..steps).map(|_| AtomicU64::new(0)).collect();
        Arc::new(Self { acked: zeros(), failed: zeros(), delivered: zeros() })
    }
}

/// The step of a frame whose content is `t:<step>:<ns>`, and that timestamp.
fn stamp(text: &str) -> Option<(usize, i64)> {
    let i = text.find("\"content\":\"t:")?;
    let mut parts = text[i + 13..].split([':', '"']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    stack: &Stack,
    sources: &[IpAddr],
    rooms: usize,
    members: usize,
    rate: u64,
    duration: u64,
    steps: usize,
    via: Via,
    receivers: Receivers,
) -> anyhow::Result<Outcome> {
    // Rooms, then every member's socket.
    let mut room_ids = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let users: Vec<String> = (0..members).map(|m| format!("r{r}m{m}")).collect();
        room_ids.push(stack.room(&users).await?);
    }
    let counters = Counters::new(steps);
    let shared: Shared = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let connecting = Arc::new(Semaphore::new(256));
    let mut readers = Vec::new();
    // Each room's sender socket takes frames to send from this channel.
    let mut senders: Vec<mpsc::UnboundedSender<String>> = Vec::with_capacity(rooms);
    eprintln!("connecting {} sockets...", rooms * members);
    for (r, room) in room_ids.iter().enumerate() {
        for m in 0..members {
            let permit = connecting.clone().acquire_owned().await?;
            let source = sources.get((r * members + m) % sources.len().max(1)).copied();
            let user = format!("r{r}m{m}");
            let socketio = receivers == Receivers::SocketIo;
            let ws = if socketio {
                stack.connect_socketio(room, &user, source).await?
            } else {
                stack.connect(room, &user, source).await?
            };
            let mut outgoing = None;
            if m == 0 {
                let (tx, rx) = mpsc::unbounded_channel::<String>();
                senders.push(tx);
                if socketio && via == Via::Ws {
                    // rest-chat.md's Socket.IO has no send: the sender sends on a /ws
                    // socket of its own, whose deliveries are not counted.
                    let sender = stack.connect(room, &user, source).await?;
                    readers.push(tokio::spawn(read(
                        sender,
                        Some(rx),
                        Count::SendsOnly,
                        steps,
                        counters.clone(),
                        shared.clone(),
                        stop_rx.clone(),
                    )));
                } else {
                    outgoing = Some(rx);
                }
            }
            drop(permit);
            let count = if socketio { Count::SocketIo } else { Count::Everything };
            readers.push(tokio::spawn(read(
                ws,
                outgoing,
                count,
                steps,
                counters.clone(),
                shared.clone(),
                stop_rx.clone(),
            )));
        }
    }
    eprintln!("connected; sending");

    let mut outcome = Outcome { steps: Vec::new() };
    let mut step_rate = rate.max(1);
    for step in 0..steps {
        let cpu_before = crate::procstat::cpu_seconds();
        let switches_before = crate::procstat::switches();
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / step_rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut n: u64 = 0;
        let until = started + Duration::from_secs(duration);
        let mut inflight = Vec::new();
        while Instant::now() < until {
            tick.tick().await;
            let r = (n as usize) % rooms;
            let content = format!("t:{step}:{}", now_ns());
            match via {
                Via::Ws => {
                    let frame = json!({"type": "send_message", "data": {"content": content, "local_id": format!("t{step}-{n}")}});
                    if senders[r].send(frame.to_string()).is_err() {
                        counters.failed[step].fetch_add(1, Ordering::Relaxed);
                    }
                }
                Via::Rest => {
                    let (stack, room, counters) = (stack.clone(), room_ids[r].clone(), counters.clone());
                    inflight.push(tokio::spawn(async move {
                        match stack.send(&room, &format!("r{r}m0"), &content).await {
                            Ok(_) => counters.acked[step].fetch_add(1, Ordering::Relaxed),
                            Err(_) => counters.failed[step].fetch_add(1, Ordering::Relaxed),
                        };
                    }));
                    if inflight.len() >= 4096 {
                        inflight.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
                    }
                }
            }
            n += 1;
        }
        for t in inflight {
            let _ = t.await;
        }
        // Let the last answers and deliveries arrive.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let wall = started.elapsed().as_secs_f64() - 2.0;
        let cpu = crate::procstat::cpu_delta(&cpu_before, &crate::procstat::cpu_seconds());
        let total: f64 = cpu.values().sum();
        let (sent, failed, delivered) = (
            counters.acked[step].load(Ordering::Relaxed),
            counters.failed[step].load(Ordering::Relaxed),
            counters.delivered[step].load(Ordering::Relaxed),
        );
        outcome.steps.push(Step {
            rate: step_rate,
            sent,
            failed,
            delivered,
            hist: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2)?,
            wall,
            cpu: json!({"by_process": cpu, "total": (total * 100.0).round() / 100.0}),
            switches: crate::procstat::switches_per(&switches_before, &crate::procstat::switches(), sent),
        });
        eprintln!(
            "step {step}: {step_rate} msg/s offered, {n} sent, {sent} persisted, {failed} failed, {delivered} delivered"
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

/// What a reader counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    /// A /ws socket: deliveries, and the answers to its own sends.
    Everything,
    /// The sender's extra /ws socket next to Socket.IO receivers: only its sends.
    SendsOnly,
    /// A Socket.IO receiver: deliveries (`new-message`); it answers Engine.IO pings.
    SocketIo,
}

/// Reads one socket until the run stops, sending what `outgoing` gives it, and merges
/// its latency histograms into `shared` at the end.
async fn read(
    ws: crate::client::Socket,
    mut outgoing: Option<mpsc::UnboundedReceiver<String>>,
    count: Count,
    steps: usize,
    counters: Arc<Counters>,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let mut hists: Vec<hdrhistogram::Histogram<u64>> =
        (0..steps).map(|_| hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2)).collect::<Result<_, _>>()?;
    loop {
        let next_out = async {
            match outgoing.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => break,
            frame = next_out => match frame {
                Some(frame) => {
                    if let Err(e) = sink.send(Message::text(frame)).await {
                        eprintln!("send failed: {e}");
                        break;
                    }
                }
                None => outgoing = None,
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if count == Count::SocketIo && t.as_str() == "2" {
                        if sink.send(Message::text("3")).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    let Some((step, ns)) = stamp(&t) else {
                        if t.contains("\"error\"") && t.contains("\"local_id\":\"t")
                            && let Some(step) = t.split("\"local_id\":\"t").nth(1).and_then(|r| r.split('-').next()).and_then(|s| s.parse::<usize>().ok())
                            && step < steps
                        {
                            counters.failed[step].fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    };
                    if step >= steps {
                        continue;
                    }
                    if t.contains("\"message_sent\"") {
                        counters.acked[step].fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if count == Count::SendsOnly {
                        continue;
                    }
                    let us = ((now_ns() - ns) / 1000).max(1) as u64;
                    let _ = hists[step].record(us.min(60_000_000));
                    counters.delivered[step].fetch_add(1, Ordering::Relaxed);
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
    Ok(())
}
