//! Waiting without timing assertions: [`eventually`] (and [`eventually_within`]) polls a
//! condition and [`bounded`]
//! bounds a future; the bounds only guard against hangs.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail};

/// Polls `check` until it returns true, for at most 30 s (a guard against hangs,
/// not a timing assertion).
pub async fn eventually<F, Fut>(what: &str, check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    eventually_within(what, 30, check).await
}

/// [`eventually`] with another bound, for what takes an engine's own time (a failover,
/// a cluster electing its leader): still a guard against hangs, generous for a loaded
/// machine.
pub async fn eventually_within<F, Fut>(what: &str, secs: u64, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut last = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = Some(e),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what} did not happen within {secs} s (last error: {last:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `fut` with a 60 s bound, so a hang fails the test instead of stalling the run.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    bounded_for(60, what, fut).await
}

/// Runs `fut` with a bound of `secs`.
pub async fn bounded_for<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(secs), fut).await.map_err(|_| anyhow!("{what} took over {secs} s"))
}
