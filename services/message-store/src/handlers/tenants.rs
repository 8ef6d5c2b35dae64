//! Tenants and their keys: authentication, the admin API's commands, rotation.

use chat_domain::ApiError;
use chat_domain::ids::TenantId;
use chat_domain::keys;
use chat_domain::model::{
    DEFAULT_RATE_LIMIT_PER_SEC, Tenant, validate_name, validate_rate_limit, validate_webhook_secret,
    validate_webhook_url,
};
use chat_domain::proto::Done;
use chat_domain::proto::store::{
    Authenticate, AuthenticateAdmin, CreateTenant, GetTenant, GetTokenSecret, GetWebhook, KeyRotated, ListTenants,
    ResolveIssuer, RotateKey, TenantAuth, TenantCreated, TokenSecret, UpdateTenant, Webhook,
};
use chat_domain::settings::{TenantSettings, TenantSettingsPatch};
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::error::{StoreError, optional, stored};
use crate::rows::{TENANT_COLUMNS, TenantRow};
use crate::store::{Store, reside};

/// A tenant as the gateway's admission needs it.
#[derive(diesel::QueryableByName)]
struct AuthRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    rate_limit_per_sec: i32,
    #[diesel(sql_type = Jsonb)]
    settings: serde_json::Value,
}

impl TryFrom<AuthRow> for TenantAuth {
    type Error = StoreError;

    fn try_from(row: AuthRow) -> Result<Self, StoreError> {
        Ok(TenantAuth {
            tenant_id: stored(TenantId::parse(row.id))?,
            name: row.name,
            rate_limit_per_sec: row.rate_limit_per_sec.max(1) as u32,
            settings: TenantSettings::from_stored(&row.settings),
        })
    }
}

pub async fn authenticate(store: Store, cmd: Authenticate) -> Result<TenantAuth, ApiError> {
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    let row: Option<AuthRow> = optional(
        diesel::sql_query(
            "SELECT t.id, t.name, t.rate_limit_per_sec, t.settings FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind::<Text, _>(keys::hash(&cmd.api_key))
        .get_result(&mut conn)
        .await,
    )
    .map_err(StoreError::from)?;
    Ok(row.ok_or_else(|| ApiError::authentication("Invalid API key"))?.try_into()?)
}

/// The tenant that registered the JWT issuer `cmd.issuer` (`AUTHENTICATION_ERROR`
/// when none did: the token is not one of ours).
pub async fn resolve_issuer(store: Store, cmd: ResolveIssuer) -> Result<TenantAuth, ApiError> {
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    let row: Option<AuthRow> = optional(
        diesel::sql_query(
            "SELECT t.id, t.name, t.rate_limit_per_sec, t.settings FROM tenant_jwt_issuers i
             JOIN tenants t ON t.id = i.tenant_id WHERE i.issuer = $1",
        )
        .bind::<Text, _>(&cmd.issuer)
        .get_result(&mut conn)
        .await,
    )
    .map_err(StoreError::from)?;
    Ok(row.ok_or_else(|| ApiError::authentication("Unknown token issuer"))?.try_into()?)
}

pub async fn get_token_secret(store: Store, cmd: GetTokenSecret) -> Result<TokenSecret, ApiError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Integer)]
        rate_limit_per_sec: i32,
        #[diesel(sql_type = Text)]
        token_secret: String,
        #[diesel(sql_type = Jsonb)]
        settings: serde_json::Value,
    }
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    let row: Option<Row> = optional(
        diesel::sql_query("SELECT name, rate_limit_per_sec, token_secret, settings FROM tenants WHERE id = $1")
            .bind::<Text, _>(cmd.tenant_id.as_str())
            .get_result(&mut conn)
            .await,
    )
    .map_err(StoreError::from)?;
    let row = row.ok_or_else(|| ApiError::authentication("Invalid token"))?;
    Ok(TokenSecret {
        tenant: TenantAuth {
            tenant_id: cmd.tenant_id,
            name: row.name,
            rate_limit_per_sec: row.rate_limit_per_sec.max(1) as u32,
            settings: TenantSettings::from_stored(&row.settings),
        },
        secret: row.token_secret,
    })
}

pub async fn get_webhook(store: Store, cmd: GetWebhook) -> Result<Webhook, ApiError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        settings: serde_json::Value,
    }
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    let row: Option<Row> = optional(
        diesel::sql_query("SELECT settings FROM tenants WHERE id = $1")
            .bind::<Text, _>(cmd.tenant_id.as_str())
            .get_result(&mut conn)
            .await,
    )
    .map_err(StoreError::from)?;
    let s = row.ok_or_else(|| ApiError::not_found("Tenant not found"))?.settings;
    let text = |k: &str| s.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(Webhook {
        url: text("webhook_url"),
        secret: text("webhook_secret"),
        retry: s.get("retry").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default(),
    })
}

pub async fn authenticate_admin(store: Store, cmd: AuthenticateAdmin) -> Result<Done, ApiError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Integer)]
        #[allow(dead_code)]
        one: i32,
    }
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    let found: Option<Row> = optional(
        diesel::sql_query("SELECT 1 AS one FROM admin_keys WHERE key_hash = $1")
            .bind::<Text, _>(keys::hash(&cmd.api_key))
            .get_result(&mut conn)
            .await,
    )
    .map_err(StoreError::from)?;
    found.map(|_| Done {}).ok_or_else(|| ApiError::authentication("Invalid admin API key"))
}

pub async fn create_tenant(store: Store, cmd: CreateTenant) -> Result<TenantCreated, ApiError> {
    let cluster = store.placement_for_new_tenant().await?;
    create_on(store, cmd, &cluster).await
}

/// Creates the tenant with its data on `cluster`: its residency row there first
/// (harmless if the rest fails: nothing refers to it), then the tenant, its key and its
/// placement in the directory (the home cluster), in one transaction there.
pub(super) async fn create_on(store: Store, cmd: CreateTenant, cluster: &str) -> Result<TenantCreated, ApiError> {
    let name = validate_name("name", &cmd.name)?;
    let tenant_id = cmd.tenant_id.unwrap_or_else(TenantId::generate);
    let limit = cmd
        .rate_limit_per_sec
        .map(|l| validate_rate_limit(i64::from(l)))
        .transpose()?
        .unwrap_or(DEFAULT_RATE_LIMIT_PER_SEC);
    let data = store.0.dbs.get(cluster).cloned().ok_or_else(|| {
        let mut e = ApiError::validation("cluster", format!("no database cluster named {cluster:?}"));
        e.code = chat_domain::ErrorCode::NotFound;
        e
    })?;
    let home_is_data = data.name == store.home().name;
    if !home_is_data {
        let mut conn = data.pool.get().await.map_err(StoreError::from)?;
        reside(&mut conn, &tenant_id).await?;
    }
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    let api_key = keys::generate(keys::TENANT_KEY_PREFIX);
    let (id, key, cluster) = (tenant_id.clone(), api_key.clone(), cluster.to_owned());
    let tenant = conn
        .transaction(async move |conn| -> Result<Tenant, StoreError> {
            let inserted = diesel::sql_query(
                "INSERT INTO tenants (id, name, rate_limit_per_sec, cluster) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind::<Text, _>(id.as_str())
            .bind::<Text, _>(&name)
            .bind::<Integer, _>(limit.min(i32::MAX as u32) as i32)
            .bind::<Text, _>(&cluster)
            .execute(conn)
            .await?;
            if inserted == 0 {
                return Err(ApiError::conflict(format!("Tenant {id} already exists")).into());
            }
            if home_is_data {
                reside(conn, &id).await?;
            }
            insert_key(conn, &id, &key).await?;
            load_tenant(conn, &id).await
        })
        .await?;
    Ok(TenantCreated { tenant, api_key })
}

pub async fn list_tenants(store: Store, cmd: ListTenants) -> Result<Vec<Tenant>, ApiError> {
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    let rows: Vec<TenantRow> = diesel::sql_query(format!(
        "SELECT {TENANT_COLUMNS} FROM tenants t ORDER BY t.created_at, t.id LIMIT $1 OFFSET $2"
    ))
    .bind::<BigInt, _>(i64::from(cmd.limit))
    .bind::<BigInt, _>(i64::from(cmd.offset))
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(rows.into_iter().map(Tenant::try_from).collect::<Result<_, _>>()?)
}

pub async fn get_tenant(store: Store, cmd: GetTenant) -> Result<Tenant, ApiError> {
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    Ok(load_tenant(&mut conn, &cmd.tenant_id).await?)
}

pub async fn update_tenant(store: Store, cmd: UpdateTenant) -> Result<Tenant, ApiError> {
    let name = cmd.name.as_deref().map(|n| validate_name("name", n)).transpose()?;
    if let Some(l) = cmd.rate_limit_per_sec {
        validate_rate_limit(i64::from(l))?;
    }
    // Webhook settings merge into the settings document; an empty URL removes it.
    let mut patch = serde_json::Map::new();
    if let Some(url) = &cmd.webhook_url {
        if url.is_empty() {
            patch.insert("webhook_url".into(), serde_json::Value::Null);
        } else {
            validate_webhook_url(url)?;
            patch.insert("webhook_url".into(), url.clone().into());
        }
    }
    if let Some(secret) = &cmd.webhook_secret {
        validate_webhook_secret(secret)?;
        patch.insert("webhook_secret".into(), secret.clone().into());
    }
    if let Some(retry) = cmd.retry {
        let retry = retry.validate()?;
        patch.insert("retry".into(), serde_json::to_value(retry).map_err(|_| ApiError::internal())?);
    }
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    let id = cmd.tenant_id.clone();
    let rate_limit = cmd.rate_limit_per_sec.map(|l| l.min(i32::MAX as u32) as i32);
    let settings = cmd.settings.filter(|p| !p.is_empty());
    let language_set = settings.as_ref().is_some_and(|p| p.search_language.is_some());
    let tenant = conn
        .transaction(async move |conn| -> Result<Tenant, StoreError> {
            let updated = diesel::sql_query(
                "UPDATE tenants SET name = COALESCE($2, name),
                     rate_limit_per_sec = COALESCE($3, rate_limit_per_sec),
                     settings = settings || $4, updated_at = now()
                 WHERE id = $1",
            )
            .bind::<Text, _>(id.as_str())
            .bind::<Nullable<Text>, _>(name)
            .bind::<Nullable<Integer>, _>(rate_limit)
            .bind::<Jsonb, _>(serde_json::Value::Object(patch))
            .execute(conn)
            .await?;
            if updated == 0 {
                return Err(ApiError::not_found("Tenant not found").into());
            }
            if let Some(settings) = settings {
                write_settings(conn, &id, settings).await?;
            }
            load_tenant(conn, &id).await
        })
        .await?;
    if language_set {
        super::search::set_language(&store, &cmd.tenant_id, &tenant.settings.search_language).await?;
    }
    store.tenant_changed(&cmd.tenant_id).await;
    Ok(tenant)
}

/// Applies `patch` to the tenant's stored settings (its row is locked by the caller's
/// transaction), validates the result, and registers its JWT issuers to it: an issuer
/// another tenant registered is `CONFLICT`.
async fn write_settings(
    conn: &mut AsyncPgConnection,
    id: &TenantId,
    patch: TenantSettingsPatch,
) -> Result<(), StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Jsonb)]
        settings: serde_json::Value,
    }
    let row: Row = diesel::sql_query("SELECT settings FROM tenants WHERE id = $1")
        .bind::<Text, _>(id.as_str())
        .get_result(conn)
        .await?;
    let next = patch.apply(&TenantSettings::from_stored(&row.settings));
    next.validate()?;
    diesel::sql_query("UPDATE tenants SET settings = settings || $2 WHERE id = $1")
        .bind::<Text, _>(id.as_str())
        .bind::<Jsonb, _>(next.to_stored())
        .execute(conn)
        .await?;
    diesel::sql_query("DELETE FROM tenant_jwt_issuers WHERE tenant_id = $1")
        .bind::<Text, _>(id.as_str())
        .execute(conn)
        .await?;
    // In a fixed order, so two tenants registering the same issuers wait on each
    // other instead of deadlocking.
    let mut issuers: Vec<&str> = next.jwt.issuers.iter().map(|i| i.issuer.as_str()).collect();
    issuers.sort_unstable();
    for issuer in issuers {
        let inserted = diesel::sql_query(
            "INSERT INTO tenant_jwt_issuers (issuer, tenant_id) VALUES ($1, $2) ON CONFLICT (issuer) DO NOTHING",
        )
        .bind::<Text, _>(issuer)
        .bind::<Text, _>(id.as_str())
        .execute(conn)
        .await?;
        if inserted == 0 {
            return Err(ApiError::conflict(format!("JWT issuer {issuer:?} is registered to another tenant")).into());
        }
    }
    Ok(())
}

pub async fn rotate_key(store: Store, cmd: RotateKey) -> Result<KeyRotated, ApiError> {
    let mut conn = store.home().pool.get().await.map_err(StoreError::from)?;
    let api_key = keys::generate(keys::TENANT_KEY_PREFIX);
    let (id, key) = (cmd.tenant_id.clone(), api_key.clone());
    conn.transaction(async move |conn| -> Result<(), StoreError> {
        load_tenant(conn, &id).await?;
        diesel::sql_query("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL")
            .bind::<Text, _>(id.as_str())
            .execute(conn)
            .await?;
        // Tokens signed with the old secret stop working with the old key.
        diesel::sql_query(
            "UPDATE tenants SET token_secret = replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')
             WHERE id = $1",
        )
        .bind::<Text, _>(id.as_str())
        .execute(conn)
        .await?;
        insert_key(conn, &id, &key).await
    })
    .await
    .map_err(ApiError::from)?;
    store.tenant_changed(&cmd.tenant_id).await;
    Ok(KeyRotated { tenant_id: cmd.tenant_id, api_key })
}

/// Stores the hash of a new tenant key.
pub async fn insert_key(conn: &mut AsyncPgConnection, tenant: &TenantId, key: &str) -> Result<(), StoreError> {
    diesel::sql_query(
        "INSERT INTO api_keys (key_hash, tenant_id, display_prefix) VALUES ($1, $2, $3)
         ON CONFLICT (key_hash) DO NOTHING",
    )
    .bind::<Text, _>(keys::hash(key))
    .bind::<Text, _>(tenant.as_str())
    .bind::<Text, _>(keys::display_prefix(key))
    .execute(conn)
    .await?;
    Ok(())
}

async fn load_tenant(conn: &mut AsyncPgConnection, id: &TenantId) -> Result<Tenant, StoreError> {
    let row: Option<TenantRow> = optional(
        diesel::sql_query(format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id = $1"))
            .bind::<Text, _>(id.as_str())
            .get_result(conn)
            .await,
    )?;
    row.ok_or_else(|| StoreError::Api(ApiError::not_found("Tenant not found")))?.try_into()
}
