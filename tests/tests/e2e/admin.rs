//! The operator API: tenants created with a key shown once, listed, updated, and
//! keys rotated so that the old key stops working.

use chat_test_support::{Client, TestStack, unique};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn tenant_admin_lifecycle() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let name = unique("acme-");
    let id = unique("ten_");
    let created = stack
        .admin(Method::POST, "/admin/tenants", Some(json!({"name": name, "tenant_id": id, "rate_limit_per_sec": 42})))
        .await?
        .expect(StatusCode::CREATED)?;
    assert_eq!(created.body["tenant_id"], id.as_str());
    assert_eq!(created.body["rate_limit_per_sec"], 42);
    let key = created.str("api_key")?.to_owned();
    assert!(key.starts_with("sk_"));
    assert_eq!(created.body["api_key_prefixes"], json!([key[..10].to_owned()]));

    // The key works, and shows the tenant's limit.
    let user = Client::raw(&stack.base_url(0)).with_header("X-API-Key", &key).with_header("X-User-Id", "u");
    let res = user.post("/rooms", json!({"type": "group"})).await?.expect(StatusCode::CREATED)?;
    assert_eq!(res.header("X-RateLimit-Limit"), Some("42"));

    // Same id again is a conflict.
    stack.admin(Method::POST, "/admin/tenants", Some(json!({"name": "x", "tenant_id": id}))).await?.expect_error(
        StatusCode::CONFLICT,
        "CONFLICT",
        None,
    )?;
    stack.admin(Method::POST, "/admin/tenants", Some(json!({"name": ""}))).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("name"),
    )?;
    stack
        .admin(Method::POST, "/admin/tenants", Some(json!({"name": "x", "rate_limit_per_sec": 0})))
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", Some("rate_limit_per_sec"))?;

    // Listed and shown, never with the key itself.
    let mut found = false;
    let mut offset = 0;
    while !found {
        let page = stack
            .admin(Method::GET, &format!("/admin/tenants?limit=100&offset={offset}"), None)
            .await?
            .expect(StatusCode::OK)?;
        let items = page.body.as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        found = items.iter().any(|t| t["tenant_id"] == id.as_str());
        assert!(items.iter().all(|t| t.get("api_key").is_none()));
        offset += 100;
    }
    assert!(found, "the new tenant is listed");
    let shown = stack.admin(Method::GET, &format!("/admin/tenants/{id}"), None).await?.expect(StatusCode::OK)?;
    assert_eq!(shown.body["name"], name.as_str());

    // Settings change.
    let patched = stack
        .admin(
            Method::PATCH,
            &format!("/admin/tenants/{id}"),
            Some(json!({"rate_limit_per_sec": 7, "name": "Renamed"})),
        )
        .await?
        .expect(StatusCode::OK)?;
    assert_eq!(patched.body["rate_limit_per_sec"], 7);
    assert_eq!(patched.body["name"], "Renamed");
    let res = user.get(&format!("/rooms/{}", res.str("room_id")?)).await?.expect(StatusCode::OK)?;
    assert_eq!(res.header("X-RateLimit-Limit"), Some("7"), "the new limit applies at once");
    stack.admin(Method::PATCH, &format!("/admin/tenants/{id}"), Some(json!({"colour": "blue"}))).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("colour"),
    )?;
    stack.admin(Method::PATCH, "/admin/tenants/ten_missing", Some(json!({"name": "x"}))).await?.expect_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    )?;

    // Rotation: a new key works, the old one is refused.
    let rotated =
        stack.admin(Method::POST, &format!("/admin/tenants/{id}/rotate-key"), None).await?.expect(StatusCode::OK)?;
    let new_key = rotated.str("api_key")?.to_owned();
    assert_ne!(new_key, key);
    user.post("/rooms", json!({"type": "group"})).await?.expect_error(
        StatusCode::UNAUTHORIZED,
        "AUTHENTICATION_ERROR",
        None,
    )?;
    let fresh = user.clone().with_header("X-API-Key", &new_key);
    fresh.post("/rooms", json!({"type": "group"})).await?.expect(StatusCode::CREATED)?;
    stack.admin(Method::POST, "/admin/tenants/ten_missing/rotate-key", None).await?.expect_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    )?;

    // The admin API needs the admin key.
    Client::raw(&stack.base_url(0)).get("/admin/tenants").await?.expect_error(
        StatusCode::UNAUTHORIZED,
        "AUTHENTICATION_ERROR",
        None,
    )?;
    Client::raw(&stack.base_url(0)).with_header("X-API-Key", "adm_wrong").get("/admin/tenants").await?.expect_error(
        StatusCode::UNAUTHORIZED,
        "AUTHENTICATION_ERROR",
        None,
    )?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_reaches_other_gateways() -> anyhow::Result<()> {
    let stack = TestStack::builder().gateways(2).start().await?;
    let t = stack.tenant().await?;
    // Gateway 1 caches the key.
    t.user_on(1, "u").post("/rooms", json!({"type": "group"})).await?.expect(StatusCode::CREATED)?;
    stack.admin(Method::POST, &format!("/admin/tenants/{}/rotate-key", t.id), None).await?.expect(StatusCode::OK)?;
    // The announcement makes gateway 1 drop it (well before its cache would expire).
    chat_test_support::eventually("gateway 1 refusing the old key", || async {
        Ok(t.user_on(1, "u").post("/rooms", json!({"type": "group"})).await?.status == StatusCode::UNAUTHORIZED)
    })
    .await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_settings() -> anyhow::Result<()> {
    let stack = TestStack::start().await?;
    let t = stack.tenant().await?;
    let path = format!("/admin/tenants/{}", t.id);
    let shown = stack.admin(Method::GET, &path, None).await?.expect(StatusCode::OK)?;
    assert!(shown.body["webhook_url"].is_null());
    assert_eq!(shown.body["webhook_secret_set"], false);
    assert_eq!(shown.body["retry"], json!({"max_attempts": 5, "backoff_ms": 1000}));

    let body = json!({
        "webhook_url": "https://hooks.example.com/chat",
        "webhook_secret": "0123456789abcdef0123",
        "retry": {"max_attempts": 3, "backoff_ms": 250},
    });
    let patched = stack.admin(Method::PATCH, &path, Some(body)).await?.expect(StatusCode::OK)?;
    assert_eq!(patched.body["webhook_url"], "https://hooks.example.com/chat");
    assert_eq!(patched.body["webhook_secret_set"], true);
    assert!(patched.body.get("webhook_secret").is_none(), "the secret is never shown");
    assert_eq!(patched.body["retry"], json!({"max_attempts": 3, "backoff_ms": 250}));
    // The notification service reads the whole webhook, secret included, over the bus.
    let hook = stack
        .bus
        .request(&chat_domain::proto::store::GetWebhook {
            tenant_id: chat_domain::ids::TenantId::parse(t.id.as_str())?,
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(hook.secret.as_deref(), Some("0123456789abcdef0123"));
    // Other settings stay when one changes; an empty URL removes the webhook.
    let patched = stack.admin(Method::PATCH, &path, Some(json!({"webhook_url": ""}))).await?.expect(StatusCode::OK)?;
    assert!(patched.body["webhook_url"].is_null());
    assert_eq!(patched.body["retry"]["max_attempts"], 3);

    for (body, field) in [
        (json!({"webhook_url": "ftp://x"}), "webhook_url"),
        (json!({"webhook_secret": "short"}), "webhook_secret"),
        (json!({"retry": {"max_attempts": 0}}), "retry.max_attempts"),
        (json!({"retry": {"backoff_ms": 1}}), "retry.backoff_ms"),
        (json!({"retry": 5}), "retry"),
    ] {
        stack.admin(Method::PATCH, &path, Some(body)).await?.expect_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        )?;
    }
    stack.stop().await
}
