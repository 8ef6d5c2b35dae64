//! The operator API, authenticated with the admin key: tenants, their settings and
//! key rotation.

use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::model::{RetryPolicy, validate_rate_limit};
use chat_domain::proto::store::{CreateTenant, GetTenant, ListTenants, RotateKey, UpdateTenant};
use serde_json::json;

use super::{page, tenant_id};
use crate::AppState;
use crate::body::{Fields, Query};
use crate::caller::Admin;
use crate::error::HttpResult;

/// Fields `PATCH /admin/tenants/{id}` understands.
const SETTINGS: [&str; 5] = ["name", "rate_limit_per_sec", "webhook_url", "webhook_secret", "retry"];

fn rate_limit(f: &Fields) -> Result<Option<u32>, ApiError> {
    f.optional_i64("rate_limit_per_sec")?.map(validate_rate_limit).transpose()
}

/// `{"max_attempts","backoff_ms"}`; an absent field keeps the default.
fn retry_policy(v: &serde_json::Value) -> Result<RetryPolicy, ApiError> {
    let int = |k: &str| -> Result<Option<u64>, ApiError> {
        match v.get(k).filter(|x| !x.is_null()) {
            None => Ok(None),
            Some(x) => x.as_u64().map(Some).ok_or_else(|| {
                ApiError::validation(format!("retry.{k}"), format!("retry.{k} must be a positive integer"))
            }),
        }
    };
    let d = RetryPolicy::default();
    let max_attempts = int("max_attempts")?.map_or(Ok(d.max_attempts), |n| {
        u32::try_from(n).map_err(|_| ApiError::validation("retry.max_attempts", "too large"))
    })?;
    RetryPolicy { max_attempts, backoff_ms: int("backoff_ms")?.unwrap_or(d.backoff_ms) }.validate()
}

pub async fn create_tenant(req: HttpRequest, body: web::Payload, _: Admin, state: web::Data<AppState>) -> HttpResult {
    let f = Fields::read(&req, body, state.max_body_bytes).await?;
    let name = f.required_str("name")?.to_owned();
    let tenant_id = f.optional_str("tenant_id")?.map(tenant_id).transpose()?;
    let rate_limit_per_sec = rate_limit(&f)?;
    let created = state.bus.request(&CreateTenant { name, tenant_id, rate_limit_per_sec }).await?;
    let mut body = serde_json::to_value(&created.tenant).map_err(|_| ApiError::internal())?;
    body["api_key"] = json!(created.api_key);
    Ok(HttpResponse::Created().json(body))
}

pub async fn list_tenants(req: HttpRequest, _: Admin, state: web::Data<AppState>) -> HttpResult {
    let (limit, offset) = page(&Query::parse(&req)?)?;
    Ok(HttpResponse::Ok().json(state.bus.request(&ListTenants { limit, offset }).await?))
}

pub async fn get_tenant(path: web::Path<String>, _: Admin, state: web::Data<AppState>) -> HttpResult {
    let cmd = GetTenant { tenant_id: tenant_id(&path)? };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

pub async fn update_tenant(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    _: Admin,
    state: web::Data<AppState>,
) -> HttpResult {
    let tenant_id = tenant_id(&path)?;
    let body = crate::body::read(&req, body, state.max_body_bytes).await?;
    let f = Fields::parse(&body)?;
    if let Some(unknown) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
        .ok()
        .and_then(|m| m.keys().find(|k| !SETTINGS.contains(&k.as_str())).cloned())
    {
        return Err(ApiError::validation(
            unknown.clone(),
            format!("Unknown setting {unknown:?}; known: {}", SETTINGS.join(", ")),
        )
        .into());
    }
    let name = f.optional_str("name")?.map(str::to_owned);
    let rate_limit_per_sec = rate_limit(&f)?;
    let webhook_url = f.optional_str("webhook_url")?.map(str::to_owned);
    let webhook_secret = f.optional_str("webhook_secret")?.map(str::to_owned);
    let retry = f.optional_object("retry")?.map(|r| retry_policy(&r)).transpose()?;
    let cmd =
        UpdateTenant { tenant_id: tenant_id.clone(), name, rate_limit_per_sec, webhook_url, webhook_secret, retry };
    let tenant = state.bus.request(&cmd).await?;
    state.auth.forget(&tenant_id);
    Ok(HttpResponse::Ok().json(tenant))
}

pub async fn rotate_key(path: web::Path<String>, _: Admin, state: web::Data<AppState>) -> HttpResult {
    let tenant_id = tenant_id(&path)?;
    let rotated = state.bus.request(&RotateKey { tenant_id: tenant_id.clone() }).await?;
    state.auth.forget(&tenant_id);
    state.secrets.forget(&tenant_id);
    Ok(HttpResponse::Ok().json(rotated))
}
