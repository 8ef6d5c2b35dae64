//! Admission: who is calling, for which tenant, and whether the tenant may make one
//! more request now. One module for every REST endpoint and every WebSocket endpoint of
//! every dialect: [`admit`] for sockets (key or token, and the user), [`identify`] and
//! [`tenant_of_key`] with [`count`] for the REST callers (`crate::caller`). Each
//! endpoint turns a refusal into its own document's answer (an HTTP status, or a close
//! code).

use chat_domain::ids::UserId;
use chat_domain::proto::store::TenantAuth;
use chat_domain::{ApiError, ErrorCode};

use crate::ratelimit::Decision;
use crate::state::Core;

/// An admitted caller.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub tenant: TenantAuth,
    /// The user: the one a user token names, or the one the caller names with an API key.
    pub user: UserId,
    /// The credential presented (a socket is watched with it: `session::guard`).
    pub credential: std::sync::Arc<str>,
    /// Whether the credential is a user token (else the tenant's API key).
    pub user_token: bool,
}

/// Why a caller was not admitted.
#[derive(Debug, Clone)]
pub enum Refused {
    /// No credential, an unknown API key, or a bad or expired user token.
    Unauthenticated(ApiError),
    /// An API key without a user, or a malformed user id.
    BadUser(ApiError),
    /// Over the tenant's rate limit.
    RateLimited,
    /// The services behind the gateway could not answer.
    Unavailable(ApiError),
}

/// The `429` error of a refused decision.
pub fn rate_limited(d: &Decision) -> ApiError {
    ApiError::new(ErrorCode::RateLimitExceeded, format!("Rate limit exceeded. Try again in {} seconds", d.retry_after))
}

fn classify(e: ApiError) -> Refused {
    match e.code {
        ErrorCode::AuthenticationError | ErrorCode::NotFound | ErrorCode::Forbidden => Refused::Unauthenticated(e),
        _ => Refused::Unavailable(e),
    }
}

/// The tenant an API key belongs to (cached; `AUTHENTICATION_ERROR` when unknown).
pub async fn tenant_of_key(state: &Core, key: &str) -> Result<TenantAuth, ApiError> {
    state.auth.tenant(&state.bus, key).await
}

/// Counts one request of `tenant` against its limit.
pub async fn count(state: &Core, tenant: &TenantAuth) -> Decision {
    state.limiter.check(&tenant.tenant_id, tenant.rate_limit_per_sec).await
}

/// Who a credential names: the tenant, and the user when it is a user token (an API
/// key names no user; the caller names one some other way).
#[derive(Debug, Clone)]
pub struct Identified {
    pub tenant: TenantAuth,
    pub token_user: Option<UserId>,
}

/// Resolves a credential that is a user token or an API key (without counting it).
pub async fn identify(state: &Core, credential: &str) -> Result<Identified, ApiError> {
    match crate::tokens::verify(state, credential).await {
        Some(verified) => verified.map(|(tenant, user)| Identified { tenant, token_user: Some(user) }),
        None => tenant_of_key(state, credential).await.map(|tenant| Identified { tenant, token_user: None }),
    }
}

/// Admits a caller presenting `credential` — a user token (which names the user) or an
/// API key (then `named_user` names the user) — and counts the request.
pub async fn admit(state: &Core, credential: Option<&str>, named_user: Option<&str>) -> Result<Admitted, Refused> {
    admit_from(state, None, credential, named_user).await
}

/// The client address of a request (the TCP peer: a proxy in front is one address).
pub fn peer(req: &actix_web::HttpRequest) -> Option<std::net::IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

/// [`admit`] for a client at `addr`: an address that has failed too often lately gets
/// no lookups (a credential not cached is refused as rate limited), and a bad
/// credential counts against it (`crate::auth_failures`).
pub async fn admit_from(
    state: &Core,
    addr: Option<std::net::IpAddr>,
    credential: Option<&str>,
    named_user: Option<&str>,
) -> Result<Admitted, Refused> {
    if let Some(retry_after) = state.auth.failures.blocked(addr) {
        // Cached credentials still work; anything that needs a lookup is rate limited.
        return match crate::auth_failures::cached_only(retry_after, admit_once(state, credential, named_user)).await {
            Err(Refused::Unavailable(e) | Refused::Unauthenticated(e)) if e.code == ErrorCode::RateLimitExceeded => {
                Err(Refused::RateLimited)
            }
            other => other,
        };
    }
    let (admitted, looked_up) = crate::auth_failures::counting_lookups(admit_once(state, credential, named_user)).await;
    if let Err(Refused::Unauthenticated(e)) = &admitted
        && looked_up
        && crate::auth_failures::is_failure(e)
    {
        state.auth.failures.failed_from(addr);
    }
    admitted
}

async fn admit_once(state: &Core, credential: Option<&str>, named_user: Option<&str>) -> Result<Admitted, Refused> {
    let credential = credential
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Refused::Unauthenticated(ApiError::authentication("token is required")))?;
    let Identified { tenant, token_user } = identify(state, credential).await.map_err(classify)?;
    let user_token = token_user.is_some();
    let user = match token_user {
        Some(user) => user,
        None => {
            let user = named_user.filter(|u| !u.is_empty()).ok_or_else(|| {
                Refused::BadUser(ApiError::validation("user_id", "user_id is required with an API key"))
            })?;
            UserId::parse(user)
                .map_err(|e| Refused::BadUser(ApiError::validation("user_id", format!("Invalid user_id: {e}"))))?
        }
    };
    let decision = count(state, &tenant).await;
    if !decision.allowed {
        return Err(Refused::RateLimited);
    }
    Ok(Admitted { tenant, user, credential: credential.into(), user_token })
}
