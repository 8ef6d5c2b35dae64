//! `POST /dev/token {"user_id"}` → `201 {"token","user_id","tenant_id","expires_at","expires_in"}`:
//! a user token of the development tenant for whoever asks, so that under `make run`
//! the web app signs in by name alone.
//!
//! Anyone who can reach the gateway can then act as any user of that tenant, so it is
//! off unless the gateway is started with `GATEWAY_DEV_LOGIN=1` (`scripts/run.sh` sets
//! it; docker compose, Kubernetes and every other start do not). The token is minted
//! exactly as `POST /tokens` mints one with the tenant's key (`gateway_core::tokens::mint`),
//! and counts against the tenant's rate limit like any request. A dev tenant that does
//! not exist is `404 NOT_FOUND`; a bad `user_id` is `400` naming it.

use actix_web::{HttpResponse, web};
use chat_domain::ids::{TenantId, UserId};
use chat_domain::{ApiError, ErrorCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use gateway_core::Core;
use gateway_core::body::field;
use gateway_core::error::HttpResult;
use gateway_core::extract::{Body, Rest};
use gateway_core::tokens::{DEFAULT_TTL_SECS, mint};

/// The tenant whose users `POST /dev/token` signs in (`GATEWAY_DEV_TENANT`, default `dev`).
#[derive(Debug, Clone)]
pub struct DevTenant(pub TenantId);

/// The body of `POST /dev/token`.
#[derive(Deserialize, JsonSchema)]
pub struct DevLogin {
    /// The user to sign in as (any id; the user need not exist yet).
    #[schemars(with = "String", required, example = &"alice")]
    user_id: Option<serde_json::Value>,
}

/// The answer of `POST /dev/token`.
#[derive(Serialize, JsonSchema)]
pub struct DevToken {
    /// A user token: `Authorization: Bearer <token>`, or `?token=` on the WebSocket.
    token: String,
    user_id: UserId,
    tenant_id: TenantId,
    /// When the token expires (RFC 3339).
    expires_at: Option<String>,
    /// Seconds until it expires.
    expires_in: i64,
}

/// `POST /dev/token`.
pub async fn token(
    Rest(Body(body)): Rest<Body<DevLogin>>,
    tenant: web::Data<DevTenant>,
    state: web::Data<Core>,
) -> HttpResult {
    let user = gateway_core::extract::user_id("user_id", &field::required_str("user_id", body.user_id)?)?;
    let (auth, secret) = state.secrets.get(&state.bus, &tenant.0).await.map_err(|e| match e.code {
        // message-store answers "invalid token" for a tenant it does not know.
        ErrorCode::AuthenticationError => ApiError::new(
            ErrorCode::NotFound,
            format!(
                "The dev-login tenant {} does not exist (was message-store started with CHAT_DEV_TENANT=false?)",
                tenant.0
            ),
        ),
        _ => e,
    })?;
    let decision = gateway_core::admit::count(&state, &auth).await;
    if !decision.allowed {
        return Err(gateway_core::admit::rate_limited(&decision).into());
    }
    let (token, exp) = mint(&secret, &tenant.0, &user, DEFAULT_TTL_SECS)?;
    let expires_at = chrono::DateTime::from_timestamp(exp, 0).map(|t| chat_domain::time::format(&t));
    Ok(HttpResponse::Created().json(DevToken {
        token,
        user_id: user,
        tenant_id: tenant.0.clone(),
        expires_at,
        expires_in: DEFAULT_TTL_SECS,
    }))
}
