//! CPU seconds, context switches and resident memory of the processes on this machine,
//! from `/proc`, so figures can be given per CPU-second (the load generator shares the
//! machine). Context switches are a count, not a time: on a virtual machine whose speed
//! drifts from one minute to the next they compare across runs where CPU seconds do not.
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

/// Context switches (voluntary and involuntary) of one process, summed over its threads.
/// A thread that ended takes its count along, so a process that ends threads between two
/// readings shows fewer than it made.
fn switches_of(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        tasks
            .filter_map(|t| t.ok())
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .map(|status| {
                status
                    .lines()
                    .filter(|l| {
                        l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:")
                    })
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum(),
    )
}

/// Context switches so far of each watched process name (summed over its processes).
pub fn switches() -> BTreeMap<String, u64> {
    WATCHED.iter().map(|name| (name.to_string(), pids_named(name).into_iter().filter_map(switches_of).sum())).collect()
}

/// Context switches per message between two readings, by process and for the stack (the
/// load generator's own beside it, not in the total).
pub fn switches_per(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, messages: u64) -> serde_json::Value {
    if messages == 0 {
        return serde_json::Value::Null;
    }
    let per = |n: u64| (n as f64 / messages as f64 * 100.0).round() / 100.0;
    let by: BTreeMap<&str, u64> =
        after.iter().map(|(k, v)| (k.as_str(), v.saturating_sub(before.get(k).copied().unwrap_or(0)))).collect();
    let stack: u64 = by.iter().filter(|(k, _)| **k != "loadgen").map(|(_, v)| v).sum();
    serde_json::json!({
        "total": per(stack),
        "by_process": by.iter().map(|(k, v)| (k.to_string(), per(*v))).collect::<BTreeMap<_, _>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_sleeps_is_counted_switching() -> anyhow::Result<()> {
        let me = std::process::id();
        let before = switches_of(me).ok_or_else(|| anyhow::anyhow!("no count for this process"))?;
        // Each sleep gives the CPU up: a voluntary switch of this thread.
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let after = switches_of(me).ok_or_else(|| anyhow::anyhow!("no count for this process"))?;
        assert!(after >= before + 5, "{before} -> {after}");
        Ok(())
    }

    #[test]
    fn switches_per_message_leave_the_load_generator_out_of_the_total() {
        let before: BTreeMap<String, u64> =
            [("gateway", 100), ("postgres", 50), ("loadgen", 10)].into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let after: BTreeMap<String, u64> = [("gateway", 1_100), ("postgres", 550), ("loadgen", 2_010)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let per = switches_per(&before, &after, 100);
        assert_eq!(per["total"], 15.0);
        assert_eq!(per["by_process"]["gateway"], 10.0);
        assert_eq!(per["by_process"]["loadgen"], 20.0);
        assert_eq!(switches_per(&before, &after, 0), serde_json::Value::Null);
    }
}
