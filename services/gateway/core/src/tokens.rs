//! Short-lived user tokens for browsers and mobile apps: JWTs (HS256) signed with the
//! tenant's secret, minted with the API key (`POST /tokens`, `gateway-rest`). Claims: `sub` (user
//! id), `tid` (tenant id), `iat`, `exp`. A browser passes one as `?token=` instead of
//! the API key, which never leaves the customer's server.
//!
//! [`verify`] also accepts the tenant's own auth server's tokens (`crate::jwt`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chat_domain::ApiError;
use chat_domain::ids::{TenantId, UserId};
use chat_domain::proto::store::TenantAuth;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::state::Core;

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

/// A tenant's token secret; a tenant that does not exist is remembered as such for a
/// while (`crate::auth_failures`), so tokens naming made-up tenants cost no lookups.
async fn secret_of(state: &Core, tenant: &TenantId) -> Result<(TenantAuth, String), ApiError> {
    let key = format!("tid:{tenant}");
    if let Some(e) = state.auth.failures.known_bad(&key) {
        return Err(e);
    }
    state.secrets.get(&state.bus, tenant).await.map_err(|e| state.auth.failures.remember_bad(&key, e))
}

/// Verifies a user token. `None` when `token` is not a JWT at all (then it may be an
/// API key); otherwise the tenant and user it names, or `AUTHENTICATION_ERROR`.
///
/// A token with an `iss` claim comes from an issuer the tenant registered (`crate::jwt`:
/// its tenant is the `tid` claim's, else the issuer's); one without is ours, minted by
/// `POST /tokens` with the `tid` tenant's secret.
pub async fn verify(state: &Core, token: &str) -> Option<Result<(TenantAuth, UserId), ApiError>> {
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
                    Some(tenant) => secret_of(state, tenant).await?.0,
                    None => {
                        let key = format!("iss:{issuer}");
                        if let Some(e) = state.auth.failures.known_bad(&key) {
                            return Err(e);
                        }
                        state
                            .issuers
                            .tenant(&state.bus, state.auth_ttl, issuer)
                            .await
                            .map_err(|e| state.auth.failures.remember_bad(&key, e))?
                    }
                };
                let user = state.issuers.verify(&auth, issuer, token)?;
                return Ok((auth, user));
            }
            let claims: Claims = serde_json::from_value(serde_json::Value::Object(claims)).map_err(|_| bad())?;
            if B64.decode(header).ok().as_deref() != Some(HEADER.as_bytes()) {
                return Err(bad());
            }
            let tenant = tid.ok_or_else(bad)?;
            let (auth, secret) = secret_of(state, &tenant).await?;
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
