//! Who is calling: the [`Caller`] extractor authenticates the tenant key
//! (`X-API-Key`), counts the request against the tenant's rate limit, and reads
//! `X-User-Id`. The rate-limit decision is left in the request's extensions for the
//! response middleware to turn into `X-RateLimit-*` headers.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use chat_domain::ApiError;
use chat_domain::ids::UserId;
use chat_domain::model::Actor;
use chat_domain::proto::store::TenantAuth;

use crate::AppState;
use crate::error::HttpError;

pub const API_KEY: &str = "X-API-Key";
pub const USER_ID: &str = "X-User-Id";

/// An authenticated, rate-limited tenant request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantAuth,
    user: Result<UserId, ApiError>,
}

impl Caller {
    /// The tenant and user this request acts for; `X-User-Id` must be present and valid.
    pub fn actor(&self) -> Result<Actor, ApiError> {
        let user_id = self.user.clone()?;
        Ok(Actor { tenant_id: self.tenant.tenant_id.clone(), user_id })
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>().cloned().ok_or_else(ApiError::internal)
}

impl FromRequest for Caller {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, HttpError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let key =
                header(&req, API_KEY).ok_or_else(|| ApiError::authentication("Missing API key (X-API-Key header)"))?;
            let tenant = crate::admit::tenant_of_key(&state, key).await?;
            let decision = crate::admit::count(&state, &tenant).await;
            req.extensions_mut().insert(decision);
            if !decision.allowed {
                return Err(crate::admit::rate_limited(&decision).into());
            }
            let user = match header(&req, USER_ID) {
                None => Err(ApiError::validation(USER_ID, "X-User-Id header is required")),
                Some(u) => {
                    UserId::parse(u).map_err(|e| ApiError::validation(USER_ID, format!("Invalid X-User-Id: {e}")))
                }
            };
            Ok(Caller { tenant, user })
        })
    }
}

/// A request made with the operator (admin) key.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequest for Admin {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, HttpError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let key = header(&req, API_KEY)
                .ok_or_else(|| ApiError::authentication("Missing admin API key (X-API-Key header)"))?;
            state.auth.admin(&state.bus, key).await?;
            Ok(Admin)
        })
    }
}
