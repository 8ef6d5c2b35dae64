//! The statements on the send path, and the history page (with its reactions and
//! pins) that readers ask for most, must keep index-driven plans whatever the
//! statistics said when their plan was cached. A writer's connection caches one
//! generic plan per statement for its whole life, often made while the tables are
//! still empty, and nothing replans it unless the tables are analyzed again (never,
//! where autovacuum is off). A plan that hashed a scan of `messages` once looked
//! cheapest on empty tables and then read the whole table on every batch. Checked
//! here on a freshly migrated, empty database.

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::log::ROOM_AUDIENCES;
use super::messages::{PageShape, history_page};
use super::reactions::decorate_sql;
use crate::send_batch::{SEND_BATCH, SEND_BATCH_LIGHT};

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// Parameters of the send statement, and arguments for it.
const SEND_TYPES: &str = "text[], text[], text[], text[], text[], text[], jsonb[], text[], timestamptz[], text[], text[], jsonb[], text[], jsonb[]";
const SEND_ARGS: &str = "'{t}', '{r}', '{s}', '{n}', '{i}', '{c}', '{null}', '{x}', ARRAY[now()], '{text}', '{m}', \
                         '{null}', '{p}', ARRAY['[\"bob\", \"@channel\"]'::jsonb]";

/// Parameters of a history page, and arguments for it.
const PAGE_TYPES: &str = "text, bigint, bigint, bigint, text, text, bool";
const PAGE_ARGS: &str = "'r', 10, 60, 50, 't', 'u', false";

/// (name, parameter types, statement, arguments for EXPLAIN EXECUTE)
fn statements() -> Vec<(String, &'static str, String, &'static str)> {
    let mut all = vec![
        ("send_batch".to_owned(), SEND_TYPES, SEND_BATCH.to_owned(), SEND_ARGS),
        ("send_batch_light".to_owned(), SEND_TYPES, SEND_BATCH_LIGHT.to_string(), SEND_ARGS),
        ("room_audiences".to_owned(), "text[], text[]", ROOM_AUDIENCES.to_owned(), "'{t}', '{r}'"),
        ("decorate".to_owned(), "text[], text", decorate_sql(), "'{m1,m2}', 'u'"),
    ];
    for shape in PageShape::ALL {
        all.push((format!("history_{shape:?}").to_lowercase(), PAGE_TYPES, history_page(shape), PAGE_ARGS));
    }
    all
}

fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/chat_test".to_owned())
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// Runs `check` against a fresh, empty database named after `prefix`, dropped afterwards
/// whatever `check` answered.
async fn on_scratch_database<T, Fut>(prefix: &str, check: impl FnOnce(String) -> Fut) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let admin_url = test_database_url();
    let name = format!("{prefix}_{}_{}", std::process::id(), chrono::Utc::now().timestamp_micros());
    let mut admin = AsyncPgConnection::establish(&admin_url).await?;
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    let checked = check(with_database(&admin_url, &name)).await;
    admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).await?;
    checked
}

async fn plans_on(url: &str) -> anyhow::Result<Vec<(String, String)>> {
    chat_pg::migrate(url, &crate::MIGRATIONS).await?;
    let mut conn = AsyncPgConnection::establish(url).await?;
    conn.batch_execute("SET plan_cache_mode = force_generic_plan").await?;
    let mut plans = Vec::new();
    for (name, types, sql, args) in statements() {
        conn.batch_execute(&format!("PREPARE {name} ({types}) AS {sql}")).await?;
        let lines: Vec<PlanLine> =
            diesel::sql_query(format!("EXPLAIN EXECUTE {name} ({args})")).load(&mut conn).await?;
        plans.push((name, lines.into_iter().map(|l| l.line).collect::<Vec<_>>().join("\n")));
    }
    Ok(plans)
}

#[tokio::test]
async fn hot_path_statements_probe_indexes_when_planned_on_empty_tables() -> anyhow::Result<()> {
    let plans = on_scratch_database("plans", |url| async move { plans_on(&url).await }).await?;
    assert_eq!(plans.len(), statements().len());
    for (statement, plan) in plans {
        assert!(plan.contains("Index"), "{statement}: expected index probes:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "{statement} scans a table when planned on empty tables:\n{plan}");
    }
    Ok(())
}

#[test]
fn the_scratch_database_replaces_only_the_name() {
    assert_eq!(with_database("postgres://u:p@h:5432/chat_test", "x"), "postgres://u:p@h:5432/x");
    assert_eq!(with_database("postgres://u:p@h/chat_test?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
}

/// The light send statement leaves slow mode to the full one: a batch with a send to a
/// slow room is stored by [`SEND_BATCH`] (the light one stored nothing of it), so slow
/// mode holds, and the batch's other sends are stored once, in order.
#[tokio::test]
async fn a_batch_with_a_send_to_a_slow_room_is_stored_by_the_full_statement() -> anyhow::Result<()> {
    on_scratch_database("slow", |url| async move { slow_batches_on(&url).await }).await
}

async fn slow_batches_on(url: &str) -> anyhow::Result<()> {
    use chat_domain::ErrorCode;
    use chat_domain::ids::{RoomId, TenantId, UserId};
    use chat_domain::model::{Actor, MessageContent};
    use chat_domain::proto::store::SendMessage;

    use crate::error::StoreError;
    use crate::send_batch::{Sent, send_batch};

    chat_pg::migrate(url, &crate::MIGRATIONS).await?;
    let mut conn = AsyncPgConnection::establish(url).await?;
    conn.batch_execute(
        "INSERT INTO tenants (id, name) VALUES ('t1', 't1');
         INSERT INTO tenant_residency (tenant_id) VALUES ('t1') ON CONFLICT DO NOTHING;
         INSERT INTO rooms (id, tenant_id, room_type, created_by, slow_mode_secs)
             VALUES ('r_slow', 't1', 'group', 'u1', 600), ('r_open', 't1', 'group', 'u1', 0);
         INSERT INTO room_members (room_id, user_id, tenant_id, role)
             VALUES ('r_slow', 'u1', 't1', 'member'), ('r_open', 'u1', 't1', 'member');",
    )
    .await?;
    let send = |room: &str, text: &str| -> anyhow::Result<(SendMessage, chrono::DateTime<chrono::Utc>)> {
        Ok((
            SendMessage::text(
                Actor { tenant_id: TenantId::parse("t1")?, user_id: UserId::parse("u1")? },
                RoomId::parse(room)?,
                MessageContent::parse(text.to_owned())?,
            ),
            chrono::Utc::now(),
        ))
    };
    let seqs = |results: &[Result<Sent, StoreError>]| -> Vec<Result<i64, String>> {
        results
            .iter()
            .map(|r| match r {
                Ok(Sent::New(m)) => Ok(m.seq),
                Ok(Sent::Duplicate(m)) => Err(format!("duplicate of {}", m.seq)),
                Err(StoreError::Api(e)) if e.code == ErrorCode::RateLimitExceeded => Err("slow".to_owned()),
                Err(e) => Err(format!("{e}")),
            })
            .collect()
    };

    // The slow room's first send passes; the open room's send is stored once beside it.
    let stored = send_batch(&mut conn, &[send("r_slow", "one")?, send("r_open", "two")?]).await?;
    assert_eq!(seqs(&stored.results), vec![Ok(1), Ok(1)]);
    // Inside the wait: the slow room's send is refused, the open room's is stored.
    let stored = send_batch(&mut conn, &[send("r_open", "three")?, send("r_slow", "four")?]).await?;
    assert_eq!(seqs(&stored.results), vec![Ok(2), Err("slow".to_owned())]);
    // A batch of the open room alone (the light statement, start to end).
    let stored = send_batch(&mut conn, &[send("r_open", "five")?, send("r_open", "six")?]).await?;
    assert_eq!(seqs(&stored.results), vec![Ok(3), Ok(4)]);
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<Count> = diesel::sql_query("SELECT count(*) AS n FROM messages").load(&mut conn).await?;
    assert_eq!(rows.iter().map(|c| c.n).next(), Some(5), "every stored send is stored once");
    Ok(())
}
