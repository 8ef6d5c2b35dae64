//! `health`: proves the database takes writes, for the gateway's `GET /health`.

use std::collections::BTreeMap;
use std::time::Duration;

use chat_domain::ApiError;
use chat_domain::proto::health::{Health, ServiceHealth};
use diesel_async::RunQueryDsl;

use super::Store;

pub async fn health(store: Store, _: Health) -> Result<ServiceHealth, ApiError> {
    let write = async {
        let mut conn = store.0.pool.get().await.ok()?;
        diesel::sql_query(
            "INSERT INTO health_probe (id, touched_at) VALUES (1, now())
             ON CONFLICT (id) DO UPDATE SET touched_at = excluded.touched_at",
        )
        .execute(&mut conn)
        .await
        .ok()
    };
    let db_writable = matches!(tokio::time::timeout(Duration::from_secs(2), write).await, Ok(Some(_)));
    let checks = BTreeMap::from([("db_writable".to_owned(), db_writable)]);
    Ok(ServiceHealth::new("message-store", &store.0.instance, store.0.started.elapsed().as_secs(), checks))
}
