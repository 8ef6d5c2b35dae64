//! The load generator. It drives the stack only through the public REST and
//! WebSocket APIs, as real clients would, and prints one JSON line of results per
//! scenario plus a short human summary:
//!
//! - `fanout`: R rooms x M members, all connected; senders at a fixed open-loop rate
//!   (each send is fired on schedule, never waiting for the previous one, so slow
//!   replies cannot hide latency); deliveries/s and send->deliver latency from a
//!   timestamp carried in the message. `--search` finds the highest rate whose p99
//!   stays within a bound.
//! - `bigroom`: the same with one room of many members and one sender.
//! - `connect`: the time for N members to connect to one room, and the frames the
//!   room's sockets get meanwhile.
//! - `persist`: messages stored and acknowledged per second, over REST or WebSocket.
//! - `idle`: many idle sockets over several source addresses; gateway memory per socket.
//! - `history`: history pages per second from a room with many messages.
//! - `search`: message searches per second and their latency, for a tenant with many
//!   messages in many rooms.
//! - `reaction`: what a reaction costs against a message: messages, then reaction
//!   changes, into rooms whose members are all connected; CPU per operation of each.
//! - `chart`: draws `BENCHMARKS.svg` from the JSON lines.
//!
//! Every scenario records the CPU seconds each process used (from `/proc`), so figures
//! can be read per CPU-second: the generator shares the machine with the stack.

pub mod chart;
pub mod client;
pub mod procstat;
pub mod scenarios;

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::Value;

/// Command-line interface.
#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Drive the chat backend through its public APIs and measure it")]
pub struct Cli {
    /// The gateway.
    #[arg(long, env = "LOADGEN_URL", default_value = "http://127.0.0.1:8000", global = true)]
    pub url: String,
    /// The operator key (a benchmark tenant with a high rate limit is created with it).
    #[arg(long, env = "CHAT_ADMIN_API_KEY", global = true, default_value = "")]
    pub admin_key: String,
    /// Local source addresses for sockets, e.g. 127.0.0.1,127.0.0.2 (each gives
    /// ~28,000 ephemeral ports towards one gateway port).
    #[arg(long, value_delimiter = ',', global = true, default_value = "127.0.0.1")]
    pub sources: Vec<IpAddr>,
    /// Append the JSON result line to this file as well.
    #[arg(long, global = true)]
    pub out: Option<PathBuf>,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Many rooms, every member connected, senders at a fixed rate.
    Fanout(scenarios::fanout::Args),
    /// One big room, one sender.
    Bigroom(scenarios::fanout::BigArgs),
    /// N members connecting to one room.
    Connect(scenarios::connect::Args),
    /// Messages stored and acknowledged per second.
    Persist(scenarios::persist::Args),
    /// Idle sockets and gateway memory per socket.
    Idle(scenarios::idle::Args),
    /// History pages per second.
    History(scenarios::history::Args),
    /// Message searches per second.
    Search(scenarios::search::Args),
    /// What a reaction costs against a message.
    Reaction(scenarios::reaction::Args),
    /// Draw the chart from result lines.
    Chart(chart::Args),
}

/// Runs one scenario.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let stack = || async {
        anyhow::ensure!(!cli.admin_key.is_empty(), "--admin-key (or CHAT_ADMIN_API_KEY) is required");
        client::Stack::new(&cli.url, &cli.admin_key).await
    };
    let result = match &cli.scenario {
        Scenario::Chart(a) => return chart::draw(a),
        Scenario::Fanout(a) => scenarios::fanout::run(&stack().await?, &cli.sources, a).await?,
        Scenario::Bigroom(a) => scenarios::fanout::run_big(&stack().await?, &cli.sources, a).await?,
        Scenario::Connect(a) => scenarios::connect::run(&stack().await?, &cli.sources, a).await?,
        Scenario::Persist(a) => scenarios::persist::run(&stack().await?, &cli.sources, a).await?,
        Scenario::Idle(a) => scenarios::idle::run(&stack().await?, &cli.sources, a).await?,
        Scenario::History(a) => scenarios::history::run(&stack().await?, a).await?,
        Scenario::Search(a) => scenarios::search::run(&stack().await?, a).await?,
        Scenario::Reaction(a) => scenarios::reaction::run(&stack().await?, &cli.sources, a).await?,
    };
    // A scenario with checkpoints (idle) gives one result line per checkpoint.
    match result {
        Value::Array(lines) => lines.iter().try_for_each(|r| report(r, cli.out.as_deref())),
        one => report(&one, cli.out.as_deref()),
    }
}

/// Prints the JSON line and a summary, and appends the line to `out`.
fn report(result: &Value, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut result = result.clone();
    result["at"] = serde_json::json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    result["cores"] = serde_json::json!(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    let line = serde_json::to_string(&result)?;
    println!("{line}");
    if let Some(summary) = result.get("summary").and_then(Value::as_str) {
        eprintln!("{summary}");
    }
    if let Some(path) = out {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

/// Latency percentiles of a histogram in microseconds, as milliseconds.
pub fn percentiles(h: &hdrhistogram::Histogram<u64>) -> Value {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    serde_json::json!({"p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": h.max() as f64 / 1000.0, "count": h.len()})
}

/// A histogram for latencies in microseconds, from 1 us to 60 s.
pub fn histogram() -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    Ok(hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)?)
}
