//! Who is calling, as parts of a REST request (`rest::extract`), each admitted through
//! `crate::admit` and failing with the documented error:
//!
//! - [`Caller`]: the tenant's API key (`X-API-Key`), counted against the tenant's rate
//!   limit; `X-User-Id` read but not yet required (`401` / `429`).
//! - [`Acting`]: a [`Caller`] acting as the user `X-User-Id` names (`400` naming
//!   `X-User-Id` when it is missing or invalid), or a [`UserCaller`] holding a user
//!   token as `Authorization: Bearer` (the token names the user), as a browser app
//!   (the web app at `/`) calls the user routes without holding the API key.
//! - [`ApiCaller`]: a caller of `ws-rooms.md`'s `/api/v1` helpers, whose `X-API-Key`
//!   may hold an API key or a user token (a browser app fills it with a token), or
//!   which sends a user token as `Authorization: Bearer` (see [`bearer`]);
//!   [`ApiActing`]: one acting as the token's user (or `X-User-Id`'s, with a key).
//! - [`Admin`]: the operator key (`401` for an unknown key, `403` for a tenant's key).
//!
//! The rate-limit decision is left in the request's extensions for the response
//! middleware to turn into `X-RateLimit-*` headers.

use actix_web::HttpMessage as _;
use chat_domain::ids::UserId;
use chat_domain::model::Actor;
use chat_domain::proto::store::TenantAuth;
use chat_domain::{ApiError, ErrorCode};

pub use crate::extract::Caller;
use crate::extract::{Cx, Part};

pub const API_KEY: &str = "X-API-Key";
pub const USER_ID: &str = "X-User-Id";

/// `X-User-Id`, parsed.
/// A header that is there but not visible ASCII is invalid, not absent.
pub fn header_user(cx: &Cx) -> Option<Result<UserId, ApiError>> {
    let raw = cx.req.headers().get(USER_ID)?;
    let Ok(text) = raw.to_str() else {
        return Some(Err(ApiError::validation(USER_ID, "Invalid X-User-Id: not a printable ASCII id")));
    };
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(UserId::parse(text).map_err(|e| ApiError::validation(USER_ID, format!("Invalid X-User-Id: {e}"))))
}

fn user_required() -> ApiError {
    ApiError::validation(USER_ID, "X-User-Id header is required")
}

/// Runs one credential check for the request's client address: from caches only (a
/// credential not cached is `429`, with no lookup) when the address has failed too
/// often lately (`crate::auth_failures`); a failure of `check` that cost a lookup
/// counts against the address.
pub async fn guarded<T>(cx: &Cx, check: impl std::future::Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
    let addr = cx.req.peer_addr().map(|a| a.ip());
    let failures = &cx.state.auth.failures;
    let (checked, looked_up) = match failures.blocked(addr) {
        Some(retry_after) => return crate::auth_failures::cached_only(retry_after, check).await,
        None => crate::auth_failures::counting_lookups(check).await,
    };
    if let Err(e) = &checked
        && looked_up
        && crate::auth_failures::is_failure(e)
    {
        failures.failed_from(addr);
    }
    checked
}

/// Counts the request against the tenant's limit; `429` when over it.
pub async fn count(cx: &Cx, tenant: &TenantAuth) -> Result<(), ApiError> {
    let decision = crate::admit::count(&cx.state, tenant).await;
    cx.req.extensions_mut().insert(decision);
    if decision.allowed { Ok(()) } else { Err(crate::admit::rate_limited(&decision)) }
}

impl Part for Caller {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        if let Some(caller) = &cx.caller {
            return Ok(caller.clone());
        }
        let key = cx.header(API_KEY).ok_or_else(|| ApiError::authentication("Missing API key (X-API-Key header)"))?;
        let tenant = guarded(cx, crate::admit::tenant_of_key(&cx.state, key)).await?;
        count(cx, &tenant).await?;
        let caller = Caller { tenant, user: header_user(cx).unwrap_or_else(|| Err(user_required())) };
        cx.caller = Some(caller.clone());
        Ok(caller)
    }
}

/// The tenant and the user a request acts as.
#[derive(Debug, Clone)]
pub struct Acting(pub Actor);

impl Part for Acting {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        UserCaller::read(cx).await?.0.actor().map(Acting)
    }
}

/// A caller of the routes that act as one user: the tenant's API key (with
/// `X-User-Id`, as [`Caller`]), or — when no `X-API-Key` is sent — a user token as
/// `Authorization: Bearer`, which names the user (an `X-User-Id` naming anyone else is
/// `403`). Tenant-wide routes (settings, `/tokens`, `/notify`) take [`Caller`], which
/// needs the key: a user's token must not mint tokens or change the tenant.
#[derive(Debug, Clone)]
pub struct UserCaller(pub Caller);

impl Part for UserCaller {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        if cx.caller.is_none()
            && cx.header(API_KEY).is_none()
            && let Some(token) = bearer(cx).map(str::to_owned)
        {
            let verified = async {
                crate::tokens::verify(&cx.state, &token)
                    .await
                    .unwrap_or_else(|| Err(ApiError::authentication("Invalid or expired token")))
            };
            let (tenant, user) = guarded(cx, verified).await?;
            count(cx, &tenant).await?;
            let user = match header_user(cx) {
                Some(Ok(named)) if named != user => {
                    Err(ApiError::forbidden(format!("This user token acts for {user} only")))
                }
                Some(Err(e)) => Err(e),
                _ => Ok(user),
            };
            let caller = Caller { tenant, user };
            cx.caller = Some(caller.clone());
            return Ok(UserCaller(caller));
        }
        Caller::read(cx).await.map(UserCaller)
    }
}

/// A caller of the `/api/v1` helpers of `ws-rooms.md`: `X-API-Key` holds the tenant's
/// API key (then the user is named by the request: `X-User-Id`, or a field of the body)
/// or a user token (which names the user; naming anyone else is `403`).
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub tenant: TenantAuth,
    /// The user a token names.
    token_user: Option<UserId>,
    header_user: Option<Result<UserId, ApiError>>,
}

impl ApiCaller {
    /// The user the request acts as: the token's, or with an API key the one `named`
    /// (`(field, value)` of the body), else `X-User-Id`; `missing` when none names one.
    pub fn user(&self, named: Option<(&str, &str)>, missing: impl FnOnce() -> ApiError) -> Result<UserId, ApiError> {
        let named = named
            .map(|(field, value)| {
                UserId::parse(value).map_err(|e| ApiError::validation(field, format!("Invalid {field}: {e}")))
            })
            .transpose()?;
        match &self.token_user {
            Some(user) => {
                let header = self.header_user.clone().transpose()?;
                if named.as_ref().is_some_and(|n| n != user) || header.as_ref().is_some_and(|h| h != user) {
                    return Err(ApiError::forbidden(format!("This user token acts for {user} only")));
                }
                Ok(user.clone())
            }
            None => match named {
                Some(user) => Ok(user),
                None => self.header_user.clone().unwrap_or_else(|| Err(missing())),
            },
        }
    }

    /// Checks the user a request names without needing one (tenant-wide helpers): an
    /// `X-User-Id` that is present must be valid (`400`) and, with a user token, the
    /// token's user (`403`), as on every other route.
    pub fn check_named_user(&self) -> Result<(), ApiError> {
        match &self.header_user {
            Some(_) => self.actor().map(|_| ()),
            None => Ok(()),
        }
    }

    /// The tenant and the user, when the user comes from the token or `X-User-Id`.
    pub fn actor(&self) -> Result<Actor, ApiError> {
        Ok(Actor { tenant_id: self.tenant.tenant_id.clone(), user_id: self.user(None, user_required)? })
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive).
pub fn bearer(cx: &Cx) -> Option<&str> {
    let value = cx.header("Authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

impl Part for ApiCaller {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let credential = cx.header(API_KEY).or_else(|| bearer(cx)).ok_or_else(|| {
            ApiError::authentication("Missing API key (X-API-Key header) or user token (Authorization: Bearer)")
        })?;
        let identified = guarded(cx, crate::admit::identify(&cx.state, credential)).await?;
        count(cx, &identified.tenant).await?;
        Ok(ApiCaller { tenant: identified.tenant, token_user: identified.token_user, header_user: header_user(cx) })
    }
}

/// An [`ApiCaller`] acting as the user its token (or, with an API key, `X-User-Id`)
/// names.
#[derive(Debug, Clone)]
pub struct ApiActing(pub Actor);

impl Part for ApiActing {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        ApiCaller::read(cx).await?.actor().map(ApiActing)
    }
}

/// A request made with the operator (admin) key.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl Part for Admin {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let key =
            cx.header(API_KEY).ok_or_else(|| ApiError::authentication("Missing admin API key (X-API-Key header)"))?;
        match guarded(cx, cx.state.auth.admin(&cx.state.bus, key)).await {
            Ok(()) => Ok(Admin),
            // A tenant's key is a valid key without the right: `403`, not `401`.
            Err(e) if e.code == ErrorCode::AuthenticationError => {
                match crate::admit::tenant_of_key(&cx.state, key).await {
                    Ok(_) => Err(ApiError::forbidden("This API key has no admin rights; use the operator key")),
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}
