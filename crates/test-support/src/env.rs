//! The machine's services as tests reach them (from the environment, with the
//! machine's defaults), the test database, unique names, and tracing.

use anyhow::{Context as _, anyhow};

/// Installs the test subscriber (spans get trace ids). Idempotent.
pub fn init_tracing() {
    chat_telemetry::init_for_tests();
}

/// Settings for tests, from the environment with the machine's defaults.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/chat_test".to_owned())
}

/// Where a [`crate::TestStack`]'s services find their engines: the machine's own
/// ([`Endpoints::local`], what [`crate::TestStack::start`] uses), or ones a test
/// started itself (see [`crate::cluster`]) for [`crate::StackBuilder::on`].
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `NATS_URL` of every service: one server or a cluster's list.
    pub nats: String,
    /// message-store's home cluster and notification's database (`DATABASE_URL`).
    pub database: String,
    /// message-store's standby for reads and further PostgreSQL clusters.
    pub clusters: message_store::Clusters,
    /// presence's `REDIS_URL` (a `redis+sentinel://` URL follows a failover).
    pub redis: String,
    /// The gateways' `REDIS_URL` (their rate limiter's).
    pub gateway_redis: String,
    /// Copies JetStream keeps of the notification streams.
    pub stream_replicas: usize,
    /// Redis replicas presence waits for before acknowledging a socket change.
    pub presence_redis_replicas: u32,
}

impl Endpoints {
    /// The machine's own engines, from the environment ([`nats_url`], [`database_url`],
    /// [`redis_url`]).
    pub fn local() -> Self {
        Self {
            nats: nats_url(),
            database: database_url(),
            clusters: message_store::Clusters::default(),
            redis: redis_url(),
            gateway_redis: redis_url(),
            stream_replicas: 1,
            presence_redis_replicas: 0,
        }
    }
}

/// A unique token for names and ids in one test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Creates the test database when it is missing (several test processes may race).
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    if AsyncPgConnection::establish(url).await.is_ok() {
        return Ok(());
    }
    let (base, name) = url.rsplit_once('/').ok_or_else(|| anyhow!("database URL without a name: {url}"))?;
    let name = name.split('?').next().unwrap_or(name);
    let mut admin = AsyncPgConnection::establish(&format!("{base}/postgres"))
        .await
        .context("connecting to the postgres database")?;
    if let Err(e) = admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await {
        // Another test process made it first: PostgreSQL says "already exists", or,
        // when both inserted at once, reports the unique index of database names.
        let raced = e.to_string().contains("already exists") || AsyncPgConnection::establish(url).await.is_ok();
        if !raced {
            return Err(e).context("creating the test database");
        }
    }
    Ok(())
}
