//! `health`: proves every database cluster takes writes, for the gateway's `GET /health`.

use std::collections::BTreeMap;
use std::time::Duration;

use chat_domain::ApiError;
use chat_domain::proto::health::{Health, ServiceHealth};
use diesel_async::RunQueryDsl;

use super::{Db, Store};

/// Whether the cluster's primary takes a write within 2 s.
async fn writable(db: &Db) -> bool {
    let write = async {
        let mut conn = db.pool.get().await.ok()?;
        diesel::sql_query(
            "INSERT INTO health_probe (id, touched_at) VALUES (1, now())
             ON CONFLICT (id) DO UPDATE SET touched_at = excluded.touched_at",
        )
        .execute(&mut conn)
        .await
        .ok()
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), write).await, Ok(Some(_)))
}

/// `db_writable` is every cluster together; with more than one cluster each also has
/// its own check, `db_writable_<cluster>`.
pub async fn health(store: Store, _: Health) -> Result<ServiceHealth, ApiError> {
    let results = futures_util::future::join_all(
        store.0.dbs.values().map(|db| async move { (db.name.clone(), writable(db).await) }),
    )
    .await;
    let mut checks = BTreeMap::from([("db_writable".to_owned(), results.iter().all(|(_, ok)| *ok))]);
    if results.len() > 1 {
        checks.extend(results.into_iter().map(|(name, ok)| (format!("db_writable_{name}"), ok)));
    }
    Ok(ServiceHealth::new("message-store", &store.0.instance, store.0.started.elapsed().as_secs(), checks))
}
