//! `GET /metrics` on the gateway's own port: for the operator only. Its series name
//! every tenant with a socket or a message on this gateway, so a public `/metrics`
//! listed the tenants to anyone. It takes the operator key as the admin routes do
//! (`X-API-Key`, what the admin console sends) or as `Authorization: Bearer` (what a
//! Prometheus scrape config's `authorization` sends). A Prometheus that cannot hold a
//! key (scraping by pod annotations) scrapes `GATEWAY_OPS_ADDR` instead: `/healthz`,
//! `/readyz` and `/metrics` on a port of their own, like every other service's
//! `OPS_ADDR`, not exposed to clients.

use actix_web::{HttpRequest, web};
use chat_domain::ApiError;
use gateway_core::Core;
use gateway_core::error::HttpResult;

/// The key a request offers: `X-API-Key`, else `Authorization: Bearer`.
fn offered_key(req: &HttpRequest) -> Option<&str> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    header("x-api-key").filter(|k| !k.is_empty()).or_else(|| {
        header("authorization")
            .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|k| !k.is_empty())
    })
}

/// The metrics, to the operator key only (`401` without it or with another key).
pub async fn metrics(req: HttpRequest, state: web::Data<Core>) -> HttpResult {
    let key = offered_key(&req)
        .ok_or_else(|| ApiError::authentication("Missing operator key (X-API-Key or Authorization: Bearer header)"))?;
    state.auth.admin(&state.bus, key).await.map_err(|e| match e.code {
        // A tenant's key, or no key at all: the same answer (nothing about which).
        chat_domain::ErrorCode::AuthenticationError | chat_domain::ErrorCode::Forbidden => {
            ApiError::authentication("Invalid operator key")
        }
        _ => e,
    })?;
    Ok(chat_telemetry::ops::metrics().await)
}
