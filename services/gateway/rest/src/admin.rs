//! The operator API, authenticated with the admin key: tenants, their settings (the
//! `settings` document of `rest::settings` too), key rotation, and the tenant-wide
//! moderation queues (flags, moderation log).

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::TenantId;
use chat_domain::model::{MAX_NAME_CHARS, RetryPolicy, Tenant, validate_rate_limit};
use chat_domain::proto::moderation::{FlagList, LogPage, TenantFlags, TenantModerationLog};
use chat_domain::proto::store::{CreateTenant, GetTenant, ListTenants, RotateKey, UpdateTenant};
use chat_domain::settings::TenantSettingsPatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use chat_domain::proto::Command;
use gateway_core::Core;
use gateway_core::body::field;
use gateway_core::caller::Admin;
use gateway_core::error::HttpResult;
use gateway_core::extract::tenant_id;
use gateway_core::extract::{Body, Cx, InTenant, Page, Part, QueryString, Rest, parts};
use gateway_core::routes::{Mount, op};
use serde_json::json;

/// Fields `PATCH /admin/tenants/{id}` understands.
const SETTINGS: [&str; 6] = ["name", "rate_limit_per_sec", "webhook_url", "webhook_secret", "retry", "settings"];

fn rate_limit(v: Option<Value>) -> Result<Option<u32>, ApiError> {
    field::optional_i64("rate_limit_per_sec", v)?.map(validate_rate_limit).transpose()
}

/// `retry` of `PATCH /admin/tenants/{id}`: an absent field keeps the default.
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "RetryUpdate")]
struct RetryBody {
    /// Tries in all (5 when absent).
    #[schemars(with = "Option<u32>", range(min = 1, max = 20))]
    max_attempts: Option<Value>,
    /// The wait before the second try, doubled for each next one (1000 when absent).
    #[schemars(with = "Option<u64>", range(min = 10, max = 3_600_000))]
    backoff_ms: Option<Value>,
}

fn retry_policy(v: Value) -> Result<RetryPolicy, ApiError> {
    let body: RetryBody =
        serde_json::from_value(v).map_err(|_| ApiError::validation("retry", "retry must be a JSON object"))?;
    let int = |k: &str, v: Option<Value>| -> Result<Option<u64>, ApiError> {
        match v.filter(|x| !x.is_null()) {
            None => Ok(None),
            Some(x) => x.as_u64().map(Some).ok_or_else(|| {
                ApiError::validation(format!("retry.{k}"), format!("retry.{k} must be a positive integer"))
            }),
        }
    };
    let d = RetryPolicy::default();
    let max_attempts = int("max_attempts", body.max_attempts)?.map_or(Ok(d.max_attempts), |n| {
        u32::try_from(n).map_err(|_| ApiError::validation("retry.max_attempts", "too large"))
    })?;
    RetryPolicy { max_attempts, backoff_ms: int("backoff_ms", body.backoff_ms)?.unwrap_or(d.backoff_ms) }.validate()
}

/// The body of `POST /admin/tenants`.
#[derive(Deserialize, JsonSchema)]
pub struct NewTenant {
    #[schemars(with = "String", required, length(min = 1, max = MAX_NAME_CHARS), example = &"Acme")]
    name: Option<Value>,
    /// The tenant's id; generated when absent.
    #[schemars(with = "Option<TenantId>")]
    tenant_id: Option<Value>,
    /// Requests per second the tenant may make (100 when absent).
    #[schemars(with = "Option<u32>", range(min = 1, max = 1_000_000))]
    rate_limit_per_sec: Option<Value>,
}

/// A new tenant, with its API key: shown this once (only its hash is kept).
#[derive(Serialize, JsonSchema)]
pub struct NewTenantKey {
    #[serde(flatten)]
    tenant: Tenant,
    /// Sent as `X-API-Key` by the tenant's servers.
    api_key: String,
}

impl TryFrom<NewTenant> for CreateTenant {
    type Error = ApiError;

    fn try_from(body: NewTenant) -> Result<Self, ApiError> {
        let name = field::required_str("name", body.name)?;
        let tenant_id = field::optional_str("tenant_id", body.tenant_id)?.map(|t| tenant_id(&t)).transpose()?;
        let rate_limit_per_sec = rate_limit(body.rate_limit_per_sec)?;
        Ok(CreateTenant { name, tenant_id, rate_limit_per_sec })
    }
}

pub async fn create_tenant(
    Rest((Admin, Body(body))): Rest<(Admin, Body<NewTenant>)>,
    state: web::Data<Core>,
) -> HttpResult {
    let created = state.bus.request(&CreateTenant::try_from(body)?).await?;
    Ok(HttpResponse::Created().json(NewTenantKey { tenant: created.tenant, api_key: created.api_key }))
}

pub async fn list_tenants(Rest((Admin, page)): Rest<(Admin, Page)>, state: web::Data<Core>) -> HttpResult {
    Ok(HttpResponse::Ok().json(state.bus.request(&ListTenants { limit: page.limit, offset: page.offset }).await?))
}

pub async fn get_tenant(
    Rest((Admin, InTenant(tenant_id))): Rest<(Admin, InTenant)>,
    state: web::Data<Core>,
) -> HttpResult {
    Ok(HttpResponse::Ok().json(state.bus.request(&GetTenant { tenant_id }).await?))
}

/// `GET /admin/tenants/{id}/flags?status=&limit=&offset=`: the tenant's review queue
/// across rooms (room moderation's flags), newest first.
pub async fn tenant_flags(
    Rest((Admin, InTenant(tenant_id), page, QueryString(q))): Rest<(Admin, InTenant, Page, QueryString)>,
    state: web::Data<Core>,
) -> HttpResult {
    let open_only = crate::moderation::open_only(&q)?;
    state.bus.request(&GetTenant { tenant_id: tenant_id.clone() }).await?;
    let cmd = TenantFlags { tenant_id, open_only, limit: page.limit, offset: page.offset };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

/// `GET /admin/tenants/{id}/moderation-log?limit=&offset=`: every room's moderation
/// actions, newest first.
pub async fn tenant_moderation_log(
    Rest((Admin, InTenant(tenant_id), page)): Rest<(Admin, InTenant, Page)>,
    state: web::Data<Core>,
) -> HttpResult {
    state.bus.request(&GetTenant { tenant_id: tenant_id.clone() }).await?;
    let cmd = TenantModerationLog { tenant_id, limit: page.limit, offset: page.offset };
    Ok(HttpResponse::Ok().json(state.bus.request(&cmd).await?))
}

/// The body of `PATCH /admin/tenants/{id}`: any of the settings, nothing else (absent
/// ones stay as they are).
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "TenantUpdate", extend("additionalProperties" = false))]
pub struct Settings {
    #[schemars(with = "Option<String>", length(min = 1, max = MAX_NAME_CHARS))]
    name: Option<Value>,
    /// Requests per second the tenant may make.
    #[schemars(with = "Option<u32>", range(min = 1, max = 1_000_000))]
    rate_limit_per_sec: Option<Value>,
    /// Where offline notifications are POSTed (`http://` or `https://`, at most 2,048
    /// characters); an empty string removes it.
    #[schemars(with = "Option<String>", example = &"https://example.com/hooks/chat")]
    webhook_url: Option<Value>,
    /// The secret that signs webhook deliveries (16 to 256 printable characters).
    #[schemars(with = "Option<String>", length(min = 16, max = 256))]
    webhook_secret: Option<Value>,
    /// How failed webhook deliveries are retried.
    #[schemars(with = "Option<RetryBody>")]
    retry: Option<Value>,
    /// Tenant settings keys to replace (as `PATCH /settings` takes them).
    #[schemars(with = "Option<TenantSettingsPatch>")]
    settings: Option<Value>,
    /// Anything else, refused by name.
    #[serde(flatten)]
    #[schemars(skip)]
    unknown: BTreeMap<String, Value>,
}

/// `PATCH /admin/tenants/{tenant_id}`.
pub struct UpdateRequest {
    tenant_id: TenantId,
    body: Settings,
}

impl Part for UpdateRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (Admin, InTenant(tenant_id), Body(body)) = parts(cx).await?;
        Ok(Self { tenant_id, body })
    }
}

impl TryFrom<UpdateRequest> for UpdateTenant {
    type Error = ApiError;

    fn try_from(UpdateRequest { tenant_id, body }: UpdateRequest) -> Result<Self, ApiError> {
        if let Some(unknown) = body.unknown.keys().next() {
            return Err(ApiError::validation(
                unknown.clone(),
                format!("Unknown setting {unknown:?}; known: {}", SETTINGS.join(", ")),
            ));
        }
        let name = field::optional_str("name", body.name)?;
        let rate_limit_per_sec = rate_limit(body.rate_limit_per_sec)?;
        let webhook_url = field::optional_str("webhook_url", body.webhook_url)?;
        let webhook_secret = field::optional_str("webhook_secret", body.webhook_secret)?;
        let retry = field::optional_object("retry", body.retry)?.map(retry_policy).transpose()?;
        let settings = body
            .settings
            .filter(|v| !v.is_null())
            .map(|v| super::settings::patch(v, false).map_err(super::settings::in_admin_body))
            .transpose()?;
        Ok(UpdateTenant { tenant_id, name, rate_limit_per_sec, webhook_url, webhook_secret, retry, settings })
    }
}

pub async fn update_tenant(Rest(req): Rest<UpdateRequest>, state: web::Data<Core>) -> HttpResult {
    let cmd = UpdateTenant::try_from(req)?;
    let tenant_id = cmd.tenant_id.clone();
    let tenant = state.bus.request(&cmd).await.map_err(super::settings::in_admin_body)?;
    state.forget_tenant(&tenant_id);
    Ok(HttpResponse::Ok().json(tenant))
}

pub async fn rotate_key(
    Rest((Admin, InTenant(tenant_id))): Rest<(Admin, InTenant)>,
    state: web::Data<Core>,
) -> HttpResult {
    let rotated = state.bus.request(&RotateKey { tenant_id: tenant_id.clone() }).await?;
    state.forget_tenant(&tenant_id);
    Ok(HttpResponse::Ok().json(rotated))
}

/// The operator's routes of tenants, each with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    m.tagged("Admin")
.at(&["/admin/tenants"], |r| {
            r.post(
                create_tenant,
                op("Create a tenant")
                    .describe("With its first API key, shown this once.")
                    .operator()
                    .json_example::<NewTenant>(json!({"name": "Acme", "tenant_id": "acme", "rate_limit_per_sec": 100}))
                    .reply_example::<NewTenantKey>(
                        201,
                        "The tenant and its API key.",
                        json!({
                            "tenant_id": "acme",
                            "name": "Acme",
                            "rate_limit_per_sec": 100,
                            "api_key_prefixes": ["sk_3f9a1b2"],
                            "webhook_url": null,
                            "webhook_secret_set": false,
                            "retry": {"max_attempts": 5, "backoff_ms": 1000},
                            "settings": {
                                "jwt": {"issuers": []},
                                "edit_window_secs": 900,
                                "upload_max_bytes": 10485760,
                                "upload_allowed_types": ["image/png", "image/jpeg"],
                            },
                            "created_at": "2025-12-13T12:00:00.000000Z",
                            "api_key": "sk_3f9a1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8",
                        }),
                    )
                    .errors(&[400, 401, 403, 409, 413, 503]),
            )
            .get(
                list_tenants,
                op("List tenants")
                    .describe("Oldest first.")
                    .operator()
                    .query::<gateway_core::extract::Page>()
                    .reply::<Vec<chat_domain::model::Tenant>>(200, "A page of tenants.")
                    .errors(&[400, 401, 403, 503]),
            )
        })
        .at(&["/admin/tenants/{tenant_id}"], |r| {
            r.get(
                get_tenant,
                op("Get a tenant")
                    .operator()
                    .path_id::<chat_domain::ids::TenantId>("tenant_id", "The tenant.")
                    .reply::<chat_domain::model::Tenant>(200, "The tenant (secrets redacted).")
                    .errors(&[400, 401, 403, 404, 503]),
            )
            .patch(
                update_tenant,
                op("Update a tenant")
                    .describe("The fields given replace the stored ones; unknown fields are `400`. A JWT issuer another tenant registered is `409`.")
                    .operator()
                    .path_id::<chat_domain::ids::TenantId>("tenant_id", "The tenant.")
                    .json::<Settings>()
                    .reply::<chat_domain::model::Tenant>(200, "The tenant, updated.")
                    .errors(&[400, 401, 403, 404, 409, 413, 503]),
            )
            .delete(crate::erasure::delete_tenant, crate::erasure::delete_tenant_op())
        })
        .at(&["/admin/tenants/{tenant_id}/flags"], |r| {
            r.get(
                tenant_flags,
                op("List a tenant's flagged messages")
                    .describe("The review queue across the tenant's rooms, newest first: `status=open` (the default, unresolved only) or `all`.")
                    .operator()
                    .path_id::<chat_domain::ids::TenantId>("tenant_id", "The tenant.")
                    .query::<crate::moderation::FlagQuery>()
                    .query::<Page>()
                    .reply::<FlagList>(200, "A page of flags.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/admin/tenants/{tenant_id}/moderation-log"], |r| {
            r.get(
                tenant_moderation_log,
                op("Read a tenant's moderation log")
                    .describe("Every room's moderation actions, newest first (see `GET /rooms/{room_id}/moderation-log`).")
                    .operator()
                    .path_id::<chat_domain::ids::TenantId>("tenant_id", "The tenant.")
                    .query::<Page>()
                    .reply::<LogPage>(200, "A page of the log.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        })
        .at(&["/admin/tenants/{tenant_id}/rotate-key"], |r| {
            r.post(
                rotate_key,
                op("Rotate a tenant's API key")
                    .describe("Issues a new key (shown this once) and revokes the previous ones; their user tokens stop working too.")
                    .operator()
                    .path_id::<chat_domain::ids::TenantId>("tenant_id", "The tenant.")
                    .reply::<<RotateKey as Command>::Reply>(200, "The new key.")
                    .errors(&[400, 401, 403, 404, 503]),
            )
        });
}
