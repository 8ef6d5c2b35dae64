//! `search`: message searches per second and their latency (`GET /search?q=`) for a
//! tenant with `--messages` messages in `--rooms` rooms, the searcher a member of
//! `--member-of` of them (issue 24's target: p99 <= 50 ms at 1,000,000 messages in
//! 1,000 rooms, the caller in 50).
//!
//! Messages are seeded over REST (many senders in parallel, one room each at a time),
//! each 6 to 18 words drawn from a synthetic vocabulary with a Zipf-like (log-uniform
//! rank) distribution, so a few words are in most messages and most words are rare, as
//! in real text. Queries mix one word, two words, a phrase of two adjacent words and a
//! prefix, their words drawn uniformly from the vocabulary (what people look for is
//! rarely the commonest word); a second measure, `common_latency`, searches only the
//! ten commonest words, the worst case (each matches a large share of the caller's
//! messages, all of which are ranked).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng as _;
use serde_json::{Value, json};

use crate::client::Stack;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Messages in the tenant (seeded first, over REST).
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Rooms they are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub rooms: u64,
    /// Rooms the searcher is a member of.
    #[arg(long, default_value_t = 50)]
    pub member_of: u64,
    /// Words in the vocabulary.
    #[arg(long, default_value_t = 20_000)]
    pub vocabulary: usize,
    /// Senders at once while seeding.
    #[arg(long, default_value_t = 128)]
    pub seeders: u64,
    /// Seconds to search for (each of the two measures).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Searches at once; several (`1,2,8`) measure each in turn on the same seeded
    /// tenant, one result line each (a latency target is read where the box is not
    /// saturated; the highest is the throughput).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 8])]
    pub concurrency: Vec<usize>,
    /// Search a tenant seeded earlier (by an earlier run, or in SQL) with this API key,
    /// as user `searcher`, instead of creating and seeding one: the seeding of a million
    /// messages takes minutes, the measure seconds.
    #[arg(long)]
    pub api_key: Option<String>,
}

/// Syllables the synthetic words are made of.
const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "ba", "de", "fu", "go", "hi", "ju", "ki", "la", "mo", "nu",
    "pe", "ri", "so", "tu", "ya",
];

/// The `rank`-th word of the vocabulary (distinct for distinct ranks).
fn word(rank: usize) -> String {
    let mut n = rank;
    let mut w = String::new();
    loop {
        w.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
        if n == 0 {
            break;
        }
    }
    // Every word has at least two syllables, so prefixes of 3+ letters are meaningful.
    if w.len() < 4 {
        w.push_str("ro");
    }
    w
}

/// A rank with a Zipf-like distribution: log-uniform over `1..=n`.
fn zipf_rank(rng: &mut impl rand::Rng, n: usize) -> usize {
    let u: f64 = rng.random();
    ((n as f64).powf(u) as usize).clamp(1, n) - 1
}

fn sentence(rng: &mut impl rand::Rng, n: usize) -> String {
    let len = rng.random_range(6..=18);
    (0..len).map(|_| word(zipf_rank(rng, n))).collect::<Vec<_>>().join(" ")
}

fn query(rng: &mut impl rand::Rng, n: usize, common: bool) -> String {
    let pick = |rng: &mut dyn rand::RngCore| {
        if common { rng.random_range(0..10) } else { rng.random_range(0..n) }
    };
    match rng.random_range(0..4) {
        0 => word(pick(rng)),
        1 => format!("{} {}", word(pick(rng)), word(pick(rng))),
        2 => {
            // A phrase that occurs: two adjacent words of a fresh sentence.
            let s = sentence(rng, n);
            let words: Vec<&str> = s.split(' ').collect();
            let i = rng.random_range(0..words.len() - 1);
            format!("\"{} {}\"", words[i], words[i + 1])
        }
        _ => {
            let w = word(pick(rng));
            format!("{}*", &w[..3.min(w.len())])
        }
    }
}

/// Creates the rooms and sends the messages; returns the seconds it took.
async fn seed(stack: &Stack, args: &Args) -> anyhow::Result<f64> {
    // Rooms: room i is created by sender s<i>; the searcher is in the first member_of.
    let mut rooms = Vec::with_capacity(args.rooms as usize);
    for chunk in (0..args.rooms).collect::<Vec<_>>().chunks(32) {
        let made = futures_util::future::join_all(chunk.iter().map(|&i| {
            let mut members = vec![format!("s{i}"), format!("r{i}")];
            if i < args.member_of {
                members.push("searcher".to_owned());
            }
            async move { stack.room(&members).await }
        }))
        .await;
        for room in made {
            rooms.push(room?);
        }
    }
    let rooms = Arc::new(rooms);
    let seeded = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.seeders {
        let (stack, rooms, next) = (stack.clone(), rooms.clone(), next.clone());
        let (total, vocabulary) = (args.messages, args.vocabulary);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(());
                }
                let r = (i % rooms.len() as u64) as usize;
                let text = sentence(&mut rand::rng(), vocabulary);
                stack.send(&rooms[r], &format!("s{r}"), &text).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(seeded.elapsed().as_secs_f64())
}

fn encode(q: &str) -> String {
    q.bytes().map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
}

pub async fn run(stack: &Stack, args: &Args) -> anyhow::Result<Value> {
    anyhow::ensure!(args.member_of <= args.rooms && args.rooms > 0, "--member-of must be at most --rooms");
    let (stack, seed_secs) = match &args.api_key {
        Some(key) => (Stack { api_key: key.clone(), ..stack.clone() }, 0.0),
        None => (stack.clone(), seed(stack, args).await?),
    };
    let stack = &stack;
    let mut lines = Vec::new();
    for &concurrency in &args.concurrency {
        lines.push(measure(stack, args, concurrency, seed_secs).await?);
    }
    Ok(Value::Array(lines))
}

/// Searches `concurrency` at a time for `--duration`, the mix then the commonest words.
async fn measure(stack: &Stack, args: &Args, concurrency: usize, seed_secs: f64) -> anyhow::Result<Value> {
    let mut results = Vec::new();
    for common in [false, true] {
        let (figures, wall, cpu) = super::measured(|| async {
            let deadline = Instant::now() + Duration::from_secs(args.duration);
            let mut tasks = Vec::new();
            for _ in 0..concurrency.max(1) {
                let (stack, vocabulary) = (stack.clone(), args.vocabulary);
                tasks.push(tokio::spawn(async move {
                    let mut hist = crate::histogram()?;
                    let mut found = 0u64;
                    while Instant::now() < deadline {
                        let q = query(&mut rand::rng(), vocabulary, common);
                        let started = Instant::now();
                        let res = stack
                            .http
                            .get(format!("{}/search?q={}&limit=20", stack.url, encode(&q)))
                            .header("X-API-Key", &stack.api_key)
                            .header("X-User-Id", "searcher")
                            .send()
                            .await?;
                        anyhow::ensure!(res.status().is_success(), "search {q:?}: {}", res.status());
                        let body: Value = res.json().await?;
                        hist.record(started.elapsed().as_micros() as u64)?;
                        found += body["results"].as_array().map_or(0, |r| r.len() as u64);
                    }
                    anyhow::Ok((hist, found))
                }));
            }
            let mut all = crate::histogram()?;
            let mut found = 0u64;
            for t in tasks {
                let (h, f) = t.await??;
                all.add(h)?;
                found += f;
            }
            Ok(json!({"searches": all.len(), "results": found, "latency": crate::percentiles(&all)}))
        })
        .await?;
        results.push((figures, wall, cpu));
    }
    let [(mixed, wall, cpu), (common, _, common_cpu)] =
        <[_; 2]>::try_from(results).map_err(|_| anyhow::anyhow!("two measures expected"))?;
    let searches = mixed["searches"].as_u64().unwrap_or(0) as f64;
    let summary = format!(
        "search: {} at once: {:.0} searches/s over {} messages in {} rooms (caller in {}), p99 {} ms (the ten commonest words: p99 {} ms); seeded in {:.0} s",
        concurrency,
        searches / wall,
        args.messages,
        args.rooms,
        args.member_of,
        mixed["latency"]["p99_ms"],
        common["latency"]["p99_ms"],
        seed_secs,
    );
    Ok(json!({
        "scenario": "search",
        "messages": args.messages,
        "rooms": args.rooms,
        "member_of": args.member_of,
        "vocabulary": args.vocabulary,
        "concurrency": concurrency,
        "duration_s": (wall * 100.0).round() / 100.0,
        "searches_per_s": (searches / wall).round(),
        "results_per_search": if searches > 0.0 { mixed["results"].as_f64().unwrap_or(0.0) / searches } else { 0.0 },
        "latency": mixed["latency"],
        "common_latency": common["latency"],
        "seed_s": seed_secs.round(),
        "cpu_seconds": cpu,
        "common_cpu_seconds": common_cpu,
        "summary": summary,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_and_queries_parse_as_text() {
        let words: std::collections::BTreeSet<String> = (0..5000).map(word).collect();
        assert_eq!(words.len(), 5000);
        let mut rng = rand::rng();
        for _ in 0..100 {
            let q = query(&mut rng, 5000, false);
            assert!(!q.is_empty() && q.len() < 256);
        }
    }
}
