//! Short-lived user tokens for browsers and mobile apps: JWTs (HS256) signed with the
//! tenant's secret, minted by `POST /tokens` with the API key. Claims: `sub` (user
//! id), `tid` (tenant id), `iat`, `exp`. A browser passes one as `?token=` instead of
//! the API key, which never leaves the customer's server.
//!
//! [`verify`] also accepts the tenant's own auth server's tokens (`crate::jwt`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chat_domain::ApiError;
use chat_domain::ids::{TenantId, UserId};
use chat_domain::proto::store::{GetTokenSecret, TenantAuth};
use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::AppState;
use crate::body::field;
use crate::caller::Caller;
use crate::error::HttpResult;
use crate::rest::extract::{MaybeBody, Rest};

/// Default and longest token lifetimes.
pub const DEFAULT_TTL_SECS: i64 = 3600;
pub const MAX_TTL_SECS: i64 = 24 * 3600;

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    tid: String,
    iat: i64,
    exp: i64,
}

fn sign(secret: &str, input: &str) -> Result<Vec<u8>, ApiError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| ApiError::internal())?;
    mac.update(input.as_bytes());
    Ok(mac.finalize().into_bytes().to_vec())
}

/// Makes a token for `user` of `tenant`, valid for `ttl_secs`.
pub fn mint(secret: &str, tenant: &TenantId, user: &UserId, ttl_secs: i64) -> Result<(String, i64), ApiError> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims { sub: user.to_string(), tid: tenant.to_string(), iat: now, exp: now + ttl_secs };
    let payload = serde_json::to_vec(&claims).map_err(|_| ApiError::internal())?;
    let input = format!("{}.{}", B64.encode(HEADER), B64.encode(payload));
    let signature = B64.encode(sign(secret, &input)?);
    Ok((format!("{input}.{signature}"), claims.exp))
}

/// Token secrets by tenant, cached briefly (dropped with the tenant's other cache entries).
#[derive(Debug, Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<TenantId, (TenantAuth, String, Instant)>>,
}

impl SecretCache {
    pub(crate) async fn get(&self, state: &AppState, tenant: &TenantId) -> Result<(TenantAuth, String), ApiError> {
        if let Some((auth, secret, at)) = self.entries.lock().ok().and_then(|m| m.get(tenant).cloned())
            && at.elapsed() < state.auth_ttl
        {
            return Ok((auth, secret));
        }
        let got = state.bus.request(&GetTokenSecret { tenant_id: tenant.clone() }).await?;
        if let Ok(mut m) = self.entries.lock() {
            m.insert(tenant.clone(), (got.tenant.clone(), got.secret.clone(), Instant::now()));
        }
        Ok((got.tenant, got.secret))
    }

    pub fn forget(&self, tenant: &TenantId) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(tenant);
        }
    }
}

/// Verifies a user token. `None` when `token` is not a JWT at all (then it may be an
/// API key); otherwise the tenant and user it names, or `AUTHENTICATION_ERROR`.
///
/// A token with an `iss` claim comes from an issuer the tenant registered (`crate::jwt`:
/// its tenant is the `tid` claim's, else the issuer's); one without is ours, minted by
/// `POST /tokens` with the `tid` tenant's secret.
pub async fn verify(state: &AppState, token: &str) -> Option<Result<(TenantAuth, UserId), ApiError>> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bad = || ApiError::authentication("Invalid or expired token");
    Some(
        async {
            let claims: serde_json::Map<String, serde_json::Value> =
                B64.decode(payload).ok().and_then(|p| serde_json::from_slice(&p).ok()).ok_or_else(bad)?;
            let text = |k: &str| match claims.get(k) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(bad()),
            };
            let tid = text("tid")?.map(|t| TenantId::parse(t).map_err(|_| bad())).transpose()?;
            if let Some(issuer) = text("iss")? {
                let auth = match &tid {
                    Some(tenant) => state.secrets.get(state, tenant).await?.0,
                    None => state.issuers.tenant(&state.bus, state.auth_ttl, issuer).await?,
                };
                let user = state.issuers.verify(&auth, issuer, token)?;
                return Ok((auth, user));
            }
            let claims: Claims = serde_json::from_value(serde_json::Value::Object(claims)).map_err(|_| bad())?;
            if B64.decode(header).ok().as_deref() != Some(HEADER.as_bytes()) {
                return Err(bad());
            }
            let tenant = tid.ok_or_else(bad)?;
            let (auth, secret) = state.secrets.get(state, &tenant).await?;
            let signature = B64.decode(signature).map_err(|_| bad())?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| ApiError::internal())?;
            mac.update(format!("{header}.{payload}").as_bytes());
            mac.verify_slice(&signature).map_err(|_| bad())?;
            if claims.exp <= chrono::Utc::now().timestamp() {
                return Err(ApiError::authentication("Token expired"));
            }
            let user = UserId::parse(claims.sub).map_err(|_| bad())?;
            Ok((auth, user))
        }
        .await,
    )
}

/// The body of `POST /tokens` (which may be empty).
#[derive(Deserialize, JsonSchema)]
pub struct NewToken {
    /// The user the token acts for; `X-User-Id` when absent.
    #[schemars(with = "Option<UserId>", example = &"user_123")]
    user_id: Option<serde_json::Value>,
    /// Seconds until the token expires (3600 when absent).
    #[schemars(with = "Option<i64>", range(min = 1, max = MAX_TTL_SECS))]
    ttl_secs: Option<serde_json::Value>,
}

/// A minted token.
#[derive(Serialize, JsonSchema)]
pub struct Token {
    /// A user token: `Authorization: Bearer <token>`, or `?token=` on the WebSocket.
    token: String,
    user_id: UserId,
    /// When the token expires (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    expires_at: Option<String>,
    /// Seconds until it expires.
    expires_in: i64,
}

/// `POST /tokens` `{"user_id"?, "ttl_secs"?}` with the API key → `{"token","user_id","expires_at"}`.
/// The user is the body's `user_id`, else `X-User-Id`.
pub async fn create(
    Rest((caller, MaybeBody(body))): Rest<(Caller, MaybeBody<NewToken>)>,
    state: web::Data<AppState>,
) -> HttpResult {
    let (user_id, ttl_secs) = body.map_or((None, None), |b| (b.user_id, b.ttl_secs));
    let user = match field::optional_str("user_id", user_id)? {
        Some(u) => crate::rest::user_id("user_id", &u)?,
        None => {
            caller.actor().map_err(|_| ApiError::validation("user_id", "user_id (or X-User-Id) is required"))?.user_id
        }
    };
    let ttl = field::optional_i64("ttl_secs", ttl_secs)?.unwrap_or(DEFAULT_TTL_SECS);
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiError::validation("ttl_secs", format!("ttl_secs must be between 1 and {MAX_TTL_SECS}")).into());
    }
    let (_, secret) = state.secrets.get(&state, &caller.tenant.tenant_id).await?;
    let (token, exp) = mint(&secret, &caller.tenant.tenant_id, &user, ttl)?;
    let expires_at = chrono::DateTime::from_timestamp(exp, 0).map(|t| chat_domain::time::format(&t));
    Ok(HttpResponse::Created().json(Token { token, user_id: user, expires_at, expires_in: ttl }))
}
