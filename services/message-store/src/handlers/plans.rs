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
use crate::error::StoreError;
use crate::send_batch::{SEND_BATCH, SEND_BATCH_LIGHT, SEND_ONE, Sent, send_batch};

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// Parameters of the send statement, and arguments for it.
const SEND_TYPES: &str = "text[], text[], text[], text[], text[], text[], jsonb[], text[], timestamptz[], text[], text[], jsonb[], text[], jsonb[]";
const SEND_ARGS: &str = "'{t}', '{r}', '{s}', '{n}', '{i}', '{c}', '{null}', '{x}', ARRAY[now()], '{text}', '{m}', \
                         '{null}', '{p}', ARRAY['[\"bob\", \"@channel\"]'::jsonb]";

/// Parameters of the statement for one send, and arguments for it.
const ONE_TYPES: &str = "text, text, text, text, text, text, jsonb, text, timestamptz, text, text, jsonb";
const ONE_ARGS: &str = "'t', 'r', 's', 'n', 'i', 'c', null, 'x', now(), 'text', 'm', null";

/// Parameters of a history page, and arguments for it.
const PAGE_TYPES: &str = "text, bigint, bigint, bigint, text, text, bool";
const PAGE_ARGS: &str = "'r', 10, 60, 50, 't', 'u', false";

/// (name, parameter types, statement, arguments for EXPLAIN EXECUTE)
fn statements() -> Vec<(String, &'static str, String, &'static str)> {
    let mut all = vec![
        ("send_batch".to_owned(), SEND_TYPES, SEND_BATCH.to_owned(), SEND_ARGS),
        ("send_batch_light".to_owned(), SEND_TYPES, SEND_BATCH_LIGHT.to_string(), SEND_ARGS),
        ("send_one".to_owned(), ONE_TYPES, SEND_ONE.to_owned(), ONE_ARGS),
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

/// A connection to the freshly migrated database at `url`, with generic plans as the
/// services' pooled connections have them.
async fn migrated(url: &str) -> anyhow::Result<AsyncPgConnection> {
    chat_pg::migrate(url, &crate::MIGRATIONS).await?;
    let mut conn = AsyncPgConnection::establish(url).await?;
    conn.batch_execute("SET plan_cache_mode = force_generic_plan").await?;
    Ok(conn)
}

async fn plans_on(url: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut conn = migrated(url).await?;
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

/// The one `bigint` column `n` of the one row `sql` answers (a count).
async fn number(conn: &mut AsyncPgConnection, sql: &str) -> anyhow::Result<i64> {
    #[derive(QueryableByName)]
    struct Number {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<Number> = diesel::sql_query(sql).load(conn).await?;
    rows.into_iter().map(|r| r.n).next().ok_or_else(|| anyhow::anyhow!("no row from {sql}"))
}

/// A send as the group committer hands it over: the command and its arrival time.
type TimedSend = (chat_domain::proto::store::SendMessage, chrono::DateTime<chrono::Utc>);

/// A plain text send by `user` of tenant `t1` to `room`, arriving now.
fn plain_send(user: &str, room: &str, text: &str) -> anyhow::Result<TimedSend> {
    use chat_domain::ids::{RoomId, TenantId, UserId};
    use chat_domain::model::{Actor, MessageContent};

    Ok((
        chat_domain::proto::store::SendMessage::text(
            Actor { tenant_id: TenantId::parse("t1")?, user_id: UserId::parse(user)? },
            RoomId::parse(room)?,
            MessageContent::parse(text.to_owned())?,
        ),
        chrono::Utc::now(),
    ))
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

    let mut conn = migrated(url).await?;
    conn.batch_execute(
        "INSERT INTO tenants (id, name) VALUES ('t1', 't1');
         INSERT INTO tenant_residency (tenant_id) VALUES ('t1') ON CONFLICT DO NOTHING;
         INSERT INTO rooms (id, tenant_id, room_type, created_by, slow_mode_secs)
             VALUES ('r_slow', 't1', 'group', 'u1', 600), ('r_open', 't1', 'group', 'u1', 0);
         INSERT INTO room_members (room_id, user_id, tenant_id, role)
             VALUES ('r_slow', 'u1', 't1', 'member'), ('r_open', 'u1', 't1', 'member');",
    )
    .await?;
    let send = |room: &str, text: &str| plain_send("u1", room, text);
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
    assert_eq!(number(&mut conn, "SELECT count(*) AS n FROM messages").await?, 5, "every stored send is stored once");
    Ok(())
}

/// A send alone is stored by [`SEND_ONE`], a send beside another by a batch statement:
/// each outcome (stored, resend, no such room, another tenant's room, not a member, a
/// DM whose other member blocks the sender, muted, a reply to another room's message,
/// slow mode) must come out the same from both, and every stored send be stored once.
#[tokio::test]
async fn one_send_and_a_batch_answer_every_outcome_alike() -> anyhow::Result<()> {
    on_scratch_database("outcomes", |url| async move { outcomes_on(&url).await }).await
}

async fn outcomes_on(url: &str) -> anyhow::Result<()> {
    use chat_domain::ids::MessageId;

    let mut conn = migrated(url).await?;
    // Each case has rooms of its own twice over: `_1` for the send alone, `_2` for the
    // same send in a batch (beside a send to `fill`), so neither sees the other's rows.
    let mut setup = String::from(
        "INSERT INTO tenants (id, name) VALUES ('t1', 't1'), ('t2', 't2');
         INSERT INTO tenant_residency (tenant_id) VALUES ('t1'), ('t2') ON CONFLICT DO NOTHING;
         INSERT INTO rooms (id, tenant_id, room_type, created_by) VALUES ('fill', 't1', 'group', 'u1');
         INSERT INTO room_members (room_id, user_id, tenant_id, role) VALUES ('fill', 'u1', 't1', 'member');
         INSERT INTO user_blocks (tenant_id, blocker_id, blocked_id) VALUES ('t1', 'u2', 'u1');",
    );
    for k in 1..=2 {
        setup.push_str(&format!(
            "INSERT INTO rooms (id, tenant_id, room_type, created_by, slow_mode_secs) VALUES
                 ('open_{k}', 't1', 'group', 'u1', 0), ('dm_{k}', 't1', 'dm', 'u1', 0),
                 ('dmok_{k}', 't1', 'dm', 'u1', 0), ('mute_{k}', 't1', 'group', 'u1', 0),
                 ('slow_{k}', 't1', 'group', 'u1', 600), ('other_{k}', 't2', 'group', 'u1', 0);
             INSERT INTO room_members (room_id, user_id, tenant_id, role) VALUES
                 ('open_{k}', 'u1', 't1', 'member'), ('open_{k}', 'u2', 't1', 'member'),
                 ('dm_{k}', 'u1', 't1', 'member'), ('dm_{k}', 'u2', 't1', 'member'),
                 ('dmok_{k}', 'u1', 't1', 'member'), ('dmok_{k}', 'u3', 't1', 'member'),
                 ('mute_{k}', 'u1', 't1', 'member'), ('slow_{k}', 'u1', 't1', 'member'),
                 ('other_{k}', 'u1', 't2', 'member');
             INSERT INTO room_mutes (room_id, user_id, tenant_id, created_by) VALUES ('mute_{k}', 'u1', 't1', 'u9');"
        ));
    }
    conn.batch_execute(&setup).await?;

    let send = plain_send;
    let outcome = |r: &Result<Sent, StoreError>| -> String {
        match r {
            Ok(Sent::New(m)) => format!("new {} {}", m.seq, m.content),
            Ok(Sent::Duplicate(m)) => format!("duplicate {} {}", m.seq, m.content),
            // Slow mode's message says how long to wait, which depends on the clock.
            Err(StoreError::Api(e)) if e.code == chat_domain::ErrorCode::RateLimitExceeded => format!("{:?}", e.code),
            Err(StoreError::Api(e)) => format!("{:?} {}", e.code, e.message),
            Err(e) => format!("failed: {e}"),
        }
    };
    // The case's send to its `_k` room, and what it must answer.
    let cases = |k: u8| -> anyhow::Result<Vec<(TimedSend, &'static str)>> {
        let mut resend = send("u1", &format!("open_{k}"), "first")?;
        resend.0.client_msg_id = Some("c1".to_owned());
        let mut stray_reply = send("u1", &format!("open_{k}"), "a reply")?;
        stray_reply.0.reply_to = Some(MessageId::parse("msg_not_in_this_room")?);
        Ok(vec![
            (send("u1", &format!("open_{k}"), "hello")?, "new 1 hello"),
            (resend.clone(), "new 2 first"),
            (resend, "duplicate 2 first"),
            (send("u1", &format!("none_{k}"), "x")?, "NotFound Room not found"),
            (send("u1", &format!("other_{k}"), "x")?, "NotFound Room not found"),
            (send("u3", &format!("open_{k}"), "x")?, "Forbidden You are not a member of this room"),
            (send("u1", &format!("dm_{k}"), "x")?, "Forbidden You are blocked by this user"),
            (send("u1", &format!("dmok_{k}"), "not blocked")?, "new 1 not blocked"),
            (send("u1", &format!("mute_{k}"), "x")?, "Muted You are muted in this room"),
            (stray_reply, "ValidationError The message replied to is not a message of this room"),
            (send("u1", &format!("slow_{k}"), "slow one")?, "new 1 slow one"),
            (send("u1", &format!("slow_{k}"), "slow two")?, "RateLimitExceeded"),
        ])
    };
    let (alone, batched) = (cases(1)?, cases(2)?);
    for ((one, expected), (two, _)) in alone.into_iter().zip(batched) {
        let by_itself = send_batch(&mut conn, &[one]).await?;
        let [result] = &by_itself.results[..] else { anyhow::bail!("one send, {} results", by_itself.results.len()) };
        let in_batch = send_batch(&mut conn, &[send("u1", "fill", "filler")?, two]).await?;
        let [filler, result_2] = &in_batch.results[..] else {
            anyhow::bail!("two sends, {} results", in_batch.results.len())
        };
        assert!(matches!(filler, Ok(Sent::New(_))), "the filler send was not stored: {}", outcome(filler));
        let (a, b) = (outcome(result), outcome(result_2));
        assert!(a.starts_with(expected), "alone: expected {expected:?}, got {a:?}");
        assert_eq!(a, b, "the send alone and the same send in a batch answered differently");
    }
    let stored = number(&mut conn, "SELECT count(*) AS n FROM messages WHERE room_id <> 'fill'").await?;
    assert_eq!(stored, 2 * 4, "every stored send is stored once");
    Ok(())
}

/// The send statements compute a new message's search vector and keys themselves
/// (migration 0100): what they store must be exactly what `chat_message_tsv()` computes
/// from the same row (here in the tenant's own language, English, where 'simple' would
/// keep "running" unstemmed), and the trigger must not run for their rows at all — the
/// point of computing it in the statement.
#[tokio::test]
async fn send_statements_store_the_search_vector_the_trigger_would() -> anyhow::Result<()> {
    on_scratch_database("vectors", |url| async move { vectors_on(&url).await }).await
}

async fn vectors_on(url: &str) -> anyhow::Result<()> {
    #[derive(QueryableByName, Debug, PartialEq)]
    struct Vector {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        tsv: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        search_keys: Option<String>,
    }
    const VECTORS: &str = "SELECT id, tsv::text AS tsv, search_keys::text AS search_keys FROM messages ORDER BY id";
    // Calls of the trigger function so far (function statistics of this database,
    // flushed by this session before they are read).
    async fn trigger_calls(conn: &mut AsyncPgConnection) -> anyhow::Result<i64> {
        conn.batch_execute("SELECT pg_stat_force_next_flush()").await?;
        conn.batch_execute("SELECT pg_stat_clear_snapshot()").await?;
        number(
            conn,
            "SELECT coalesce(sum(calls), 0)::bigint AS n FROM pg_stat_user_functions WHERE funcname = 'chat_message_tsv'",
        )
        .await
    }

    let mut conn = migrated(url).await?;
    conn.batch_execute(
        "SET track_functions = 'pl';
         INSERT INTO tenants (id, name) VALUES ('t1', 't1');
         INSERT INTO tenant_residency (tenant_id, search_lang) VALUES ('t1', 'english')
             ON CONFLICT (tenant_id) DO UPDATE SET search_lang = 'english';
         INSERT INTO rooms (id, tenant_id, room_type, created_by) VALUES ('ra', 't1', 'group', 'u1'), ('rb', 't1', 'group', 'u1');
         INSERT INTO room_members (room_id, user_id, tenant_id, role) VALUES ('ra', 'u1', 't1', 'member'), ('rb', 'u1', 't1', 'member');",
    )
    .await?;
    let texts = [
        "Running quickly through the gardens",
        "the and of",
        "Wörter ünïcödé 123 foo@example.com https://example.org/a?b=c 🎉",
        "x",
    ];
    // One send alone (the one-send statement), two at once (the light batch statement),
    // and a thread reply beside a send (the full batch statement).
    let first = send_batch(&mut conn, &[plain_send("u1", "ra", texts[0])?]).await?;
    let [Ok(Sent::New(parent))] = &first.results[..] else { anyhow::bail!("the first send was not stored") };
    send_batch(&mut conn, &[plain_send("u1", "ra", texts[1])?, plain_send("u1", "rb", texts[2])?]).await?;
    let mut reply = plain_send("u1", "ra", texts[3])?;
    reply.0.parent_id = Some(parent.message_id.clone());
    let full = send_batch(&mut conn, &[reply, plain_send("u1", "rb", texts[0])?]).await?;
    assert!(full.results.iter().all(|r| matches!(r, Ok(Sent::New(_)))), "every send is stored");

    let stored: Vec<Vector> = diesel::sql_query(VECTORS).load(&mut conn).await?;
    assert_eq!(stored.len(), 5);
    assert!(stored.iter().all(|v| v.tsv.is_some() && v.search_keys.is_some()), "every text has a vector: {stored:?}");
    assert!(stored.iter().any(|v| v.tsv.as_deref().is_some_and(|t| t.contains("'run'"))), "stemmed in English");
    assert_eq!(trigger_calls(&mut conn).await?, 0, "the trigger ran for rows the statements stored");

    // The trigger recomputes every row from its content (and is counted doing so).
    conn.batch_execute("UPDATE messages SET tsv = NULL").await?;
    assert_eq!(trigger_calls(&mut conn).await?, 5, "the trigger's calls are counted");
    let recomputed: Vec<Vector> = diesel::sql_query(VECTORS).load(&mut conn).await?;
    assert_eq!(stored, recomputed, "the statements and the trigger computed different vectors");
    Ok(())
}
