//! Per-tenant rate limits across two gateway replicas: in every one-second window,
//! the requests let through on both gateways together stay within the tenant's limit,
//! and the rest are `429` with `Retry-After`.

use std::collections::BTreeMap;

use chat_test_support::TestStack;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn limit_holds_across_two_gateways() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let limit = 5;
    let t = stack.tenant_with(json!({"name": "limited", "rate_limit_per_sec": limit})).await?;
    let room = {
        // Creating the room counts too; wait for a fresh window by retrying on 429.
        let mut id = None;
        for _ in 0..50 {
            let res = t.user("a").post("/rooms", json!({"type": "group"})).await?;
            if res.status == StatusCode::CREATED {
                id = Some(res.str("room_id")?.to_owned());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        id.ok_or_else(|| anyhow::anyhow!("could not create a room under the limit"))?
    };
    let requests = (0..40).map(|i| {
        let c = t.user_on(i % 2, "a");
        let path = format!("/rooms/{room}");
        async move { c.get(&path).await }
    });
    // Per window (X-RateLimit-Reset names it): (allowed, refused).
    let mut windows: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    let mut refused_total = 0;
    for res in futures_util::future::join_all(requests).await {
        let res = res?;
        let reset: u64 = res.header("X-RateLimit-Reset").unwrap_or_default().parse()?;
        assert_eq!(res.header("X-RateLimit-Limit"), Some("5"));
        assert!(res.header("X-RateLimit-Remaining").is_some());
        let w = windows.entry(reset).or_default();
        match res.status {
            StatusCode::OK => w.0 += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                res.expect_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED", None)?;
                assert_eq!(res.header("Retry-After"), Some("1"));
                assert_eq!(res.header("X-RateLimit-Remaining"), Some("0"));
                w.1 += 1;
                refused_total += 1;
            }
            other => anyhow::bail!("unexpected {other}: {}", res.body),
        }
    }
    for (window, (allowed, refused)) in &windows {
        // The room creation above may have counted in the first window.
        assert!(*allowed <= limit, "window {window}: {allowed} allowed over two gateways, limit {limit}");
        if allowed + refused > limit + 1 {
            assert!(*refused > 0, "window {window}: over the limit but nothing refused");
        }
    }
    assert!(refused_total > 0 || windows.len() >= 8, "40 requests over few windows must see a 429: {windows:?}");
    stack.stop().await
}
