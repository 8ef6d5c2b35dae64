//! CPU seconds and resident memory of the processes on this machine, from `/proc`, so
//! figures can be given per CPU-second (the load generator shares the machine).
//!
//! On a machine that runs other work on the same servers (another PostgreSQL client,
//! tests against the same NATS), set `LOADGEN_PROC_ROOTS` to a comma-separated list of
//! process ids: only those processes and their descendants are counted (e.g. the
//! benchmark stack's own postmaster, nats-server, redis-server and services).

use std::collections::BTreeMap;

/// The processes whose CPU we account for, by command name.
pub const WATCHED: [&str; 8] =
    ["gateway", "message-store", "presence", "notification", "nats-server", "postgres", "redis-server", "loadgen"];

/// Clock ticks per second for `/proc/<pid>/stat` (USER_HZ; 100 on Linux).
const TICKS: f64 = 100.0;

fn pids_named(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let roots = roots();
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name))
        .filter(|pid| name == "loadgen" || roots.is_empty() || descends(*pid, &roots))
        .collect()
}

/// `LOADGEN_PROC_ROOTS`, parsed.
fn roots() -> Vec<u32> {
    std::env::var("LOADGEN_PROC_ROOTS")
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether `pid` is one of `roots` or below one of them.
fn descends(mut pid: u32, roots: &[u32]) -> bool {
    for _ in 0..64 {
        if roots.contains(&pid) {
            return true;
        }
        let Some(parent) = parent_of(pid) else { return false };
        if parent <= 1 {
            return false;
        }
        pid = parent;
    }
    false
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of one process, in seconds.
fn cpu_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

/// CPU seconds used so far by each watched process name (summed over its processes).
pub fn cpu_seconds() -> BTreeMap<String, f64> {
    WATCHED.iter().map(|name| (name.to_string(), pids_named(name).into_iter().filter_map(cpu_of).sum())).collect()
}

/// The CPU each process used between two readings.
pub fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), ((v - before.get(k).copied().unwrap_or(0.0)) * 100.0).round() / 100.0))
        .collect()
}

/// Resident memory of each watched process name (summed over its processes), in bytes.
pub fn rss_all() -> BTreeMap<String, u64> {
    WATCHED.iter().map(|name| (name.to_string(), rss_bytes(name))).collect()
}

/// Resident memory of all processes named `name`, in bytes.
pub fn rss_bytes(name: &str) -> u64 {
    pids_named(name)
        .into_iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .filter_map(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        .map(|kb| kb * 1024)
        .sum()
}
