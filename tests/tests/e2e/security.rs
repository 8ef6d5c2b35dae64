//! What the outside review of issue 25 found on the gateway's own surface (the contract
//! is `contract.rs`): request metrics whose labels a client could multiply without end
//! (finding 6), a public `/metrics` that listed tenant ids, pages sent without security
//! headers, and request bodies that could trickle in forever (finding 7). Each test
//! fails on the gateway before the fix.

use std::time::Duration;

use chat_test_support::{TestStack, unique};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `GET /metrics` with the operator key.
async fn metrics(stack: &TestStack) -> anyhow::Result<String> {
    let res = stack.http.get(stack.url("/metrics")).header("X-API-Key", &stack.admin_key).send().await?;
    assert_eq!(res.status(), StatusCode::OK);
    Ok(res.text().await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_methods_and_paths_do_not_become_metric_labels() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let marker = unique("zq");
    let method = Method::from_bytes(format!("BREW{}", marker.len()).as_bytes())?;
    for path in [
        format!("/{marker}"),
        format!("/v1/{marker}"),
        format!("/api/chat/{marker}/x/y"),
        format!("/rooms/{marker}/nothing/{marker}"),
    ] {
        let res = stack.http.request(Method::GET, stack.url(&path)).send().await?;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let res = stack.http.request(method.clone(), stack.url(&path)).send().await?;
        assert!(res.status().is_client_error(), "{method} {path}: {}", res.status());
    }
    let res = stack.http.request(method.clone(), stack.url("/healthz")).send().await?;
    assert!(res.status().is_client_error());
    let text = metrics(&stack).await?;
    let requests: Vec<&str> = text.lines().filter(|l| l.starts_with("chat_gateway_http_requests_total{")).collect();
    assert!(!requests.is_empty());
    for line in text.lines().filter(|l| l.starts_with("chat_gateway_http_")) {
        assert!(!line.contains(&marker), "a path became a label: {line}");
        assert!(!line.contains(method.as_str()), "a method became a label: {line}");
    }
    assert!(
        requests.iter().any(|l| l.contains("method=\"OTHER\"") && l.contains("route=\"unmatched\"")),
        "unknown methods and paths are counted under one value: {requests:?}"
    );
    assert!(requests.iter().any(|l| l.contains("route=\"/healthz\"")), "a mounted pattern is its own label");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_take_the_operator_key() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    // A tenant with a series of its own (a message stored through this gateway).
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    t.user("alice").send(&room, "counted").await?;
    let url = stack.url("/metrics");
    for (what, req) in [
        ("no key", stack.http.get(&url)),
        ("a tenant's key", stack.http.get(&url).header("X-API-Key", &t.api_key)),
        ("a made-up key", stack.http.get(&url).bearer_auth("sk_admin_made_up")),
    ] {
        let res = req.send().await?;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        let body: Value = res.json().await?;
        assert_eq!(body["error"]["code"], "AUTHENTICATION_ERROR", "{what}: {body}");
        assert!(!body.to_string().contains(&t.id), "{what}");
    }
    let text = metrics(&stack).await?;
    assert!(text.contains(&format!("tenant=\"{}\"", t.id)), "the operator sees the tenant's series");
    // As a Prometheus scrape config's `authorization` sends it.
    let res = stack.http.get(&url).bearer_auth(&stack.admin_key).send().await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await?.contains("chat_gateway_http_requests_total"));
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_send_security_headers() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    for path in ["/", "/admin", "/app/app.js", "/app/style.css"] {
        let res = stack.http.get(stack.url(path)).send().await?;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let header =
            |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned).unwrap_or_default();
        let csp = header("content-security-policy");
        for directive in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
            assert!(csp.contains(directive), "{path}: {directive} missing from {csp:?}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
    }
    stack.stop().await
}

/// Sends `head` and then the body one byte at a time, `every` apart, until the server
/// answers (or the body is all sent); returns the answer's status and body.
async fn trickle(port: u16, head: &str, body: &[u8], every: Duration) -> anyhow::Result<(u16, Value)> {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.write_all(head.as_bytes()).await?;
    let (mut read, mut write) = tcp.into_split();
    let writer = async move {
        for byte in body {
            tokio::time::sleep(every).await;
            if write.write_all(std::slice::from_ref(byte)).await.is_err() {
                break;
            }
        }
        // Keep the connection open: the answer is what is awaited.
        std::future::pending::<()>().await;
    };
    let reader = async move {
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = read.read(&mut chunk).await?;
            raw.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|l| {
                    l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim())
                });
                if length.and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| body.len() >= l) || n == 0 {
                    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    return anyhow::Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)));
                }
            }
            if n == 0 {
                anyhow::bail!("closed without an answer: {text:?}");
            }
        }
    };
    tokio::select! {
        answer = reader => answer,
        () = writer => unreachable!(),
        () = tokio::time::sleep(Duration::from_secs(60)) => anyhow::bail!("no answer in 60 s: the body never timed out"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_trickles_in_is_cut_off_with_408() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateway_config(|c| c.body_timeout = Duration::from_secs(2)).start().await?;
    let t = stack.tenant().await?;
    let port = stack.gateway_ports[0];
    let body = br#"{"name":"slow room, sent one byte at a time","type":"group","members":["bob"]}"#;
    let head = format!(
        "POST /rooms HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         x-api-key: {}\r\nx-user-id: alice\r\n\r\n",
        body.len(),
        t.api_key
    );
    // A byte every half second: the whole body would take ~40 s.
    let (status, answer) = trickle(port, &head, body, Duration::from_millis(500)).await?;
    assert_eq!(status, 408, "{answer}");
    assert_eq!(answer["error"]["code"], "REQUEST_TIMEOUT", "{answer}");

    // A multipart upload trickling in, the same.
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let multipart = b"--b\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
                      content-type: text/plain\r\n\r\nhello, slowly\r\n--b--\r\n";
    let head = format!(
        "POST /api/chat/{room}/messages/file HTTP/1.1\r\nhost: x\r\n\
         content-type: multipart/form-data; boundary=b\r\ncontent-length: {}\r\n\
         x-api-key: {}\r\nx-user-id: alice\r\n\r\n",
        multipart.len(),
        t.api_key
    );
    let (status, answer) = trickle(port, &head, multipart, Duration::from_millis(500)).await?;
    assert_eq!(status, 408, "{answer}");
    assert_eq!(answer["code"], "REQUEST_TIMEOUT", "{answer}");

    // A Socket.IO polling post: Engine.IO's own error shape, with the 408.
    let open = stack.http.get(stack.url("/socket.io/?EIO=4&transport=polling")).send().await?.text().await?;
    let handshake: Value = serde_json::from_str(open.strip_prefix('0').unwrap_or(&open))?;
    let sid = handshake["sid"].as_str().unwrap_or_default();
    let body = [b' '; 42];
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nhost: x\r\n\
         content-type: text/plain; charset=UTF-8\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let (status, answer) = trickle(port, &head, &body, Duration::from_millis(500)).await?;
    assert_eq!(status, 408, "{answer}");
    assert_eq!(answer["code"], 3, "{answer}");

    // A body that arrives in time is served as before.
    let res = t.user("alice").create_room("group", &["carol"]).await;
    assert!(res.is_ok(), "{res:?}");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ops_port_serves_metrics_without_a_key() -> anyhow::Result<()> {
    // A gateway alone (nothing behind it is needed for its probes and metrics).
    let config = gateway::Config {
        nats_url: chat_test_support::nats_url(),
        redis_url: chat_test_support::redis_url(),
        bus_prefix: unique("opsport"),
        addr: "127.0.0.1:0".parse()?,
        ops_addr: Some("127.0.0.1:0".parse()?),
        workers: 1,
        ..gateway::Config::default()
    };
    let app = gateway::Gateway::build(config).await?;
    let (port, ops) = (app.port(), app.ops_port().ok_or_else(|| anyhow::anyhow!("no ops port"))?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let ops_url = |p: &str| format!("http://127.0.0.1:{ops}{p}");
    // A request on the main port, counted.
    assert_eq!(http.get(format!("http://127.0.0.1:{port}/healthz")).send().await?.status(), StatusCode::OK);
    let res = http.get(ops_url("/metrics")).send().await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await?.contains("chat_gateway_http_requests_total"));
    assert_eq!(http.get(ops_url("/healthz")).send().await?.status(), StatusCode::OK);
    // The main port still wants the operator key.
    let res = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let _ = stop.send(());
    running.await??;
    Ok(())
}
