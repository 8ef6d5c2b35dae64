//! First-start set-up: the operator (admin) key and the development tenant.
//!
//! Keys given by environment (`CHAT_ADMIN_API_KEY`, `CHAT_DEV_API_KEY`) are registered
//! (their hashes); when none is given and none exists yet, one is generated and printed
//! once, since only its hash is kept.

use chat_domain::ids::TenantId;
use chat_domain::keys;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::error::StoreError;
use crate::handlers;

/// The id of the development tenant.
pub const DEV_TENANT_ID: &str = "dev";

/// Serializes bootstrap across replicas starting at once.
const BOOTSTRAP_LOCK: i64 = 0x6368_6174_0002;

/// What bootstrap needs to know.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    pub admin_api_key: Option<String>,
    pub dev_tenant: bool,
    pub dev_api_key: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Registers or generates the keys; prints the ones it generated.
pub async fn run(url: &str, cfg: &Bootstrap) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut conn = AsyncPgConnection::establish(url).await.context("bootstrap connection")?;
    conn.batch_execute(&format!("SELECT pg_advisory_lock({BOOTSTRAP_LOCK})")).await?;
    let result = apply(&mut conn, cfg).await.map_err(|e| anyhow::anyhow!("bootstrap: {e}"));
    let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({BOOTSTRAP_LOCK})")).await;
    result
}

async fn apply(conn: &mut AsyncPgConnection, cfg: &Bootstrap) -> Result<(), StoreError> {
    match &cfg.admin_api_key {
        Some(key) => {
            diesel::sql_query("INSERT INTO admin_keys (key_hash) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind::<Text, _>(keys::hash(key))
                .execute(conn)
                .await?;
        }
        None => {
            let c: Count = diesel::sql_query("SELECT count(*) AS n FROM admin_keys").get_result(conn).await?;
            if c.n == 0 {
                let key = keys::generate(keys::ADMIN_KEY_PREFIX);
                diesel::sql_query("INSERT INTO admin_keys (key_hash) VALUES ($1)")
                    .bind::<Text, _>(keys::hash(&key))
                    .execute(conn)
                    .await?;
                println!("Generated admin API key (shown once; set CHAT_ADMIN_API_KEY to choose your own): {key}");
            }
        }
    }
    if !cfg.dev_tenant {
        return Ok(());
    }
    let tenant = TenantId::parse(DEV_TENANT_ID).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    diesel::sql_query("INSERT INTO tenants (id, name) VALUES ($1, 'Development') ON CONFLICT DO NOTHING")
        .bind::<Text, _>(tenant.as_str())
        .execute(conn)
        .await?;
    // Its data lives on the home cluster (where bootstrap runs), unless it was moved.
    diesel::sql_query(
        "INSERT INTO tenant_residency (tenant_id) SELECT $1 WHERE (SELECT cluster FROM tenants WHERE id = $1) = 'main'
         ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(tenant.as_str())
    .execute(conn)
    .await?;
    match &cfg.dev_api_key {
        Some(key) => handlers::insert_key(conn, &tenant, key).await?,
        None => {
            let c: Count =
                diesel::sql_query("SELECT count(*) AS n FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL")
                    .bind::<Text, _>(tenant.as_str())
                    .get_result(conn)
                    .await?;
            if c.n == 0 {
                let key = keys::generate(keys::TENANT_KEY_PREFIX);
                handlers::insert_key(conn, &tenant, &key).await?;
                println!(
                    "Generated API key for tenant '{DEV_TENANT_ID}' (shown once; set CHAT_DEV_API_KEY to choose your own): {key}"
                );
            }
        }
    }
    Ok(())
}
