//! `GET /health` reports the gateway and every service behind it; `503` when one is
//! down. Also the Kubernetes probes and `/metrics`.

use chat_test_support::{Client, TestStack};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_every_service() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let c = Client::raw(&stack.base_url(0));
    let res = c.get("/health").await?.expect(StatusCode::OK)?;
    assert_eq!(res.body["status"], "ok");
    assert_eq!(res.body["db_writable"], true);
    assert!(res.body["uptime"].as_str().is_some_and(|u| u.ends_with('s')));
    for s in ["message-store", "presence", "notification"] {
        assert_eq!(res.body["services"][s]["status"], "ok", "{s}: {}", res.body);
    }
    c.get("/v1/health").await?.expect(StatusCode::OK)?;
    c.get("/healthz").await?.expect(StatusCode::OK)?;
    c.get("/readyz").await?.expect(StatusCode::OK)?;
    // The gateway's `/metrics` takes the operator key (security.rs).
    let metrics = stack.http.get(stack.url("/metrics")).header("X-API-Key", &stack.admin_key).send().await?;
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await?;
    assert!(text.contains("chat_gateway_http_requests_total"), "gateway metrics exported");
    assert!(text.contains("chat_bus_commands_total"), "bus metrics exported");
    // Every other service has its own ops endpoints.
    assert_eq!(stack.ops_ports.len(), 3);
    for (service, port) in &stack.ops_ports {
        let ops = Client::raw(&format!("http://127.0.0.1:{port}"));
        ops.get("/healthz").await?.expect(StatusCode::OK).map_err(|e| e.context(*service))?;
        ops.get("/readyz").await?.expect(StatusCode::OK).map_err(|e| e.context(*service))?;
        let m = ops.get("/metrics").await?.expect(StatusCode::OK)?;
        assert!(m.body.as_str().is_some_and(|t| t.contains("# TYPE")), "{service} exports metrics");
    }
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_503_when_a_service_is_down() -> anyhow::Result<()> {
    let stack = TestStack::builder().without_notification().start().await?;
    let res = Client::raw(&stack.base_url(0)).get("/health").await?.expect(StatusCode::SERVICE_UNAVAILABLE)?;
    assert_eq!(res.body["status"], "degraded");
    assert_eq!(res.body["services"]["notification"]["status"], "down");
    assert_eq!(res.body["services"]["message-store"]["status"], "ok");
    assert_eq!(res.body["db_writable"], true);
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_fail_cleanly_without_message_store() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let room = t.user("a").create_room("group", &[]).await?;
    stack.stop().await?;
    // A fresh stack with no message-store at all: the gateway answers 503, not a hang.
    let bare = TestStack::builder().message_stores(0).start().await?;
    let res = Client::raw(&bare.base_url(0))
        .with_header("X-API-Key", &t.api_key)
        .with_header("X-User-Id", "a")
        .get(&format!("/rooms/{room}"))
        .await?;
    res.expect_error(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", None)?;
    bare.stop().await
}
