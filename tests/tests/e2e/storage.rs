//! Storage set-up: embedded migrations apply on start and are safe to run again,
//! also from replicas starting at the same moment.

use chat_test_support::{database_url, ensure_database};

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_idempotent_and_concurrent_safe() -> anyhow::Result<()> {
    let url = database_url();
    ensure_database(&url).await?;
    for migrations in [message_store::MIGRATIONS, notification::MIGRATIONS] {
        // Several "replicas" at once: they serialize on the advisory lock.
        let runs = (0..4).map(|_| chat_pg::migrate(&url, &migrations));
        for r in futures_util::future::join_all(runs).await {
            r?;
        }
        let again = chat_pg::migrate(&url, &migrations).await?;
        assert!(again.is_empty(), "a second run applies nothing, got {again:?}");
    }
    Ok(())
}
