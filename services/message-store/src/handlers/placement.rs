//! The operator's view of the PostgreSQL clusters: `list_clusters`, `create_tenant_on`
//! (a tenant on a named cluster) and `move_tenant` (see `moves.rs`).

use chat_domain::ApiError;
use chat_domain::model::validate_cluster_name;
use chat_domain::proto::store::{ClusterInfo, CreateTenantOn, ListClusters, MoveTenant, TenantCreated, TenantMoved};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

use super::Store;
use crate::clusters::Placement;
use crate::error::StoreError;

/// Tenants per cluster, from the directory.
async fn tenant_counts(store: &Store) -> Result<Vec<(String, u64)>, StoreError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        cluster: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = store.home().pool.get().await?;
    let rows: Vec<Row> =
        diesel::sql_query("SELECT cluster, count(*) AS n FROM tenants GROUP BY cluster").load(&mut conn).await?;
    Ok(rows.into_iter().map(|r| (r.cluster, u64::try_from(r.n).unwrap_or(0))).collect())
}

impl Store {
    /// Where a tenant created without a named cluster goes (`TENANT_PLACEMENT`).
    pub async fn placement_for_new_tenant(&self) -> Result<String, ApiError> {
        match &self.0.placement {
            Placement::Cluster(name) => Ok(name.clone()),
            Placement::Fewest => {
                let counts = tenant_counts(self).await?;
                let count = |name: &str| counts.iter().find(|(c, _)| c == name).map_or(0, |(_, n)| *n);
                // The home cluster first, then the others in configuration order.
                let order = std::iter::once(self.0.home.name.clone())
                    .chain(self.0.dbs.keys().filter(|k| **k != self.0.home.name).cloned());
                Ok(order.min_by_key(|name| count(name)).unwrap_or_else(|| self.0.home.name.clone()))
            }
        }
    }
}

pub async fn list_clusters(store: Store, _: ListClusters) -> Result<Vec<ClusterInfo>, ApiError> {
    let counts = tenant_counts(&store).await?;
    let default = match &store.0.placement {
        Placement::Cluster(name) => Some(name.clone()),
        Placement::Fewest => None,
    };
    let mut out: Vec<ClusterInfo> = store
        .0
        .dbs
        .values()
        .map(|db| ClusterInfo {
            name: db.name.clone(),
            home: db.name == store.0.home.name,
            tenants: counts.iter().find(|(c, _)| *c == db.name).map_or(0, |(_, n)| *n),
            standby_reads: db.reads.has_standby(),
            default_for_new_tenants: default.as_deref().is_none_or(|d| d == db.name),
        })
        .collect();
    // The home cluster first.
    out.sort_by_key(|c| (!c.home, c.name.clone()));
    Ok(out)
}

pub async fn create_tenant_on(store: Store, cmd: CreateTenantOn) -> Result<TenantCreated, ApiError> {
    validate_cluster_name("cluster", &cmd.cluster)?;
    super::tenants::create_on(store, cmd.tenant, &cmd.cluster).await
}

pub async fn move_tenant(store: Store, cmd: MoveTenant) -> Result<TenantMoved, ApiError> {
    validate_cluster_name("to", &cmd.to)?;
    crate::moves::move_tenant(&store, &cmd.tenant_id, &cmd.to).await
}
