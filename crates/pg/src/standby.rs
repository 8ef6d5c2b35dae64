//! Reads that a streaming standby serves, without ever showing a caller less than it
//! has already seen.
//!
//! A caller can only have seen what was committed before its request arrived. So a
//! read may go to the standby when the standby has replayed the primary's WAL up to
//! where the primary's WAL stood at some moment after the request arrived; otherwise
//! it goes to the primary. [`Reads::get`] checks exactly that:
//!
//! 1. The *fence*: the primary's current WAL position (`pg_current_wal_lsn()`), read
//!    by a probe that started after the request arrived. Concurrent reads share
//!    probes (each waits for the next probe to start, one runs at a time), so under
//!    load the primary answers one tiny query per round trip, not one per read.
//! 2. On a standby connection, `pg_last_wal_replay_lsn()`: if it is at or past the
//!    fence, the read's next statement runs on the standby, whose snapshot is then
//!    taken after everything up to the fence was replayed. Otherwise (the standby is
//!    behind, was promoted, or cannot be reached) the read runs on the primary.
//!
//! With `synchronous_commit = remote_apply` and this standby in
//! `synchronous_standby_names`, every acknowledged commit is already replayed there and
//! the fallback is rare; with `on` (flush) or asynchronous replication it happens
//! whenever a read follows a write by less than the replay lag. Every outcome is
//! counted in `chat_pg_standby_reads_total{outcome}`.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Nullable, Text};
use diesel_async::pooled_connection::bb8::{PooledConnection, RunError};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::{Notify, watch};

use crate::PgPool;

/// Longest wait for the fence; past it the read goes to the primary.
const FENCE_WAIT: Duration = Duration::from_secs(1);
/// After the standby failed (no connection, an error), reads skip it for this long,
/// so a standby that is down costs one timeout now and then, not one per read.
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(2);

static READS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    let c = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "chat_pg_standby_reads_total",
            "Reads that could go to a standby, by where they went: standby, or the primary because the standby \
             was behind what the caller may have seen (behind), is not in recovery (not_standby), failed or is \
             skipped after failing (unavailable), or the primary's position could not be read (no_fence)",
        ),
        &["outcome"],
    );
    match c {
        Ok(c) => {
            let _ = prometheus::register(Box::new(c.clone()));
            c
        }
        Err(e) => panic!("metric definition is invalid: {e}"),
    }
});

/// A WAL position (`pg_lsn`), as a number.
pub type Lsn = u64;

/// Parses `pg_lsn` text (`16/B374D848`).
pub fn parse_lsn(text: &str) -> Option<Lsn> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Where reads that a standby may serve go: the primary's pool, and a standby's when
/// one is configured.
#[derive(Clone)]
pub struct Reads {
    primary: PgPool,
    standby: Option<Arc<Standby>>,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads").field("standby", &self.standby.is_some()).finish()
    }
}

struct Standby {
    pool: PgPool,
    fence: Fence,
    skip_until: Mutex<Option<Instant>>,
}

impl Standby {
    fn skipped(&self) -> bool {
        self.skip_until.lock().map(|s| s.is_some_and(|t| Instant::now() < t)).unwrap_or(false)
    }

    fn skip(&self) {
        if let Ok(mut s) = self.skip_until.lock() {
            *s = Some(Instant::now() + SKIP_AFTER_FAILURE);
        }
    }
}

/// A connection for a read: on the standby when it has replayed what the caller may
/// have seen, else on the primary. Used like the pool's connections.
pub enum ReadConn<'a> {
    Primary(PooledConnection<'a, AsyncPgConnection>),
    Standby(PooledConnection<'a, AsyncPgConnection>),
}

impl ReadConn<'_> {
    /// Whether the read runs on the standby.
    pub fn on_standby(&self) -> bool {
        matches!(self, Self::Standby(_))
    }
}

impl Deref for ReadConn<'_> {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        match self {
            Self::Primary(c) | Self::Standby(c) => c,
        }
    }
}

impl DerefMut for ReadConn<'_> {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        match self {
            Self::Primary(c) | Self::Standby(c) => c,
        }
    }
}

impl Reads {
    /// Every read on the primary.
    pub fn primary_only(primary: PgPool) -> Self {
        Self { primary, standby: None }
    }

    /// Reads on the standby at `standby_url` when it is far enough along (a host list
    /// with `target_session_attrs=read-only` finds whichever node is a standby now).
    /// The standby need not be up yet: until it is, reads go to the primary.
    pub fn with_standby(primary: PgPool, standby_url: &str, size: u32, timeout: Duration) -> Self {
        let pool = crate::pool_unchecked(standby_url, size, timeout);
        let fence = Fence::start(primary.clone());
        Self { primary, standby: Some(Arc::new(Standby { pool, fence, skip_until: Mutex::new(None) })) }
    }

    /// The primary's pool (for reads that must see the latest, and for writes).
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// Whether a standby is configured.
    pub fn has_standby(&self) -> bool {
        self.standby.is_some()
    }

    /// A connection for a read that a standby may serve (see the module documentation).
    pub async fn get(&self) -> Result<ReadConn<'_>, RunError> {
        let Some(standby) = &self.standby else {
            return Ok(ReadConn::Primary(self.primary.get().await?));
        };
        let outcome = match self.try_standby(standby).await {
            Ok(conn) => {
                READS.with_label_values(&["standby"]).inc();
                return Ok(ReadConn::Standby(conn));
            }
            Err(outcome) => outcome,
        };
        READS.with_label_values(&[outcome]).inc();
        Ok(ReadConn::Primary(self.primary.get().await?))
    }

    async fn try_standby<'a>(
        &'a self,
        standby: &'a Standby,
    ) -> Result<PooledConnection<'a, AsyncPgConnection>, &'static str> {
        if standby.skipped() {
            return Err("unavailable");
        }
        let fence = match tokio::time::timeout(FENCE_WAIT, standby.fence.after_now()).await {
            Ok(Some(lsn)) => lsn,
            _ => return Err("no_fence"),
        };
        let mut conn = match standby.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "standby unavailable; reading from the primary");
                standby.skip();
                return Err("unavailable");
            }
        };
        match replayed(&mut conn).await {
            Ok(Some(lsn)) if lsn >= fence => Ok(conn),
            Ok(Some(_)) => Err("behind"),
            Ok(None) => Err("not_standby"),
            Err(e) => {
                tracing::debug!(error = %e, "standby query failed; reading from the primary");
                standby.skip();
                Err("unavailable")
            }
        }
    }
}

/// How far the standby has replayed; `None` when it is not in recovery (promoted).
async fn replayed(conn: &mut AsyncPgConnection) -> Result<Option<Lsn>, diesel::result::Error> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Bool)]
        recovering: bool,
        #[diesel(sql_type = Nullable<Text>)]
        lsn: Option<String>,
    }
    let row: Row = crate::prepared(diesel::sql_query(
        "SELECT pg_is_in_recovery() AS recovering, pg_last_wal_replay_lsn()::text AS lsn",
    ))
    .get_result(conn)
    .await?;
    Ok(if row.recovering { row.lsn.as_deref().and_then(parse_lsn) } else { None })
}

/// The primary's WAL position, read by probes that concurrent reads share.
struct Fence {
    /// Probes started so far (the number of the latest).
    started: Arc<AtomicU64>,
    /// The highest probe number some read waits for.
    wanted: Arc<AtomicU64>,
    wake: Arc<Notify>,
    /// `(probe number, its result)` of the latest probe that finished.
    done: watch::Receiver<(u64, Option<Lsn>)>,
}

impl Fence {
    fn start(primary: PgPool) -> Self {
        let (tx, done) = watch::channel((0, None));
        let (started, wanted, wake) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(Notify::new()));
        let (s, w, k) = (started.clone(), wanted.clone(), wake.clone());
        // The task ends when the last reader of `done` (this Fence) is gone.
        tokio::spawn(async move {
            loop {
                if tx.is_closed() {
                    return;
                }
                if AtomicU64::load(&w, Ordering::Acquire) <= tx.borrow().0 {
                    tokio::select! {
                        _ = k.notified() => {}
                        _ = tx.closed() => return,
                    }
                    continue;
                }
                let n = s.fetch_add(1, Ordering::AcqRel) + 1;
                let lsn = probe(&primary).await;
                tx.send_replace((n, lsn));
            }
        });
        Self { started, wanted, wake, done }
    }

    /// The primary's WAL position as read by a probe that started after this call.
    async fn after_now(&self) -> Option<Lsn> {
        let want = AtomicU64::load(&self.started, Ordering::Acquire) + 1;
        self.wanted.fetch_max(want, Ordering::AcqRel);
        self.wake.notify_one();
        let mut done = self.done.clone();
        let (_, lsn) = *done.wait_for(|(n, _)| *n >= want).await.ok()?;
        lsn
    }
}

async fn probe(primary: &PgPool) -> Option<Lsn> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        lsn: String,
    }
    let mut conn = primary.get().await.ok()?;
    let row: Row = crate::prepared(diesel::sql_query("SELECT pg_current_wal_lsn()::text AS lsn"))
        .get_result(&mut conn)
        .await
        .ok()?;
    parse_lsn(&row.lsn)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lsns_compare_as_positions() {
        assert_eq!(super::parse_lsn("0/0"), Some(0));
        assert_eq!(super::parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert!(super::parse_lsn("1/0") > super::parse_lsn("0/FFFFFFFF"));
        assert_eq!(super::parse_lsn("garbage"), None);
    }
}
