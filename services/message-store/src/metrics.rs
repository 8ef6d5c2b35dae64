//! message-store's Prometheus metrics (default registry, served on `OPS_ADDR`), next
//! to the bus's per-command ones (`chat_bus_command_seconds`, `chat_bus_commands_total`).
//!
//! - `chat_store_messages_stored_total{tenant}`: messages stored (not resends).
//! - `chat_store_outbox_oldest_seconds`: age of the oldest outbox event not yet
//!   confirmed on the bus (0 when none waits), and
//!   `chat_store_publisher_takeover_seconds`: how long the oldest expired publisher
//!   lease has waited for a relay to republish its messages (0 when none): the two
//!   ways events can lag behind their commit. Read by [`watch_lag`] every relay
//!   interval, with one query.
//! - `chat_store_republished_total{source}`: events the relays published again
//!   (`outbox`, or `log` after a publisher's lease ran out).

use std::sync::LazyLock;
use std::time::Duration;

use chat_pg::PgPool;
use diesel::QueryableByName;
use diesel::sql_types::{Double, Text};
use diesel_async::RunQueryDsl;
use prometheus::{Gauge, IntCounterVec};

fn register<M: prometheus::core::Collector + Clone + 'static>(m: Result<M, prometheus::Error>) -> M {
    match m {
        Ok(m) => {
            // A second instance in the same process (tests) reuses the first registration.
            let _ = prometheus::register(Box::new(m.clone()));
            m
        }
        Err(e) => panic!("metric definition is invalid: {e}"),
    }
}

pub static MESSAGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(IntCounterVec::new(
        prometheus::Opts::new(
            "chat_store_messages_stored_total",
            "Messages stored, by tenant (idempotent resends are not counted)",
        ),
        &["tenant"],
    ))
});

pub static OUTBOX_OLDEST: LazyLock<Gauge> = LazyLock::new(|| {
    register(Gauge::new(
        "chat_store_outbox_oldest_seconds",
        "Age of the oldest outbox event (edits, deletes, cursors, members) not yet confirmed on the bus; 0 when none waits",
    ))
});

pub static TAKEOVER_WAIT: LazyLock<Gauge> = LazyLock::new(|| {
    register(Gauge::new(
        "chat_store_publisher_takeover_seconds",
        "How long the oldest expired message publisher lease has waited for a relay to republish its messages; 0 when none",
    ))
});

pub static REPUBLISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(IntCounterVec::new(
        prometheus::Opts::new(
            "chat_store_republished_total",
            "Events published again by a relay, by source (outbox: unconfirmed outbox rows; log: messages of a publisher whose lease ran out)",
        ),
        &["source"],
    ))
});

/// Registers every metric, so each is exported (at zero) from the start.
pub fn init() {
    LazyLock::force(&MESSAGES);
    LazyLock::force(&OUTBOX_OLDEST);
    LazyLock::force(&TAKEOVER_WAIT);
    for source in ["outbox", "log"] {
        let _ = REPUBLISHED.with_label_values(&[source]);
    }
}

/// Every `every` until `shutdown`: measures the outbox's and the publishers' lag for
/// this bus prefix on every cluster (one query on two indexed lookups each) and
/// exports the worst.
pub async fn watch_lag(
    pools: Vec<PgPool>,
    prefix: String,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    #[derive(QueryableByName)]
    struct Lag {
        #[diesel(sql_type = Double)]
        outbox: f64,
        #[diesel(sql_type = Double)]
        takeover: f64,
    }
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let lag = async {
            let mut worst = Lag { outbox: 0.0, takeover: 0.0 };
            for pool in &pools {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                let lag: Lag = chat_pg::prepared(
                    diesel::sql_query(
                        "SELECT COALESCE((SELECT EXTRACT(EPOCH FROM now() - created_at)::float8 FROM outbox
                                          WHERE bus_prefix = $1 ORDER BY id LIMIT 1), 0) AS outbox,
                                COALESCE((SELECT EXTRACT(EPOCH FROM now() - min(lease_until))::float8 FROM publishers
                                          WHERE bus_prefix = $1 AND lease_until < now()), 0) AS takeover",
                    )
                    .bind::<Text, _>(&prefix),
                )
                .get_result::<Lag>(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
                worst.outbox = worst.outbox.max(lag.outbox);
                worst.takeover = worst.takeover.max(lag.takeover);
            }
            Ok::<_, String>(worst)
        }
        .await;
        match lag {
            Ok(lag) => {
                OUTBOX_OLDEST.set(lag.outbox.max(0.0));
                TAKEOVER_WAIT.set(lag.takeover.max(0.0));
            }
            Err(e) => tracing::warn!(error = %e, "could not measure the outbox and publisher lag"),
        }
    }
}
