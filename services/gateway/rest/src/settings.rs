//! A tenant's settings (`chat_domain::settings::TenantSettings`): read and written by
//! the tenant itself with its API key (`GET`/`PUT`/`PATCH /settings`), and by the
//! operator as `settings` in `PATCH /admin/tenants/{id}`.
//!
//! A body is parsed here into a [`TenantSettingsPatch`] (unknown keys and wrong types
//! are `400` naming the field), the JWT issuers' keys are parsed (`gateway_core::jwt::check`:
//! a bad PEM or JWKS is `400` naming it), and message-store merges, validates the
//! bounds and stores the result (an issuer another tenant registered is `409`). Reads
//! never show an HS256 secret: `secret_set: true` stands for it, and writing an issuer
//! back without `secret` keeps the stored one.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::TenantId;
use chat_domain::proto::store::{GetTenant, UpdateTenant};
use chat_domain::settings::{JwtAlgorithm, JwtIssuer, JwtSettings, TenantSettings, TenantSettingsPatch};
use serde_json::{Map, Value};

use gateway_core::Core;
use gateway_core::body::field;
use gateway_core::caller::Caller;
use gateway_core::error::HttpResult;
use gateway_core::extract::{Body, Rest};
use gateway_core::routes::{Mount, op};

/// The keys of a settings document.
const KEYS: [&str; 5] = ["jwt", "edit_window_secs", "upload_max_bytes", "upload_allowed_types", "search_language"];
const ISSUER_KEYS: [&str; 8] =
    ["issuer", "algorithm", "audience", "user_id_claim", "secret", "secret_set", "public_key_pem", "jwks"];

fn unknown(at: &str, key: &str, known: &[&str]) -> ApiError {
    let field = if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
    ApiError::validation(field.clone(), format!("Unknown setting {field:?}; known: {}", known.join(", ")))
}

fn object(field: &str, v: Value) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::validation(field, format!("{field} must be a JSON object"))),
    }
}

fn non_negative(field: &str, v: Value) -> Result<u64, ApiError> {
    v.as_u64().ok_or_else(|| ApiError::validation(field, format!("{field} must be a non-negative integer")))
}

fn issuer(at: &str, v: Value) -> Result<JwtIssuer, ApiError> {
    let mut m = object(at, v)?;
    if let Some(k) = m.keys().find(|k| !ISSUER_KEYS.contains(&k.as_str())) {
        return Err(unknown(at, k, &ISSUER_KEYS));
    }
    let f = |k: &str| format!("{at}.{k}");
    let algorithm = match field::required_str(&f("algorithm"), m.remove("algorithm"))?.as_str() {
        "HS256" => JwtAlgorithm::HS256,
        "RS256" => JwtAlgorithm::RS256,
        "ES256" => JwtAlgorithm::ES256,
        other => {
            return Err(ApiError::validation(
                f("algorithm"),
                format!("algorithm {other:?} is not supported; use HS256, RS256 or ES256"),
            ));
        }
    };
    let jwks = field::optional_object(&f("jwks"), m.remove("jwks"))?;
    Ok(JwtIssuer {
        issuer: field::required_str(&f("issuer"), m.remove("issuer"))?,
        algorithm,
        audience: field::optional_str(&f("audience"), m.remove("audience"))?,
        user_id_claim: field::optional_str(&f("user_id_claim"), m.remove("user_id_claim"))?
            .unwrap_or_else(|| "sub".to_owned()),
        secret: field::optional_str(&f("secret"), m.remove("secret"))?,
        // Shown by reads; accepted (and ignored) so that a read can be written back.
        secret_set: false,
        public_key_pem: field::optional_str(&f("public_key_pem"), m.remove("public_key_pem"))?,
        jwks,
    })
}

fn jwt(v: Value) -> Result<JwtSettings, ApiError> {
    let mut m = object("jwt", v)?;
    if let Some(k) = m.keys().find(|k| k.as_str() != "issuers") {
        return Err(unknown("jwt", k, &["issuers"]));
    }
    let issuers = match m.remove("issuers").filter(|v| !v.is_null()) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(n, v)| issuer(&format!("jwt.issuers[{n}]"), v))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::validation("jwt.issuers", "jwt.issuers must be an array")),
    };
    let jwt = JwtSettings { issuers };
    gateway_core::jwt::check(&jwt)?;
    Ok(jwt)
}

/// Parses a settings document. With `replace`, keys it lacks are reset to their
/// defaults (`PUT`); without, they stay as stored (`PATCH`). `null` resets a key.
pub fn patch(v: Value, replace: bool) -> Result<TenantSettingsPatch, ApiError> {
    let mut m = object("settings", v)?;
    if let Some(k) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(unknown("", k, &KEYS));
    }
    let d = TenantSettings::default();
    let mut take = |k: &str| match m.remove(k) {
        None if replace => Some(Value::Null),
        v => v,
    };
    Ok(TenantSettingsPatch {
        jwt: take("jwt").map(|v| if v.is_null() { Ok(d.jwt.clone()) } else { jwt(v) }).transpose()?,
        edit_window_secs: take("edit_window_secs")
            .map(|v| if v.is_null() { Ok(d.edit_window_secs) } else { non_negative("edit_window_secs", v) })
            .transpose()?,
        upload_max_bytes: take("upload_max_bytes")
            .map(|v| if v.is_null() { Ok(d.upload_max_bytes) } else { non_negative("upload_max_bytes", v) })
            .transpose()?,
        upload_allowed_types: take("upload_allowed_types")
            .map(|v| {
                if v.is_null() {
                    return Ok(d.upload_allowed_types.clone());
                }
                let types = field::optional_str_array("upload_allowed_types", Some(v))?.unwrap_or_default();
                // MIME types are case-insensitive; they are kept in lower case.
                Ok::<_, ApiError>(types.into_iter().map(|t| t.trim().to_ascii_lowercase()).collect())
            })
            .transpose()?,
        search_language: take("search_language")
            .map(|v| {
                if v.is_null() {
                    return Ok(d.search_language.clone());
                }
                field::required_str("search_language", Some(v))
            })
            .transpose()?,
    })
}

/// A validation error about a settings key, as a field of `PATCH /admin/tenants`'
/// body (`jwt.issuers[0].secret` → `settings.jwt.issuers[0].secret`).
pub fn in_admin_body(mut e: ApiError) -> ApiError {
    if let Some(field) = &e.field
        && KEYS.iter().any(|k| field.starts_with(k))
    {
        e.field = Some(format!("settings.{field}"));
    }
    e
}

/// Stores `patch` for `tenant` and answers with the settings now in force.
async fn write(state: &Core, tenant: &TenantId, patch: TenantSettingsPatch) -> HttpResult {
    let cmd = UpdateTenant {
        tenant_id: tenant.clone(),
        name: None,
        rate_limit_per_sec: None,
        webhook_url: None,
        webhook_secret: None,
        retry: None,
        settings: Some(patch),
    };
    let updated = state.bus.request(&cmd).await?;
    state.forget_tenant(tenant);
    Ok(HttpResponse::Ok().json(updated.settings))
}

/// `GET /settings` with the API key: the tenant's settings (secrets redacted).
pub async fn get(Rest(caller): Rest<Caller>, state: web::Data<Core>) -> HttpResult {
    let tenant = state.bus.request(&GetTenant { tenant_id: caller.tenant.tenant_id.clone() }).await?;
    Ok(HttpResponse::Ok().json(tenant.settings))
}

/// `PUT /settings`: the whole document; keys it lacks go back to their defaults.
pub async fn put(Rest((caller, Body(body))): Rest<(Caller, Body<Value>)>, state: web::Data<Core>) -> HttpResult {
    write(&state, &caller.tenant.tenant_id, patch(body, true)?).await
}

/// `PATCH /settings`: the keys given replace the stored ones; the rest stay.
pub async fn update(Rest((caller, Body(body))): Rest<(Caller, Body<Value>)>, state: web::Data<Core>) -> HttpResult {
    write(&state, &caller.tenant.tenant_id, patch(body, false)?).await
}

/// The routes of the tenant's settings, each with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    m.tagged("Settings")
.at(&["/settings"], |r| {
            r.get(
                get,
                op("The tenant's settings")
                    .describe("HS256 secrets are never shown: `secret_set: true` stands for one.")
                    .tenant()
                    .reply::<TenantSettings>(200, "The settings in force.")
                    .errors(&[401, 503]),
            )
            .put(
                put,
                op("Replace the tenant's settings")
                    .describe("Keys left out go back to their defaults; unknown keys are `400`. An issuer written back without `secret` keeps the stored one; one another tenant registered is `409`.")
                    .tenant()
                    .json::<TenantSettingsPatch>()
                    .reply::<TenantSettings>(200, "The settings in force.")
                    .errors(&[400, 401, 409, 413, 503]),
            )
            .patch(
                update,
                op("Change some of the tenant's settings")
                    .describe("The keys given replace the stored ones (`null` resets one to its default); the rest stay. Unknown keys are `400`; an issuer another tenant registered is `409`.")
                    .tenant()
                    .json::<TenantSettingsPatch>()
                    .reply::<TenantSettings>(200, "The settings in force.")
                    .errors(&[400, 401, 409, 413, 503]),
            )
        });
}
