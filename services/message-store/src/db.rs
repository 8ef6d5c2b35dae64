//! The PostgreSQL pool and the embedded migrations.

use std::time::Duration;

use anyhow::Context as _;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// The connection pool every handler borrows from.
pub type PgPool = Pool<AsyncPgConnection>;

/// Embedded migrations, applied in order; each runs once (tracked in `schema_migrations`).
const MIGRATIONS: &[(&str, &str)] = &[("0001_init", include_str!("../migrations/0001_init.sql"))];

/// An arbitrary, fixed advisory-lock key: replicas starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x6368_6174_0001;

/// Builds the pool. `timeout` bounds both connecting and waiting for a free connection.
pub async fn pool(url: &str, size: u32, timeout: Duration) -> anyhow::Result<PgPool> {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
    Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(timeout)
        .build(manager)
        .await
        .context("building the PostgreSQL pool")
}

/// Applies pending migrations. Safe to run any number of times, from any number of
/// replicas at once (they serialize on an advisory lock).
pub async fn migrate(url: &str) -> anyhow::Result<Vec<&'static str>> {
    let mut conn = AsyncPgConnection::establish(url).await.with_context(|| format!("connecting to {}", redact(url)))?;
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).await.context("taking the migration lock")?;
    let result = apply(&mut conn).await;
    let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).await;
    result
}

async fn apply(conn: &mut AsyncPgConnection) -> anyhow::Result<Vec<&'static str>> {
    use diesel::QueryableByName;
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;

    #[derive(QueryableByName)]
    struct Applied {
        #[diesel(sql_type = Text)]
        version: String,
    }

    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version TEXT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .context("creating schema_migrations")?;
    let done: Vec<Applied> = diesel::sql_query("SELECT version FROM schema_migrations")
        .load(conn)
        .await
        .context("reading schema_migrations")?;
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        if done.iter().any(|a| a.version == *version) {
            continue;
        }
        let script = format!(
            "BEGIN;\n{sql}\nINSERT INTO schema_migrations (version) VALUES ('{version}');\nCOMMIT;"
        );
        conn.batch_execute(&script).await.with_context(|| format!("applying migration {version}"))?;
        tracing::info!(version, "applied migration");
        applied.push(*version);
    }
    Ok(applied)
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact("postgres://h/db"), "postgres://h/db");
    }
}
