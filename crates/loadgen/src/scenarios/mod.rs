//! One module per scenario.

pub mod connect;
pub mod fanout;
pub mod history;
pub mod idle;
pub mod persist;
pub mod reaction;
pub mod search;

use std::time::Instant;

use serde_json::{Value, json};

use crate::procstat;

/// Measures a scenario's wall time and every process's CPU seconds around `f`.
pub async fn measured<F, Fut>(f: F) -> anyhow::Result<(Value, f64, Value)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Value>>,
{
    let cpu_before = procstat::cpu_seconds();
    let started = Instant::now();
    let figures = f().await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = procstat::cpu_delta(&cpu_before, &procstat::cpu_seconds());
    let total: f64 = cpu.values().sum();
    Ok((figures, wall, json!({"by_process": cpu, "total": (total * 100.0).round() / 100.0})))
}
