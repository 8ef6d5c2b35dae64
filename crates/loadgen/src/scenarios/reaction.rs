//! `reaction`: what a reaction costs against a message (issue 23). `--concurrency`
//! rooms of `--members` members, every member connected on `/ws` (so each change is
//! fanned out to them, as a message is); one worker per room. Two closed-loop phases of
//! `--duration` seconds each, measured apart: the workers send messages over REST
//! (`POST /rooms/{id}/messages`), then toggle a reaction over REST (`PUT`, then
//! `DELETE .../reactions/{emoji}` on one message, each a change with its event). The
//! result gives each phase's operations per second, latency, and CPU milliseconds per
//! operation per process (from `/proc`), and the ratio of the stack's CPU per reaction
//! to its CPU per message.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::Stack;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Seconds each phase (messages, then reactions) runs for.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Rooms, one worker each (operations in flight at once).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Members per room, each with a `/ws` socket open.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
}

/// 👍, percent-encoded for the path.
const EMOJI: &str = "%F0%9F%91%8D";

/// The CPU of the stack (every watched process but the load generator) in `cpu`.
fn stack_cpu(cpu: &Value) -> f64 {
    cpu["by_process"]
        .as_object()
        .map(|m| m.iter().filter(|(name, _)| name.as_str() != "loadgen").filter_map(|(_, v)| v.as_f64()).sum())
        .unwrap_or(0.0)
}

/// CPU milliseconds per operation, per process and for the stack.
fn per_op(cpu: &Value, ops: f64) -> Value {
    let mut by = serde_json::Map::new();
    for (name, secs) in cpu["by_process"].as_object().into_iter().flatten() {
        let ms = secs.as_f64().unwrap_or(0.0) * 1000.0 / ops.max(1.0);
        by.insert(name.clone(), json!((ms * 1000.0).round() / 1000.0));
    }
    let stack = stack_cpu(cpu) * 1000.0 / ops.max(1.0);
    json!({"by_process": by, "stack": (stack * 1000.0).round() / 1000.0})
}

/// Runs `op(worker, n)` in a closed loop on every worker for `secs`; the operations done
/// and their latency.
async fn phase<F, Fut>(workers: usize, secs: u64, op: F) -> anyhow::Result<Value>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = crate::histogram()?;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let started = Instant::now();
                op(w, n).await?;
                hist.record(started.elapsed().as_micros() as u64)?;
                n += 1;
            }
            anyhow::Ok(hist)
        }));
    }
    let mut all = crate::histogram()?;
    for t in tasks {
        all.add(t.await??)?;
    }
    Ok(json!({"ops": all.len(), "latency": crate::percentiles(&all)}))
}

pub async fn run(stack: &Stack, sources: &[IpAddr], args: &Args) -> anyhow::Result<Value> {
    let members = args.members.max(1);
    let mut rooms = Vec::with_capacity(args.concurrency);
    let mut targets = Vec::with_capacity(args.concurrency);
    for i in 0..args.concurrency {
        let users: Vec<String> = (0..members).map(|m| format!("r{i}m{m}")).collect();
        let room = stack.room(&users).await?;
        targets.push(first_message(stack, &room, &users[0]).await?);
        rooms.push((room, users));
    }
    // Every member connected; each socket drained (and its frames counted) in a task.
    let delivered = Arc::new(AtomicU64::new(0));
    let mut drains = Vec::new();
    for (i, (room, users)) in rooms.iter().enumerate() {
        for (m, user) in users.iter().enumerate() {
            let source = sources.get((i * members + m) % sources.len().max(1)).copied();
            let mut ws = stack.connect(room, user, source).await?;
            let delivered = delivered.clone();
            drains.push(tokio::spawn(async move {
                while let Some(Ok(frame)) = ws.next().await {
                    if matches!(frame, Message::Text(_)) {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    let rooms = Arc::new(rooms);
    let targets = Arc::new(targets);

    let before = delivered.load(Ordering::Relaxed);
    let (messages, message_wall, message_cpu) = super::measured(|| {
        let (stack, rooms) = (stack.clone(), rooms.clone());
        phase(args.concurrency, args.duration, move |w, n| {
            let (stack, rooms) = (stack.clone(), rooms.clone());
            async move {
                let (room, users) = &rooms[w];
                stack.send(room, &users[0], &format!("m{n}")).await.map(drop)
            }
        })
    })
    .await?;
    let message_frames = delivered.load(Ordering::Relaxed) - before;
    let before = delivered.load(Ordering::Relaxed);
    let (reactions, reaction_wall, reaction_cpu) = super::measured(|| {
        let (stack, rooms, targets) = (stack.clone(), rooms.clone(), targets.clone());
        phase(args.concurrency, args.duration, move |w, n| {
            let (stack, rooms, targets) = (stack.clone(), rooms.clone(), targets.clone());
            async move {
                let (room, users) = &rooms[w];
                // Even: add; odd: take back. Each is a change, with its event.
                let add = n % 2 == 0;
                react(&stack, room, &targets[w], &users[0], add).await
            }
        })
    })
    .await?;
    let reaction_frames = delivered.load(Ordering::Relaxed) - before;
    for d in drains {
        d.abort();
    }

    let n_messages = messages["ops"].as_f64().unwrap_or(0.0);
    let n_reactions = reactions["ops"].as_f64().unwrap_or(0.0);
    let per_message = per_op(&message_cpu, n_messages);
    let per_reaction = per_op(&reaction_cpu, n_reactions);
    let (m_ms, r_ms) = (per_message["stack"].as_f64().unwrap_or(0.0), per_reaction["stack"].as_f64().unwrap_or(0.0));
    let ratio = if m_ms > 0.0 { (r_ms / m_ms * 100.0).round() / 100.0 } else { 0.0 };
    let summary = format!(
        "reaction: {:.0} reactions/s (p50 {} ms) vs {:.0} messages/s (p50 {} ms); stack CPU {r_ms:.3} ms per reaction vs \
         {m_ms:.3} ms per message ({ratio}x), {} rooms of {members} connected members",
        n_reactions / reaction_wall,
        reactions["latency"]["p50_ms"],
        n_messages / message_wall,
        messages["latency"]["p50_ms"],
        args.concurrency
    );
    Ok(json!({
        "scenario": "reaction",
        "concurrency": args.concurrency,
        "members": members,
        "duration_s": args.duration,
        "messages": {
            "ops_per_s": (n_messages / message_wall).round(),
            "latency": messages["latency"],
            "frames_delivered": message_frames,
            "cpu_ms_per_op": per_message,
            "cpu_seconds": message_cpu,
        },
        "reactions": {
            "ops_per_s": (n_reactions / reaction_wall).round(),
            "latency": reactions["latency"],
            "frames_delivered": reaction_frames,
            "cpu_ms_per_op": per_reaction,
            "cpu_seconds": reaction_cpu,
        },
        "reaction_to_message_cpu": ratio,
        "summary": summary,
    }))
}

/// Sends the message the room's reactions go on; its id.
async fn first_message(stack: &Stack, room: &str, user: &str) -> anyhow::Result<String> {
    let res = stack
        .http
        .post(format!("{}/rooms/{room}/messages", stack.url))
        .header("X-API-Key", &stack.api_key)
        .header("X-User-Id", user)
        .json(&json!({"content": "react to me"}))
        .send()
        .await?;
    let status = res.status();
    let body: Value = res.json().await?;
    if !status.is_success() {
        bail!("send: {status} {body}");
    }
    Ok(body["message_id"].as_str().context("no message_id")?.to_owned())
}

/// Adds (`add`) or takes back `user`'s 👍 on `message`.
async fn react(stack: &Stack, room: &str, message: &str, user: &str, add: bool) -> anyhow::Result<()> {
    let url = format!("{}/rooms/{room}/messages/{message}/reactions/{EMOJI}", stack.url);
    let req = if add { stack.http.put(url) } else { stack.http.delete(url) };
    let res = req.header("X-API-Key", &stack.api_key).header("X-User-Id", user).send().await?;
    let status = res.status();
    if !status.is_success() {
        bail!("reaction: {status} {}", res.text().await.unwrap_or_default());
    }
    Ok(())
}
