//! The PostgreSQL clusters message-store keeps tenants on, and where each tenant is.
//!
//! - [`Clusters`]: the settings. The home cluster is `DATABASE_URL` (named `main`): it
//!   holds tenants, keys and settings (the directory) and the data of every tenant not
//!   placed elsewhere. `DATABASE_CLUSTERS=pg2,pg3` adds clusters, each with
//!   `DATABASE_URL_PG2` (and optionally `DATABASE_READ_URL_PG2`, a standby for reads);
//!   `DATABASE_READ_URL` is the home cluster's standby. `TENANT_PLACEMENT` says where
//!   new tenants go: a cluster's name, or `fewest` (the one with the fewest tenants).
//! - [`Pools`]: one cluster's connections (primary, and reads that a standby may
//!   serve), opened and migrated at start.
//! - [`Directory`]: tenant → cluster, read from the home cluster and cached for
//!   [`PLACEMENT_TTL`] (dropped at once when a `tenant.changed` event says so). With
//!   only the home cluster configured it asks nothing: every tenant is home.
//!
//! Every cluster has the whole schema; a tenant's rows are on exactly one of them,
//! and `tenant_residency` there says so (see `moves.rs` for how a tenant moves).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chat_domain::ApiError;
use chat_domain::ids::TenantId;
use chat_domain::model::{HOME_CLUSTER, validate_cluster_name};
use chat_pg::PgPool;
use chat_pg::standby::Reads;
use diesel::QueryableByName;
use diesel::sql_types::{Nullable, Text};
use diesel_async::RunQueryDsl;

use crate::error::StoreError;

/// How long a replica trusts what it read about a tenant's placement. A move waits
/// longer than this (after flagging the tenant) before it copies anything, so every
/// replica has seen the flag by then, however it missed the `tenant.changed` event.
pub const PLACEMENT_TTL: Duration = Duration::from_secs(1);

/// One more PostgreSQL cluster tenants can be placed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Lowercase letters, digits, `-`, `_` (see `validate_cluster_name`).
    pub name: String,
    /// Its primary, as a libpq URL (a host list with `target_session_attrs=read-write`
    /// follows a failover).
    pub url: String,
    /// A standby for reads (`target_session_attrs=read-only` over the same hosts
    /// finds whichever is one), or none.
    pub read_url: Option<String>,
}

/// Where new tenants go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Always this cluster.
    Cluster(String),
    /// The cluster with the fewest tenants (ties: the first configured).
    Fewest,
}

/// The PostgreSQL clusters besides the home one's primary (`Config::database_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clusters {
    /// The home cluster's standby for reads (`DATABASE_READ_URL`).
    pub read_url: Option<String>,
    /// More clusters (`DATABASE_CLUSTERS`).
    pub more: Vec<ClusterSettings>,
    /// `TENANT_PLACEMENT`.
    pub placement: Placement,
}

impl Default for Clusters {
    /// The home cluster alone, its primary serving every read.
    fn default() -> Self {
        Self { read_url: None, more: Vec::new(), placement: Placement::Cluster(HOME_CLUSTER.to_owned()) }
    }
}

/// The environment variable of a cluster's setting: `DATABASE_URL_PG2` for `pg2`.
pub fn env_name(setting: &str, cluster: &str) -> String {
    format!("{setting}_{}", cluster.to_ascii_uppercase().replace('-', "_"))
}

impl Clusters {
    /// Reads `DATABASE_READ_URL`, `DATABASE_CLUSTERS` (with each cluster's
    /// `DATABASE_URL_<NAME>` and `DATABASE_READ_URL_<NAME>`) and `TENANT_PLACEMENT`.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// As [`Clusters::from_env`], with the variables from `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut names: Vec<&str> = Vec::new();
        let list = get("DATABASE_CLUSTERS").unwrap_or_default();
        if !list.trim().is_empty() {
            for name in list.split(',').map(str::trim) {
                if name.is_empty() {
                    bail!("DATABASE_CLUSTERS={list:?}: an empty name (separate names with single commas)");
                }
                validate_cluster_name("DATABASE_CLUSTERS", name).map_err(|e| anyhow::anyhow!("{}", e.message))?;
                if name == HOME_CLUSTER {
                    bail!("DATABASE_CLUSTERS: {HOME_CLUSTER:?} is the home cluster (DATABASE_URL); name the others");
                }
                if names.contains(&name) {
                    bail!("DATABASE_CLUSTERS names {name:?} twice");
                }
                names.push(name);
            }
        }
        let mut more: Vec<ClusterSettings> = Vec::new();
        for name in names {
            let url_var = env_name("DATABASE_URL", name);
            let url =
                get(&url_var).with_context(|| format!("DATABASE_CLUSTERS names {name:?}, but {url_var} is not set"))?;
            chat_pg::check_url(&url).with_context(|| url_var.clone())?;
            let read_var = env_name("DATABASE_READ_URL", name);
            let read_url = get(&read_var);
            if let Some(r) = &read_url {
                chat_pg::check_url(r).with_context(|| read_var.clone())?;
            }
            more.push(ClusterSettings { name: name.to_owned(), url, read_url });
        }
        let read_url = get("DATABASE_READ_URL");
        if let Some(r) = &read_url {
            chat_pg::check_url(r).context("DATABASE_READ_URL")?;
        }
        let placement = match get("TENANT_PLACEMENT").as_deref().map(str::trim) {
            None => Placement::Cluster(HOME_CLUSTER.to_owned()),
            Some("fewest") => Placement::Fewest,
            Some(name) if name == HOME_CLUSTER || more.iter().any(|c| c.name == name) => {
                Placement::Cluster(name.to_owned())
            }
            Some(other) => bail!(
                "TENANT_PLACEMENT={other:?}: not `fewest` nor a cluster ({})",
                std::iter::once(HOME_CLUSTER)
                    .chain(more.iter().map(|c| c.name.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Ok(Self { read_url, more, placement })
    }
}

/// One cluster's connections.
#[derive(Clone, Debug)]
pub struct Pools {
    pub name: String,
    /// The primary's URL (the outbox publisher keeps a connection of its own).
    pub url: String,
    /// The primary.
    pub pool: PgPool,
    /// Reads that a standby may serve.
    pub reads: Reads,
}

impl Pools {
    /// Migrates the cluster and opens its pools (the standby's lazily).
    pub async fn open(
        name: &str,
        url: &str,
        read_url: Option<&str>,
        size: u32,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        chat_pg::migrate(url, &crate::MIGRATIONS).await.with_context(|| format!("migrating cluster {name}"))?;
        let pool = chat_pg::pool(url, size, timeout).await.with_context(|| format!("cluster {name}"))?;
        let reads = match read_url {
            Some(r) => Reads::with_standby(pool.clone(), r, size, timeout.min(Duration::from_secs(1))),
            None => Reads::primary_only(pool.clone()),
        };
        Ok(Self { name: name.to_owned(), url: url.to_owned(), pool, reads })
    }
}

/// Where a tenant lives, as the directory says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub cluster: String,
    /// The cluster it is being moved to, while a move runs.
    pub moving_to: Option<String>,
}

/// Tenant → cluster, cached (see the module documentation).
pub struct Directory {
    home: PgPool,
    /// Only the home cluster is configured: nothing to look up.
    single: bool,
    cache: Mutex<HashMap<TenantId, (Placed, Instant)>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("single", &self.single).finish()
    }
}

impl Directory {
    pub fn new(home: PgPool, single: bool) -> Self {
        Self { home, single, cache: Mutex::new(HashMap::new()) }
    }

    /// Where `tenant` lives. A tenant the directory does not know is home (its
    /// commands then find nothing there, as before clusters existed).
    pub async fn placement(&self, tenant: &TenantId) -> Result<Placed, ApiError> {
        if self.single {
            return Ok(Placed { cluster: HOME_CLUSTER.to_owned(), moving_to: None });
        }
        if let Ok(cache) = self.cache.lock()
            && let Some((placed, at)) = cache.get(tenant)
            && at.elapsed() < PLACEMENT_TTL
        {
            return Ok(placed.clone());
        }
        let placed = self.read(tenant).await?;
        if let Ok(mut cache) = self.cache.lock() {
            // Tenants seen once stay cheap; the table is bounded by sweeping stale entries.
            if cache.len() >= 100_000 {
                cache.retain(|_, (_, at)| at.elapsed() < PLACEMENT_TTL);
            }
            cache.insert(tenant.clone(), (placed.clone(), Instant::now()));
        }
        Ok(placed)
    }

    /// Reads the placement from the home cluster, bypassing the cache.
    pub async fn read(&self, tenant: &TenantId) -> Result<Placed, ApiError> {
        Ok(self.lookup(tenant).await?.unwrap_or_else(|| Placed { cluster: HOME_CLUSTER.to_owned(), moving_to: None }))
    }

    /// The tenant's row in the directory, if the tenant exists.
    pub async fn lookup(&self, tenant: &TenantId) -> Result<Option<Placed>, ApiError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            cluster: String,
            #[diesel(sql_type = Nullable<Text>)]
            moving_to: Option<String>,
        }
        let mut conn = self.home.get().await.map_err(StoreError::from)?;
        let row: Option<Row> = crate::error::optional(
            chat_pg::prepared(
                diesel::sql_query("SELECT cluster, moving_to FROM tenants WHERE id = $1")
                    .bind::<Text, _>(tenant.as_str()),
            )
            .get_result(&mut conn)
            .await,
        )
        .map_err(StoreError::from)?;
        Ok(row.map(|r| Placed { cluster: r.cluster, moving_to: r.moving_to }))
    }

    /// Forgets what was cached about `tenant` (its placement changed).
    pub fn forget(&self, tenant: &TenantId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn no_settings_is_the_home_cluster_alone() -> anyhow::Result<()> {
        assert_eq!(Clusters::from_lookup(lookup(&[]))?, Clusters::default());
        Ok(())
    }

    #[test]
    fn clusters_are_named_with_their_urls() -> anyhow::Result<()> {
        let c = Clusters::from_lookup(lookup(&[
            ("DATABASE_READ_URL", "postgres://h1,h2/chat?target_session_attrs=read-only"),
            ("DATABASE_CLUSTERS", "pg2, eu-west"),
            ("DATABASE_URL_PG2", "postgres://p2/chat"),
            ("DATABASE_URL_EU_WEST", "postgres://e1,e2/chat?target_session_attrs=read-write"),
            ("DATABASE_READ_URL_EU_WEST", "postgres://e1,e2/chat?target_session_attrs=read-only"),
            ("TENANT_PLACEMENT", "fewest"),
        ]))?;
        assert_eq!(c.more.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["pg2", "eu-west"]);
        assert_eq!(c.more[0].read_url, None);
        assert!(c.more[1].read_url.is_some());
        assert!(c.read_url.is_some());
        assert_eq!(c.placement, Placement::Fewest);
        Ok(())
    }

    #[test]
    fn bad_settings_say_which() {
        for (vars, says) in [
            (vec![("DATABASE_CLUSTERS", "pg2")], "DATABASE_URL_PG2 is not set"),
            (vec![("DATABASE_CLUSTERS", "pg2,,pg3")], "empty name"),
            (vec![("DATABASE_CLUSTERS", "Pg2")], "not a cluster name"),
            (vec![("DATABASE_CLUSTERS", "main")], "home cluster"),
            (vec![("DATABASE_CLUSTERS", "a,a"), ("DATABASE_URL_A", "postgres://h/c")], "twice"),
            (vec![("DATABASE_CLUSTERS", "pg2"), ("DATABASE_URL_PG2", "mysql://h/c")], "DATABASE_URL_PG2"),
            (vec![("DATABASE_READ_URL", "postgres://h/c?target_session_attrs=primary")], "DATABASE_READ_URL"),
            (vec![("TENANT_PLACEMENT", "pg9")], "not `fewest` nor a cluster (main)"),
        ] {
            match Clusters::from_lookup(lookup(&vars)) {
                Ok(c) => panic!("{vars:?} was accepted as {c:?}"),
                Err(e) => assert!(format!("{e:#}").contains(says), "{vars:?}: {e:#}"),
            }
        }
    }
}
