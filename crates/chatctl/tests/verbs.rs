//! Every `chatctl` verb, run as the built binary against an in-process stack (real
//! PostgreSQL, Redis and NATS under the stack's own bus prefix): what it prints, its
//! exit code, and that the change it reports really happened.

use std::process::Output;

use chat_test_support::{TestStack, WebhookReceiver, WsClient, eventually, unique};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Runs `chatctl` with `args` against `stack`'s bus; blocking, so off the runtime.
async fn chatctl(stack: &TestStack, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chatctl"));
    cmd.args(["--nats-url", &chat_test_support::nats_url(), "--bus-prefix", &stack.prefix]).args(args);
    // The verbs read these from the environment too; the tests say everything.
    for var in ["CHAT_API_KEY", "GATEWAY_URL", "CHATCTL_WEBHOOK_SECRET", "CHAT_ADMIN_API_KEY"] {
        cmd.env_remove(var);
    }
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

/// Runs a `--json` verb that must succeed and returns what it printed.
async fn json_ok(stack: &TestStack, args: &[&str]) -> anyhow::Result<Value> {
    let out = chatctl(stack, &[&["--json"], args].concat()).await?;
    anyhow::ensure!(out.status.success(), "chatctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Runs a verb that must fail with exit code 1 and `error: <code>: ...` on stderr.
async fn fails_with(stack: &TestStack, args: &[&str], code: &str) -> anyhow::Result<String> {
    let out = chatctl(stack, args).await?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "chatctl {args:?}: {stderr}");
    assert!(stderr.starts_with(&format!("error: {code}: ")), "chatctl {args:?}: {stderr}");
    Ok(stderr)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_verbs_create_show_update_set_webhook_and_rotate() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let id = unique(&format!("{}_acme", stack.prefix));

    let created = json_ok(&stack, &["tenants", "create", "--name", "Acme", "--id", &id, "--rate-limit", "20"]).await?;
    assert_eq!(created["tenant"]["tenant_id"], id.as_str());
    assert_eq!(created["tenant"]["rate_limit_per_sec"], 20);
    let first_key = created["api_key"].as_str().unwrap_or_default().to_owned();
    assert!(first_key.starts_with("sk_"), "{created}");
    fails_with(&stack, &["tenants", "create", "--name", "Again", "--id", &id], "CONFLICT").await?;

    let shown = json_ok(&stack, &["tenants", "show", &id]).await?;
    assert_eq!((shown["name"].as_str(), shown["rate_limit_per_sec"].as_u64()), (Some("Acme"), Some(20)));
    let text = stdout(&chatctl(&stack, &["tenants", "show", &id]).await?);
    assert!(text.contains(&format!("tenant_id:          {id}\n")), "{text}");
    assert!(text.contains("webhook_url:        -\n"), "{text}");
    fails_with(&stack, &["tenants", "show", &unique("nobody")], "NOT_FOUND").await?;

    // Limits.
    let updated = json_ok(&stack, &["tenants", "update", &id, "--rate-limit", "50", "--name", "Acme 2"]).await?;
    assert_eq!((updated["name"].as_str(), updated["rate_limit_per_sec"].as_u64()), (Some("Acme 2"), Some(50)));
    let res =
        stack.http.get(stack.url("/rooms")).header("X-API-Key", &first_key).header("X-User-Id", "alice").send().await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get("x-ratelimit-limit").and_then(|v| v.to_str().ok()), Some("50"));

    // Webhook: set with a secret and half a retry policy (the other half is kept), then removed.
    let hooked = json_ok(
        &stack,
        &[
            "tenants",
            "set-webhook",
            &id,
            "--url",
            "http://127.0.0.1:9/hook",
            "--secret",
            "0123456789abcdef",
            "--max-attempts",
            "2",
        ],
    )
    .await?;
    assert_eq!(hooked["webhook_url"], "http://127.0.0.1:9/hook");
    assert_eq!(hooked["webhook_secret_set"], true);
    assert_eq!(hooked["retry"], json!({"max_attempts": 2, "backoff_ms": 1000}));
    let hooked =
        json_ok(&stack, &["tenants", "set-webhook", &id, "--url", "https://hooks.example.com/x", "--backoff-ms", "50"])
            .await?;
    assert_eq!(hooked["webhook_url"], "https://hooks.example.com/x");
    assert_eq!(hooked["retry"], json!({"max_attempts": 2, "backoff_ms": 50}));
    let cleared = json_ok(&stack, &["tenants", "set-webhook", &id, "--clear"]).await?;
    assert_eq!(cleared["webhook_url"], Value::Null);

    // Key rotation: the old key stops working, the new one works.
    let rotated = json_ok(&stack, &["tenants", "rotate-key", &id]).await?;
    let new_key = rotated["api_key"].as_str().unwrap_or_default().to_owned();
    assert!(new_key.starts_with("sk_") && new_key != first_key, "{rotated}");
    eventually("the old key to be refused", || async {
        let res =
            stack.http.get(stack.url("/rooms")).header("X-API-Key", &first_key).header("X-User-Id", "a").send().await?;
        Ok(res.status() == StatusCode::UNAUTHORIZED)
    })
    .await?;
    let res = stack.http.get(stack.url("/rooms")).header("X-API-Key", &new_key).header("X-User-Id", "a").send().await?;
    assert_eq!(res.status(), StatusCode::OK);

    // Lists page through tenants oldest first (the database is shared with other
    // tests, so only the paging itself is checked here).
    let two = json_ok(&stack, &["tenants", "list", "--limit", "2"]).await?;
    let second = json_ok(&stack, &["tenants", "list", "--limit", "1", "--offset", "1"]).await?;
    assert_eq!(two.as_array().map(Vec::len), Some(2), "{two}");
    assert_eq!(second.as_array().and_then(|a| a.first()), two.as_array().and_then(|a| a.get(1)));
    let text = stdout(&chatctl(&stack, &["tenants", "list", "--limit", "2"]).await?);
    assert!(text.starts_with("TENANT_ID  "), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");

    let out = chatctl(&stack, &["health"]).await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    for service in ["message-store", "presence", "notification"] {
        assert!(text.lines().any(|l| l.starts_with(service) && l.contains(" ok ")), "{text}");
    }
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn token_mints_a_user_token_that_opens_a_websocket() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    let gateway = stack.base_url(0);

    let out =
        chatctl(&stack, &["token", "--tenant-key", &t.api_key, "--user", "bob", "--gateway-url", &gateway]).await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = stdout(&out).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT alone on stdout: {token:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/ws/<room_id>?token="));
    let mut ws = WsClient::connect(&format!("{}/ws/{room}?token={token}", stack.ws_url(0))).await?;
    let status = ws.expect("connection_status").await?;
    assert_eq!(status["data"]["user_id"], "bob");

    let reply = json_ok(
        &stack,
        &["token", "--tenant-key", &t.api_key, "--user", "carol", "--ttl", "60", "--gateway-url", &gateway],
    )
    .await?;
    assert_eq!((reply["user_id"].as_str(), reply["expires_in"].as_u64()), (Some("carol"), Some(60)));

    fails_with(
        &stack,
        &["token", "--tenant-key", "sk_wrong", "--user", "bob", "--gateway-url", &gateway],
        "AUTHENTICATION_ERROR",
    )
    .await?;
    // Nothing listens there: refused at once.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", l.local_addr()?)
    };
    fails_with(
        &stack,
        &["token", "--tenant-key", &t.api_key, "--user", "bob", "--gateway-url", &closed],
        "SERVICE_UNAVAILABLE",
    )
    .await?;
    ws.close().await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_filtered_and_replayed() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let failing = WebhookReceiver::start(None).await?;
    json_ok(
        &stack,
        &["tenants", "set-webhook", &t.id, "--url", &failing.url, "--max-attempts", "1", "--backoff-ms", "10"],
    )
    .await?;
    let sent = t
        .user("ops")
        .post("/notify", json!({"topic": "doomed", "payload": {}, "targets": {"user_ids": ["bob"]}}))
        .await?
        .expect(StatusCode::ACCEPTED)?;
    let list = ["dead-letters", "list", "--tenant", t.id.as_str()];
    eventually("a dead letter", || async {
        let letters = json_ok(&stack, &list).await?;
        Ok(letters["failed_notifications"].as_array().is_some_and(|a| !a.is_empty()))
    })
    .await?;
    let letters = json_ok(&stack, &list).await?;
    let letter = letters["failed_notifications"][0].clone();
    assert_eq!(letter["notification_id"], sent.body["notification_id"]);
    assert_eq!((letter["user_id"].as_str(), letter["error"].as_str()), (Some("bob"), Some("HTTP 500")));
    assert_eq!(letters["failed_messages"], json!([]));
    let id = letter["id"].as_str().unwrap_or_default().to_owned();

    // Filters.
    let only_messages = json_ok(&stack, &[&list[..], &["--kind", "message"]].concat()).await?;
    assert_eq!(only_messages, json!({"failed_messages": [], "failed_notifications": []}));
    let bobs = json_ok(&stack, &[&list[..], &["--kind", "notification", "--user", "bob"]].concat()).await?;
    assert_eq!(bobs["failed_notifications"], json!([letter]));
    let carols = json_ok(&stack, &[&list[..], &["--user", "carol"]].concat()).await?;
    assert_eq!(carols["failed_notifications"], json!([]));
    let text = stdout(&chatctl(&stack, &list).await?);
    assert!(text.starts_with("ID  ") && text.contains(&format!("{id}  notification  ")), "{text}");

    // Replay to a receiver that answers: delivered once, and no longer a dead letter.
    let good = WebhookReceiver::start(Some(0)).await?;
    json_ok(&stack, &["tenants", "set-webhook", &t.id, "--url", &good.url]).await?;
    let out = chatctl(&stack, &["dead-letters", "replay", &id]).await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("the replayed delivery", || async { Ok(good.received().len() == 1) }).await?;
    let delivered = good.received();
    assert_eq!(delivered.first().and_then(|r| r.headers.get("x-chat-delivery")).map(String::as_str), Some(id.as_str()));
    eventually("the dead letter to be gone", || async {
        Ok(json_ok(&stack, &list).await?["failed_notifications"] == json!([]))
    })
    .await?;
    fails_with(&stack, &["dead-letters", "replay", &id], "NOT_FOUND").await?;
    fails_with(&stack, &["dead-letters", "replay", "dlv_nope"], "NOT_FOUND").await?;
    assert_eq!(failing.received().len(), 1, "one attempt, as the policy said");
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_delete_and_erase_user_go_through_a_gateway() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let room = t.user("alice").create_room("group", &["bob"]).await?;
    t.user("alice").send(&room, "mine").await?;
    t.user("bob").send(&room, "his").await?;
    let gateway = stack.base_url(0);
    let admin = ["--admin-key", stack.admin_key.as_str(), "--gateway-url", gateway.as_str()];
    let erased = json_ok(&stack, &[&["tenants", "erase-user", &t.id, "--user", "alice"], &admin[..]].concat()).await?;
    assert_eq!((erased["user_id"].as_str(), erased["messages"].as_u64()), (Some("alice"), Some(1)), "{erased}");
    let page = t.user("bob").get(&format!("/rooms/{room}/messages")).await?.expect(StatusCode::OK)?;
    assert_eq!(page.body[0]["content"], "", "alice's message is a tombstone: {}", page.body);
    assert_eq!(page.body[1]["content"], "his");
    let deleted = json_ok(&stack, &[&["tenants", "delete", &t.id], &admin[..]].concat()).await?;
    assert_eq!((deleted["rooms"].as_u64(), deleted["messages"].as_u64()), (Some(1), Some(2)), "{deleted}");
    t.user("bob").get("/rooms").await?.expect(StatusCode::UNAUTHORIZED)?;
    fails_with(&stack, &[&["tenants", "delete", &t.id], &admin[..]].concat(), "NOT_FOUND").await?;
    let wrong = ["--admin-key", "adm_wrong", "--gateway-url", gateway.as_str()];
    fails_with(&stack, &[&["tenants", "delete", &t.id], &wrong[..]].concat(), "AUTHENTICATION_ERROR").await?;
    stack.stop().await
}
