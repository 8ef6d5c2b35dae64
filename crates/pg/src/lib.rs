//! PostgreSQL plumbing shared by the services that own data (message-store,
//! notification): the connection pool, a small migration runner for SQL files
//! embedded in the binary, and [`standby::Reads`], reads that a streaming standby
//! serves without showing a caller less than it has seen. Each service keeps its own
//! migration table, so their histories never collide in a shared database.
//!
//! Database URLs are libpq's: one host, or a list that follows a failover,
//! `postgres://user@h1:5432,h2:5432/chat?target_session_attrs=read-write&connect_timeout=2`
//! (each new connection tries the hosts in order and keeps the one that takes
//! writes, so after a standby is promoted new connections find it, and connections to
//! the old primary fail and leave the pool). See [`check_url`]. [`json::LenientJson`] reads a
//! `jsonb` column so that one unreadable value never fails a whole list.

pub mod json;
pub mod standby;

use std::time::Duration;

use anyhow::Context as _;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// The connection pool every handler borrows from.
pub type PgPool = Pool<AsyncPgConnection>;

/// A service's embedded migrations, applied in order, each once.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// Table that records what was applied (e.g. `schema_migrations`).
    pub table: &'static str,
    /// Advisory-lock key: replicas starting together migrate one at a time.
    pub lock: i64,
    /// `(version, sql)` in order.
    pub steps: &'static [(&'static str, &'static str)],
}

/// Builds the pool. `timeout` bounds both connecting and waiting for a free connection.
///
/// Two settings matter for the cost of every query:
/// - A connection is not tested with a query each time it is taken from the pool (that
///   was a round trip per request); a broken one fails its next query and is dropped.
/// - Prepared statements use their generic plan (`plan_cache_mode`): the statements
///   here are constant and index-driven, and PostgreSQL's default of re-planning a
///   statement whenever a custom plan looks cheaper made the batch send spend more time
///   planning than executing.
pub async fn pool(url: &str, size: u32, timeout: Duration) -> anyhow::Result<PgPool> {
    check_url(url)?;
    Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(timeout)
        .test_on_check_out(false)
        .build(manager(url))
        .await
        .context("building the PostgreSQL pool")
}

/// A pool that does not connect until it is used (for a server that may be down when
/// the service starts, such as a standby).
pub fn pool_unchecked(url: &str, size: u32, timeout: Duration) -> PgPool {
    Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(timeout)
        .test_on_check_out(false)
        .build_unchecked(manager(url))
}

/// Checks a database URL before anything connects with it, so that a typo is an
/// error naming the setting rather than a connection failure: it must be a
/// `postgres://` or `postgresql://` URL (or `key=value` pairs) that libpq's parser, as
/// tokio-postgres implements it, accepts — including host lists and
/// `target_session_attrs` (`any`, `read-write`, `read-only`).
pub fn check_url(url: &str) -> anyhow::Result<()> {
    let trimmed = url.trim();
    if trimmed.is_empty() {
        anyhow::bail!("the database URL is empty");
    }
    let looks_like_url = trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://");
    if trimmed.contains("://") && !looks_like_url {
        anyhow::bail!("{}: not a postgres:// URL", redact(trimmed));
    }
    trimmed.parse::<tokio_postgres::Config>().map(|_| ()).map_err(|e| anyhow::anyhow!("{}: {e}", redact(trimmed)))
}

fn manager(url: &str) -> AsyncDieselConnectionManager<AsyncPgConnection> {
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(|url| {
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            // Generic plans: every statement is planned once per connection. No JIT: these
            // are short OLTP statements, and a plan whose estimate crosses
            // `jit_above_cost` would pay tens to hundreds of milliseconds compiling.
            conn.batch_execute("SET plan_cache_mode = force_generic_plan; SET jit = off")
                .await
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
            Ok(conn)
        })
    });
    AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config)
}

/// Applies pending migrations. Safe to run any number of times, from any number of
/// replicas at once (they serialize on an advisory lock).
pub async fn migrate(url: &str, m: &Migrations) -> anyhow::Result<Vec<&'static str>> {
    let mut conn = AsyncPgConnection::establish(url).await.with_context(|| format!("connecting to {}", redact(url)))?;
    conn.batch_execute(&format!("SELECT pg_advisory_lock({})", m.lock)).await.context("taking the migration lock")?;
    let result = apply(&mut conn, m).await;
    let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({})", m.lock)).await;
    result
}

async fn apply(conn: &mut AsyncPgConnection, m: &Migrations) -> anyhow::Result<Vec<&'static str>> {
    use diesel::QueryableByName;
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;

    #[derive(QueryableByName)]
    struct Applied {
        #[diesel(sql_type = Text)]
        version: String,
    }

    let table = m.table;
    conn.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            version TEXT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ))
    .await
    .with_context(|| format!("creating {table}"))?;
    let done: Vec<Applied> = diesel::sql_query(format!("SELECT version FROM {table}"))
        .load(conn)
        .await
        .with_context(|| format!("reading {table}"))?;
    let mut applied = Vec::new();
    for (version, sql) in m.steps {
        if done.iter().any(|a| a.version == *version) {
            continue;
        }
        let script = format!("BEGIN;\n{sql}\nINSERT INTO {table} (version) VALUES ('{version}');\nCOMMIT;");
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
        assert_eq!(super::redact("postgres://u:pw@h1,h2/db"), "postgres://u:***@h1,h2/db");
    }

    #[test]
    fn host_lists_and_session_attributes_are_valid_urls() -> anyhow::Result<()> {
        super::check_url("postgres://postgres@127.0.0.1:5432/chat")?;
        super::check_url(
            "postgres://postgres@10.0.0.1:5432,10.0.0.2:5433/chat?target_session_attrs=read-write&connect_timeout=2",
        )?;
        super::check_url("postgresql://u:pw@h1,h2/chat?target_session_attrs=read-only")?;
        super::check_url("host=h1,h2 port=5432,5433 dbname=chat target_session_attrs=read-write")?;
        Ok(())
    }

    #[test]
    fn bad_urls_are_refused_without_their_password() {
        for (url, says) in [
            ("", "empty"),
            ("mysql://u@h/db", "not a postgres:// URL"),
            ("postgres://u:secret@h/chat?target_session_attrs=primary", "target_session_attrs"),
            ("postgres://u:secret@h:port/chat", "invalid"),
        ] {
            match super::check_url(url) {
                Ok(()) => panic!("{url} was accepted"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(says) && !e.contains("secret"), "{url}: {e}");
                }
            }
        }
    }
}

/// A hand-written statement that is prepared once per connection and reused.
///
/// Diesel never caches `sql_query` statements (it cannot know whether the SQL text was
/// built at run time), so PostgreSQL would parse and plan them on every call. The
/// statements wrapped here are constants, so they are safe to cache by their text:
/// each pooled connection prepares one the first time and then only binds and
/// executes it.
#[derive(Debug, Clone)]
pub struct Prepared<Q>(pub Q);

/// Wraps a constant-SQL query so its prepared statement is cached (see [`Prepared`]).
pub fn prepared<Q>(query: Q) -> Prepared<Q> {
    Prepared(query)
}

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q> diesel::query_builder::QueryId for Prepared<Q> {
    type QueryId = ();
    // Cached by SQL text, not by type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>> diesel::query_builder::QueryFragment<diesel::pg::Pg>
    for Prepared<Q>
{
    fn walk_ast<'b>(&'b self, pass: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> diesel::QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _: &diesel::pg::Pg) -> diesel::QueryResult<bool> {
        Ok(true)
    }
}
