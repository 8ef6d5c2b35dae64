//! One replica runs the offline pass at a time: the one holding a PostgreSQL advisory
//! lock named after the deployment. The lock is taken on a connection of its own, not
//! a pooled one (a pool would hand the session, and the lock with it, to whoever
//! borrows it next), and lives as long as that connection: a replica that dies drops
//! it, and a standby, asking every second on its own open connection, takes over from
//! the persisted cursor. The cursor moves by compare-and-set besides, so even two
//! leaders at once (a lock connection that died unnoticed) could not both apply a page.

use anyhow::Context as _;
use diesel::QueryableByName;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// The advisory lock of one deployment's offline pass.
pub struct Lock {
    url: String,
    /// Hashed by PostgreSQL into the lock's 64-bit key.
    name: String,
    conn: Option<AsyncPgConnection>,
    held: bool,
}

#[derive(QueryableByName)]
struct Answer {
    #[diesel(sql_type = Bool)]
    ok: bool,
}

impl Lock {
    pub fn new(database_url: &str, follower: &str) -> Self {
        Self { url: database_url.to_owned(), name: format!("notification.offline:{follower}"), conn: None, held: false }
    }

    /// Takes the lock if nobody holds it; true when this replica holds it.
    pub async fn try_take(&mut self) -> anyhow::Result<bool> {
        if self.held {
            return Ok(true);
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(
                AsyncPgConnection::establish(&self.url)
                    .await
                    .with_context(|| format!("connecting to {}", chat_pg::redact(&self.url)))?,
            ),
        };
        let taken = diesel::sql_query("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok")
            .bind::<Text, _>(&self.name)
            .get_result::<Answer>(conn)
            .await;
        match taken {
            Ok(a) => {
                self.held = a.ok;
                Ok(a.ok)
            }
            Err(e) => {
                // Connect again next time.
                self.conn = None;
                Err(e).context("asking for the offline-pass lock")
            }
        }
    }

    /// Whether the lock is still held: its connection still answers (a session's
    /// advisory lock ends only with the session or an unlock).
    pub async fn still_held(&mut self) -> bool {
        let Some(conn) = &mut self.conn else { return false };
        let alive = diesel::sql_query("SELECT true AS ok").get_result::<Answer>(conn).await.is_ok();
        if !alive {
            self.conn = None;
            self.held = false;
        }
        alive
    }

    /// Lets a standby take over at once (closing the connection would too).
    pub async fn release(&mut self) {
        if !self.held {
            return;
        }
        self.held = false;
        if let Some(conn) = &mut self.conn {
            let released = diesel::sql_query("SELECT pg_advisory_unlock(hashtextextended($1, 0)) AS ok")
                .bind::<Text, _>(&self.name)
                .get_result::<Answer>(conn)
                .await;
            if released.is_err() {
                self.conn = None;
            }
        }
    }
}

/// Against the machine's PostgreSQL (`TEST_DATABASE_URL`, default localhost).
#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> String {
        std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_standby_takes_over() -> anyhow::Result<()> {
        let follower = format!("lock-test-{}-{}", std::process::id(), chat_domain::time::now().timestamp_micros());
        let (mut a, mut b) = (Lock::new(&url(), &follower), Lock::new(&url(), &follower));
        assert!(a.try_take().await?, "nobody held it");
        assert!(a.try_take().await?, "taking it again keeps it");
        assert!(!b.try_take().await?, "held by a");
        assert!(a.still_held().await);
        let mut other = Lock::new(&url(), &format!("{follower}-other"));
        assert!(other.try_take().await?, "another deployment's lock is another lock");
        a.release().await;
        assert!(b.try_take().await?, "a standby takes over once released");
        drop(b);
        // The lock ends with its connection: a holder that dies frees it.
        let mut c = Lock::new(&url(), &follower);
        let mut taken = false;
        for _ in 0..100 {
            if c.try_take().await? {
                taken = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(taken, "a dropped holder's lock is free");
        Ok(())
    }
}
