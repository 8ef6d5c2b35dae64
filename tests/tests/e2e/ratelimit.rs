//! Per-tenant rate limits across two gateway replicas (issue 9): each gateway spends
//! tokens it leased from the tenant's shared Redis counter, and in every one-second
//! window the requests let through on both gateways together stay within the limit and
//! reach at least 90% of it when more is asked for. The rest are `429
//! RATE_LIMIT_EXCEEDED` with `Retry-After`, and every answer carries the
//! `X-RateLimit-*` headers. Needs the shared NATS, PostgreSQL and Redis.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_test_support::{Response, TestStack, bounded};
use reqwest::StatusCode;
use serde_json::json;

/// Large enough that 10% of it is more than rounding (a chunk is 2 tokens).
const LIMIT: u32 = 50;
/// Requests in flight per gateway; each worker sends again `PAUSE` after its last
/// answer, so each gateway alone is offered several times the limit.
const WORKERS_PER_GATEWAY: usize = 4;
const PAUSE: Duration = Duration::from_millis(10);
/// How long the load is offered: at least three whole windows fall inside it.
const LOAD: Duration = Duration::from_millis(4500);

/// Answers of one window (`X-RateLimit-Reset` - 1), both gateways together.
#[derive(Debug, Default)]
struct Window {
    allowed: u32,
    refused: u32,
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_holds_across_two_gateways_within_ten_percent() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack.tenant_with(json!({"name": "limited", "rate_limit_per_sec": LIMIT})).await?;
    let room = t.user("a").create_room("group", &[]).await?;

    let started = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let deadline = tokio::time::Instant::now() + LOAD;
    let workers = (0..2 * WORKERS_PER_GATEWAY).map(|i| {
        let client = t.user_on(i % 2, "a");
        let path = format!("/rooms/{room}");
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while tokio::time::Instant::now() < deadline {
                answers.push(client.get(&path).await?);
                tokio::time::sleep(PAUSE).await;
            }
            anyhow::Ok(answers)
        })
    });
    let answers = bounded("the load", futures_util::future::try_join_all(workers)).await??;
    let answers = answers.into_iter().collect::<anyhow::Result<Vec<Vec<Response>>>>()?;

    let mut windows: BTreeMap<u64, Window> = BTreeMap::new();
    for res in answers.into_iter().flatten() {
        let reset = check_headers(&res)?;
        let w = windows.entry(reset - 1).or_default();
        match res.status {
            StatusCode::OK => w.allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                res.expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED", None)?;
                anyhow::ensure!(res.header("Retry-After") == Some("1"), "Retry-After: {:?}", res.headers);
                anyhow::ensure!(res.header("X-RateLimit-Remaining") == Some("0"), "a refusal leaves nothing");
                w.refused += 1;
            }
            other => anyhow::bail!("unexpected {other}: {}", res.body),
        }
    }

    // Only windows the load covered from start to end: the first and last are partial,
    // and how much of them was offered depends on the machine.
    let (from, until) = (started.as_secs() + 1, (started + LOAD).as_secs());
    let mut over_the_limit = 0;
    for window in from..until {
        let (allowed, refused) = windows.get(&window).map_or((0, 0), |w| (w.allowed, w.refused));
        let offered = allowed + refused;
        anyhow::ensure!(allowed <= LIMIT, "window {window}: {allowed} let through by two gateways, limit {LIMIT}");
        // With fewer than the limit offered, everything must pass; with more, 90% of
        // the limit at least.
        anyhow::ensure!(
            allowed * 10 >= offered.min(LIMIT) * 9,
            "window {window}: {allowed} let through of {offered} offered, limit {LIMIT}: {windows:?}"
        );
        over_the_limit += u32::from(offered >= 2 * LIMIT);
    }
    anyhow::ensure!(
        over_the_limit >= 2,
        "the load did not reach twice the limit in two whole windows, nothing was proven: {windows:?}"
    );
    stack.stop().await
}

/// Checks the `X-RateLimit-*` headers every answer carries; returns the window's reset.
fn check_headers(res: &Response) -> anyhow::Result<u64> {
    let limit = LIMIT.to_string();
    anyhow::ensure!(res.header("X-RateLimit-Limit") == Some(limit.as_str()), "X-RateLimit-Limit: {:?}", res.headers);
    let remaining: u32 = res.header("X-RateLimit-Remaining").unwrap_or_default().parse()?;
    anyhow::ensure!(remaining <= LIMIT, "X-RateLimit-Remaining {remaining} over the limit");
    let reset: u64 = res.header("X-RateLimit-Reset").unwrap_or_default().parse()?;
    anyhow::ensure!(reset > 0, "X-RateLimit-Reset {reset}");
    Ok(reset)
}
