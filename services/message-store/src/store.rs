//! [`Store`]: what every command handler (and a tenant move) works with — the
//! PostgreSQL clusters ([`Db`]: the primary, standby reads, the outbox publisher and
//! the send committer of each), where each tenant lives, the bus, the clock — and
//! [`reside`], the residency row that fences a tenant's rows to one cluster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chat_bus::Subjects;
use chat_domain::ApiError;
use chat_domain::ids::TenantId;
use chat_domain::proto::events::TenantChanged;
use chat_pg::PgPool;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::clusters::{Directory, Placement};
use crate::error::StoreError;
use crate::outbox::Publisher;

/// What every handler needs. Cheap to clone.
#[derive(Clone)]
pub struct Store(pub Arc<Inner>);

pub struct Inner {
    /// The home cluster: the directory (tenants, keys, settings) and the data of every
    /// tenant not placed elsewhere.
    pub home: Arc<Db>,
    /// Every cluster by name, the home one included.
    pub dbs: BTreeMap<String, Arc<Db>>,
    /// Where each tenant lives.
    pub directory: Directory,
    /// Where new tenants go.
    pub placement: Placement,
    pub bus: chat_bus::Bus,
    pub instance: String,
    pub started: Instant,
    /// The time for the edit window.
    pub clock: crate::Clock,
    /// How much one search may read.
    pub search: crate::handlers::SearchLimits,
}

/// One PostgreSQL cluster as the handlers use it.
pub struct Db {
    pub name: String,
    /// The primary.
    pub pool: PgPool,
    /// Reads that a standby may serve (history pages, room and chat lists).
    pub reads: chat_pg::standby::Reads,
    /// Publishes this cluster's outbox events (edits, deletes, cursors, members) after commit.
    pub publisher: Publisher,
    /// Batches sends to this cluster into shared transactions.
    pub committer: crate::group_commit::Committer,
}

impl Store {
    pub fn subjects(&self) -> &Subjects {
        self.0.bus.subjects()
    }

    /// The home cluster (tenants, keys, settings).
    pub fn home(&self) -> &Db {
        &self.0.home
    }

    /// The cluster that holds `tenant`'s rooms and messages. While the tenant is being
    /// moved its commands are refused with `SERVICE_UNAVAILABLE`, which callers retry.
    pub async fn db(&self, tenant: &TenantId) -> Result<Arc<Db>, ApiError> {
        if self.0.dbs.len() == 1 {
            return Ok(self.0.home.clone());
        }
        let placed = self.0.directory.placement(tenant).await?;
        if let Some(to) = placed.moving_to {
            return Err(ApiError::unavailable(format!(
                "tenant {tenant} is being moved to database cluster {to}; retry shortly"
            )));
        }
        self.0.dbs.get(&placed.cluster).cloned().ok_or_else(|| {
            tracing::error!(%tenant, cluster = %placed.cluster, "tenant placed on a cluster this message-store does not know");
            ApiError::unavailable(format!("database cluster {} is not configured on this message-store", placed.cluster))
        })
    }

    /// Tells gateways to forget what they cached about a tenant (and every
    /// message-store replica where it lives).
    pub async fn tenant_changed(&self, tenant_id: &TenantId) {
        self.0.directory.forget(tenant_id);
        let payload = serde_json::to_vec(&TenantChanged { tenant_id: tenant_id.clone() }).unwrap_or_default();
        if let Err(e) = self.0.bus.publish(self.subjects().tenant_changed(), payload.into()).await {
            tracing::warn!(error = %e, "could not announce a tenant change; caches expire on their own");
        }
    }
}

/// Records that `tenant`'s rows are on this cluster (see migration 0012).
pub async fn reside(conn: &mut AsyncPgConnection, tenant: &TenantId) -> Result<(), StoreError> {
    diesel::sql_query("INSERT INTO tenant_residency (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind::<Text, _>(tenant.as_str())
        .execute(conn)
        .await?;
    Ok(())
}
