//! Storing a batch of sends: one prepared statement ([`SEND_BATCH`]) in its own
//! transaction, so one round trip and one commit cover the whole batch. It sits below
//! both its callers: the group committer (`group_commit.rs`) runs it for the batches
//! its writers form, and the `send_message` handlers reach it only through that
//! committer, so neither has to import the other for it.
//!
//! The statement checks access and idempotency for every send with index lookups,
//! bumps each room's `last_seq` once by its number of new messages (taking the next
//! `seq`s inside the storing transaction), inserts the new messages in one multi-row
//! insert and moves each (room, sender)'s cursors once. The group committer gives each
//! room to one writer, so a process never has two transactions on one room; a resend
//! racing its original on another replica fails the batch on the idempotency index,
//! and the batch is then stored send by send (each then sees the other's commit).
//! Events are published after commit by `publish.rs`, from the batch's result, with no
//! outbox row per message.

use std::collections::HashMap;

use chat_domain::ApiError;
use chat_domain::ids::{MessageId, RoomId, TenantId, UserId};
use chat_domain::model::Message;
use chat_domain::proto::events::ThreadUpdated;
use chat_domain::proto::store::SendMessage;
use chat_domain::proto::threads;
use chat_pg::prepared;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::StoreError;
use crate::rows::{attachments, attachments_json, message_kind, thread_summary, user_ids};

/// What one send of a batch did.
#[derive(Debug)]
pub enum Sent {
    /// Stored now: its `message.created` event is to be published.
    New(Message),
    /// A resend: the message stored earlier.
    Duplicate(Message),
}

/// A committed batch: each send's result, in input order, and the id of the
/// transaction that stored them.
#[derive(Debug)]
pub struct Stored {
    pub results: Vec<Result<Sent, StoreError>>,
    pub tx: i64,
    /// The threads the batch replied in, once each, with their summaries after it.
    pub threads: Vec<ThreadChange>,
}

/// A thread whose summary a batch (or a deletion) changed: its `thread.updated` event.
#[derive(Debug, Clone)]
pub struct ThreadChange {
    pub tenant: TenantId,
    pub room: RoomId,
    pub at: DateTime<Utc>,
    pub update: ThreadUpdated,
}

/// The sender name as stored: at most the display-name length, without NUL
/// (which PostgreSQL text cannot hold).
fn stored_sender_name(cmd: &SendMessage) -> Option<String> {
    cmd.sender_name
        .as_deref()
        .map(|n| n.chars().filter(|c| *c != '\0').take(chat_domain::model::MAX_DISPLAY_NAME_CHARS).collect())
}

/// The columns of an earlier send of the same client id (`prev`, a resend's message), as
/// both send statements name them.
macro_rules! prev_columns {
    () => {
        "           prev.id AS prev_id, prev.sender_name AS prev_sender_name, prev.seq AS prev_seq,
           prev.content AS prev_content, prev.meta AS prev_meta, prev.created_at AS prev_created_at,
           prev.edited_at AS prev_edited_at, prev.deleted_at AS prev_deleted_at, prev.kind AS prev_kind,
           prev.reply_to AS prev_reply_to, prev.attachments AS prev_attachments,
           prev.parent_id AS prev_parent_id, prev.mentions AS prev_mentions, prev.reply_count AS prev_reply_count,
           prev.last_reply_at AS prev_last_reply_at, prev.thread_participants AS prev_thread_participants
"
    };
}

/// The search vector and search keys of a new message (its tenant, room and content
/// given as SQL expressions), as `v.tsv` and `k.keys`: the same values
/// `chat_message_tsv()` computes (migrations 0090 and 0100) — the tenant's search
/// language (`simple` without one), no vector for empty content, every lexeme prefixed
/// with the room's key — in the statement, so the trigger, a PL/pgSQL call with two
/// queries of its own per row, does not run for the statement's rows (its `WHEN` skips
/// rows that arrive with both). `OFFSET 0` keeps the vector a subquery of its own:
/// flattened, the planner copied its expression into every reference and parsed each
/// message three times, slower than the trigger.
macro_rules! search_columns {
    ($tenant:literal, $room:literal, $content:literal) => {
        concat!(
            "    CROSS JOIN LATERAL (SELECT CASE WHEN ",
            $content,
            " = '' THEN NULL
        ELSE to_tsvector(coalesce((SELECT tr.search_lang FROM tenant_residency tr WHERE tr.tenant_id = ",
            $tenant,
            "),
                                  'simple'::regconfig), ",
            $content,
            ") END AS tsv OFFSET 0) v
    CROSS JOIN LATERAL (SELECT CASE WHEN v.tsv IS NOT NULL THEN array_to_tsvector(ARRAY(
        SELECT chat_search_key(",
            $room,
            ") || unnest(tsvector_to_array(v.tsv)))) END AS keys) k
"
        )
    };
}

/// Stores a batch of sends (arrays `$1..$14`: tenant, room, sender, sender name, new
/// message id, content, meta, client id, arrival time, kind, replied-to message id,
/// attachments, thread parent, mentions (a JSON array); no two sends with the same
/// room, sender and client id). Per send, in
/// input order: `outcome` (`created`, `duplicate`, `forbidden`, `blocked` (a DM whose other member blocks the
/// sender), `muted`, `slow` (inside slow mode's wait, `slow_wait` seconds), `not_found`,
/// `bad_reply` when the replied-to message is not one of the room's, `parent_room`,
/// `parent_deleted`, `parent_nested` for a bad thread parent, `mention_channel` (a plain
/// member's `@channel`) or `mention_member` (a mention of a non-member)), its `seq`, the stored message's columns for
/// a duplicate, and the transaction id. Every lookup is a correlated subquery or a
/// `LIMIT 1` lateral probe on an index: neither can be turned into a join that scans
/// a whole table, so the plan a writer caches once (often while the tables are still
/// empty, and kept when nothing re-analyzes them) stays an index probe per send.
pub const SEND_BATCH: &str = concat!(
    "
WITH input AS (
    SELECT t.ord::int AS ord, t.tenant, t.room, t.sender, t.sender_name, t.id, t.content, t.meta, t.client_id, t.at,
           t.kind, t.reply_to, t.attachments,
           -- Threads and mentions (issue 23): the parent, and the mentions as a text[].
           t.parent_id,
           /*full{*/ CASE WHEN t.mentions IS NOT NULL THEN ARRAY(SELECT jsonb_array_elements_text(t.mentions)) END
           /*}plain{ NULL::text[] }*/ AS mentions
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::text[],
                $9::timestamptz[], $10::text[], $11::text[], $12::jsonb[], $13::text[], $14::jsonb[])
         WITH ORDINALITY AS t (tenant, room, sender, sender_name, id, content, meta, client_id, at, kind, reply_to,
                               attachments, parent_id, mentions, ord)
),
checked AS (
    SELECT i.*,
           (SELECT r.tenant_id = i.tenant FROM rooms r WHERE r.id = i.room) AS room_ok,
           coalesce((SELECT true FROM room_members mb WHERE mb.room_id = i.room AND mb.user_id = i.sender
                     LIMIT 1), false) AS member,
           -- A DM whose other member blocks the sender (migration 0050).
           coalesce((SELECT true FROM room_members o
                     WHERE o.room_id = i.room AND o.user_id <> i.sender
                       AND (SELECT r.room_type FROM rooms r WHERE r.id = i.room) = 'dm'
                       AND coalesce((SELECT true FROM user_blocks b WHERE b.tenant_id = i.tenant
                                     AND b.blocker_id = o.user_id AND b.blocked_id = i.sender LIMIT 1), false)
                     LIMIT 1), false) AS blocked,
           -- Room moderation (migration 0080): a mute in force, and slow mode's wait for a
           -- sender below moderator (slow_secs 0: no wait; slow_next: when they may send).
           coalesce((SELECT true FROM room_mutes mu WHERE mu.room_id = i.room AND mu.user_id = i.sender
                       AND (mu.expires_at IS NULL OR mu.expires_at > i.at) LIMIT 1), false) AS muted,
           /*full{*/
           coalesce((SELECT r.slow_mode_secs FROM rooms r WHERE r.id = i.room AND r.slow_mode_secs > 0
                       AND NOT coalesce((SELECT mm.role IN ('owner', 'admin', 'moderator') FROM room_members mm
                                         WHERE mm.room_id = i.room AND mm.user_id = i.sender), false)), 0) AS slow_secs,
           (SELECT s.next_at FROM room_slow_sends s WHERE s.room_id = i.room AND s.user_id = i.sender) AS slow_next,
           /*}plain{ 0 AS slow_secs, NULL::timestamptz AS slow_next,
           coalesce((SELECT r.slow_mode_secs > 0 FROM rooms r WHERE r.id = i.room), false) AS slow_room, }*/
           CASE WHEN i.reply_to IS NULL THEN true
                ELSE coalesce((SELECT q.room_id = i.room FROM messages q WHERE q.id = i.reply_to), false)
           END AS reply_ok,
           /*full{*/
           -- Threads (issue 23): the parent must be a live top-level message of the room.
           CASE WHEN i.parent_id IS NULL THEN 'ok'
                ELSE coalesce((SELECT CASE WHEN p.room_id <> i.room THEN 'room'
                                           WHEN p.deleted_at IS NOT NULL THEN 'deleted'
                                           WHEN p.parent_id IS NOT NULL THEN 'nested' ELSE 'ok' END
                               FROM messages p WHERE p.id = i.parent_id), 'room')
           END AS parent_state,
           -- Mentions (issue 23): members only; '@channel' only from a room admin.
           CASE WHEN i.mentions IS NULL THEN 'ok'
                WHEN '@channel' = ANY (i.mentions)
                     AND coalesce((SELECT mb.role NOT IN ('owner', 'admin') FROM room_members mb
                                   WHERE mb.room_id = i.room AND mb.user_id = i.sender), true) THEN 'channel'
                WHEN EXISTS (SELECT 1 FROM unnest(i.mentions) AS u (id)
                             WHERE u.id <> '@channel'
                               AND NOT EXISTS (SELECT 1 FROM room_members mb
                                               WHERE mb.room_id = i.room AND mb.user_id = u.id)) THEN 'member'
                ELSE 'ok'
           END AS mention_state,
           /*}plain{ 'ok' AS parent_state, 'ok' AS mention_state, }*/
",
    prev_columns!(),
    "    FROM input i
    LEFT JOIN LATERAL (
        SELECT m.id, m.sender_name, m.seq, m.content, m.meta, m.created_at, m.edited_at, m.deleted_at, m.kind,
               m.reply_to, m.attachments, m.parent_id, m.mentions, m.reply_count, m.last_reply_at,
               m.thread_participants
        FROM messages m
        WHERE i.client_id IS NOT NULL AND m.client_msg_id IS NOT NULL
          AND m.room_id = i.room AND m.sender_id = i.sender AND m.client_msg_id = i.client_id
        LIMIT 1
    ) prev ON true
),
/*full{*/
-- Slow mode (migration 0080): the first otherwise valid send of each sender in a slow
-- room claims their row, moving next_at forward only when the wait is over; the upsert
-- waits on a concurrent claim and sees its result, so two gateways cannot both pass.
slow_first AS (
    SELECT DISTINCT ON (c.room, c.sender) c.ord, c.room, c.sender, c.tenant, c.at, c.slow_secs
    FROM checked c
    WHERE c.slow_secs > 0 AND c.room_ok AND c.member AND c.prev_id IS NULL AND NOT c.blocked AND NOT c.muted
      AND c.reply_ok AND c.parent_state = 'ok' AND c.mention_state = 'ok'
    ORDER BY c.room, c.sender, c.ord
),
slow_claim AS (
    INSERT INTO room_slow_sends AS s (room_id, user_id, tenant_id, last_at, next_at)
    SELECT f.room, f.sender, f.tenant, f.at, f.at + make_interval(secs => f.slow_secs) FROM slow_first f
    ON CONFLICT (room_id, user_id) DO UPDATE SET last_at = EXCLUDED.last_at, next_at = EXCLUDED.next_at
        WHERE s.next_at <= EXCLUDED.last_at
    RETURNING s.room_id, s.user_id
),
slow_ok AS (
    SELECT f.ord FROM slow_first f JOIN slow_claim k ON k.room_id = f.room AND k.user_id = f.sender
),
/*}plain{ -- The light statement stores nothing when a send goes to a slow room: the
-- batch is then stored again with the full statement, whose slow-mode parts it needs. }*/
fresh AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.room ORDER BY c.ord) AS rn,
           count(*) OVER (PARTITION BY c.room) AS n
    FROM checked c WHERE c.room_ok AND c.member AND c.prev_id IS NULL AND NOT c.blocked AND c.reply_ok
                         AND c.parent_state = 'ok' AND c.mention_state = 'ok'
      AND NOT c.muted
      AND /*full{*/ (c.slow_secs = 0 OR c.ord IN (SELECT ord FROM slow_ok))
          /*}plain{ NOT EXISTS (SELECT 1 FROM checked x WHERE x.slow_room) }*/
),
bumped AS (
    UPDATE rooms r SET last_seq = r.last_seq + f.n
    FROM (SELECT DISTINCT room, n FROM fresh) f
    WHERE r.id = f.room
    RETURNING r.id AS room, r.last_seq
),
numbered AS (
    SELECT f.ord, f.room, f.sender, b.last_seq - f.n + f.rn AS seq
    FROM fresh f JOIN bumped b ON b.room = f.room
),
inserted AS (
    INSERT INTO messages (room_id, seq, id, sender_id, sender_name, content, meta, client_msg_id, created_at, tx,
                          kind, reply_to, attachments, parent_id, mentions, tsv, search_keys)
    SELECT f.room, n.seq, f.id, f.sender, f.sender_name, f.content, f.meta, f.client_id, f.at,
           pg_current_xact_id()::text::bigint, f.kind, f.reply_to, f.attachments, f.parent_id, f.mentions,
           v.tsv, k.keys
    FROM fresh f JOIN numbered n ON n.ord = f.ord
",
    search_columns!("f.tenant", "f.room", "f.content"),
    "    RETURNING 1
),
/*full{*/
-- Threads (issue 23): each parent's summary moves once per batch by its new replies
-- (participants: the parent's author, then repliers by their first reply), and the
-- parent counts as changed for sync.
thread_senders AS (
    SELECT f.parent_id, f.sender, min(f.ord) AS first_ord, count(*) AS n, max(f.at) AS last_at
    FROM fresh f WHERE f.parent_id IS NOT NULL GROUP BY f.parent_id, f.sender
),
threaded AS (
    UPDATE messages p SET
        reply_count = p.reply_count + t.n,
        last_reply_at = GREATEST(p.last_reply_at, t.last_at),
        thread_participants = coalesce(p.thread_participants, ARRAY[p.sender_id])
            || ARRAY(SELECT x.s FROM unnest(t.senders) WITH ORDINALITY AS x (s, o)
                     WHERE x.s <> ALL (coalesce(p.thread_participants, ARRAY[p.sender_id])) ORDER BY x.o),
        changed_tx = pg_current_xact_id()::text::bigint
    FROM (SELECT ts.parent_id, sum(ts.n)::int AS n, max(ts.last_at) AS last_at,
                 array_agg(ts.sender ORDER BY ts.first_ord) AS senders
          FROM thread_senders ts GROUP BY ts.parent_id) t
    WHERE p.id = t.parent_id
    RETURNING p.id AS thread_parent, p.seq AS thread_seq, p.reply_count AS thread_count,
              p.last_reply_at AS thread_last, p.thread_participants
),
/*}plain{ }*/
cursors AS (
    INSERT INTO room_cursors AS rc (room_id, user_id, delivered_seq, read_seq)
    SELECT n.room, n.sender, max(n.seq), max(n.seq) FROM numbered n GROUP BY n.room, n.sender
    ON CONFLICT (room_id, user_id) DO UPDATE SET
        delivered_seq = GREATEST(rc.delivered_seq, EXCLUDED.delivered_seq),
        read_seq = GREATEST(rc.read_seq, EXCLUDED.read_seq),
        updated_at = now()
    RETURNING 1
)
SELECT c.ord,
       CASE WHEN c.room_ok IS NOT TRUE THEN 'not_found' WHEN NOT c.member THEN 'forbidden'
            WHEN c.prev_id IS NOT NULL THEN 'duplicate'
            WHEN c.blocked THEN 'blocked' WHEN c.muted THEN 'muted' WHEN NOT c.reply_ok THEN 'bad_reply'
            WHEN c.parent_state <> 'ok' THEN 'parent_' || c.parent_state
            WHEN c.mention_state <> 'ok' THEN 'mention_' || c.mention_state
            /*full{*/ WHEN c.slow_secs > 0 AND n.seq IS NULL THEN 'slow' /*}plain{ WHEN n.seq IS NULL THEN 'again' }*/
            ELSE 'created' END
           AS outcome,
       -- Slow mode's wait, in whole seconds (at least 1).
       CASE WHEN c.slow_next > c.at THEN GREATEST(1, ceil(extract(epoch FROM c.slow_next - c.at)))::int
            ELSE GREATEST(1, c.slow_secs) END AS slow_wait,
       coalesce(n.seq, c.prev_seq, 0) AS seq, c.prev_id, c.prev_sender_name, c.prev_content, c.prev_meta,
       c.prev_created_at, c.prev_edited_at, c.prev_deleted_at, c.prev_kind, c.prev_reply_to, c.prev_attachments,
       c.prev_parent_id, c.prev_mentions, coalesce(c.prev_reply_count, 0) AS prev_reply_count, c.prev_last_reply_at,
       c.prev_thread_participants,
       /*full{*/ th.thread_seq, coalesce(th.thread_count, 0) AS thread_count, th.thread_last, th.thread_participants,
       /*}plain{ NULL::bigint AS thread_seq, 0 AS thread_count, NULL::timestamptz AS thread_last,
       NULL::text[] AS thread_participants, }*/
       pg_current_xact_id()::text::bigint AS tx
FROM checked c LEFT JOIN numbered n ON n.ord = c.ord
/*full{*/ LEFT JOIN threaded th ON n.seq IS NOT NULL AND th.thread_parent = c.parent_id /*}plain{ }*/"
);

/// [`SEND_BATCH`] for a batch with no thread reply and no mention (most batches): each
/// `/*full{*/ A /*}plain{ B }*/` of it replaced by `B`, so the thread and mention checks,
/// the thread summaries' update and slow mode's claims are not in the statement at all.
/// PostgreSQL sets up every node of a statement's plan on every execution, whether or
/// not a row reaches it; for a batch of one message that set-up was most of the
/// statement's cost. Whether a room is slow is the room's state, not the command's: when
/// a send of the batch goes to a slow room, this statement stores nothing (every send it
/// would have stored answers `again`) and the batch is stored with [`SEND_BATCH`].
pub static SEND_BATCH_LIGHT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| light(SEND_BATCH));

/// [`SEND_BATCH_LIGHT`] for a batch of one send (at low rates, nearly every batch):
/// scalar parameters `$1..$12` (tenant, room, sender, sender name, new message id,
/// content, meta, client id, arrival time, kind, replied-to message id, attachments)
/// instead of arrays, and no `unnest`, window functions, `DISTINCT` or joins between
/// the sends of a batch. The room is read once (its tenant, type and slow mode) instead
/// of once per check. Same checks, same outcomes in the same order, same result
/// columns as [`SEND_BATCH_LIGHT`]; a send to a slow room answers `again` and is stored
/// by [`SEND_BATCH`]. PostgreSQL builds every node of a plan on every execution, so for
/// one message the batch statements spent most of their time on nodes that had
/// nothing to do: measured back to back on one backend, 0.20–0.28 ms against 0.40–0.56
/// ms per send with its commit (BENCHMARKS.md, "A statement for a batch of one").
pub const SEND_ONE: &str = concat!(
    "
WITH c AS (
    SELECT r.tenant_id = $1 AS room_ok,
           coalesce((SELECT true FROM room_members mb WHERE mb.room_id = $2 AND mb.user_id = $3 LIMIT 1), false)
               AS member,
           CASE WHEN r.room_type = 'dm' THEN
               coalesce((SELECT true FROM room_members o
                         WHERE o.room_id = $2 AND o.user_id <> $3
                           AND coalesce((SELECT true FROM user_blocks b WHERE b.tenant_id = $1
                                         AND b.blocker_id = o.user_id AND b.blocked_id = $3 LIMIT 1), false)
                         LIMIT 1), false)
                ELSE false END AS blocked,
           coalesce((SELECT true FROM room_mutes mu WHERE mu.room_id = $2 AND mu.user_id = $3
                       AND (mu.expires_at IS NULL OR mu.expires_at > $9) LIMIT 1), false) AS muted,
           coalesce(r.slow_mode_secs > 0, false) AS slow_room,
           CASE WHEN $11::text IS NULL THEN true
                ELSE coalesce((SELECT q.room_id = $2 FROM messages q WHERE q.id = $11), false)
           END AS reply_ok,
",
    prev_columns!(),
    "    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (SELECT x.tenant_id, x.room_type, x.slow_mode_secs FROM rooms x WHERE x.id = $2 LIMIT 1) r
        ON true
    LEFT JOIN LATERAL (
        SELECT m.id, m.sender_name, m.seq, m.content, m.meta, m.created_at, m.edited_at, m.deleted_at, m.kind,
               m.reply_to, m.attachments, m.parent_id, m.mentions, m.reply_count, m.last_reply_at,
               m.thread_participants
        FROM messages m
        WHERE $8::text IS NOT NULL AND m.client_msg_id IS NOT NULL
          AND m.room_id = $2 AND m.sender_id = $3 AND m.client_msg_id = $8
        LIMIT 1
    ) prev ON true
),
bumped AS (
    UPDATE rooms r SET last_seq = r.last_seq + 1
    FROM c
    WHERE r.id = $2 AND c.room_ok AND c.member AND c.prev_id IS NULL AND NOT c.blocked AND NOT c.muted
      AND c.reply_ok AND NOT c.slow_room
    RETURNING r.last_seq
),
inserted AS (
    INSERT INTO messages (room_id, seq, id, sender_id, sender_name, content, meta, client_msg_id, created_at, tx,
                          kind, reply_to, attachments, tsv, search_keys)
    SELECT $2, b.last_seq, $5, $3, $4, $6, $7, $8, $9, pg_current_xact_id()::text::bigint, $10, $11, $12,
           v.tsv, k.keys
    FROM bumped b
",
    search_columns!("$1", "$2", "$6"),
    "    RETURNING 1
),
cursors AS (
    INSERT INTO room_cursors AS rc (room_id, user_id, delivered_seq, read_seq)
    SELECT $2, $3, b.last_seq, b.last_seq FROM bumped b
    ON CONFLICT (room_id, user_id) DO UPDATE SET
        delivered_seq = GREATEST(rc.delivered_seq, EXCLUDED.delivered_seq),
        read_seq = GREATEST(rc.read_seq, EXCLUDED.read_seq),
        updated_at = now()
    RETURNING 1
)
SELECT 1 AS ord,
       CASE WHEN c.room_ok IS NOT TRUE THEN 'not_found' WHEN NOT c.member THEN 'forbidden'
            WHEN c.prev_id IS NOT NULL THEN 'duplicate'
            WHEN c.blocked THEN 'blocked' WHEN c.muted THEN 'muted' WHEN NOT c.reply_ok THEN 'bad_reply'
            WHEN b.last_seq IS NULL THEN 'again'
            ELSE 'created' END
           AS outcome,
       1 AS slow_wait,
       coalesce(b.last_seq, c.prev_seq, 0) AS seq, c.prev_id, c.prev_sender_name, c.prev_content, c.prev_meta,
       c.prev_created_at, c.prev_edited_at, c.prev_deleted_at, c.prev_kind, c.prev_reply_to, c.prev_attachments,
       c.prev_parent_id, c.prev_mentions, coalesce(c.prev_reply_count, 0) AS prev_reply_count, c.prev_last_reply_at,
       c.prev_thread_participants,
       NULL::bigint AS thread_seq, 0 AS thread_count, NULL::timestamptz AS thread_last,
       NULL::text[] AS thread_participants,
       pg_current_xact_id()::text::bigint AS tx
FROM c LEFT JOIN bumped b ON true"
);

/// `sql` with each `/*full{*/ A /*}plain{ B }*/` replaced by `B`.
fn light(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find("/*full{*/") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let (Some(alt), Some(end)) = (after.find("/*}plain{"), after.find("}*/")) else {
            // Unbalanced markers: the full statement, which is always right.
            return sql.to_owned();
        };
        out.push_str(&after[alt + "/*}plain{".len()..end]);
        rest = &after[end + "}*/".len()..];
    }
    out.push_str(rest);
    out
}

/// One row of [`SEND_BATCH`].
#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Integer)]
    ord: i32,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    /// Slow mode's wait in seconds, for a `slow` outcome.
    #[diesel(sql_type = Integer)]
    slow_wait: i32,
    #[diesel(sql_type = Nullable<Text>)]
    prev_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    prev_sender_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    prev_content: Option<String>,
    /// Read leniently: one unreadable value must not fail the whole batch.
    #[diesel(sql_type = Nullable<Jsonb>)]
    prev_meta: Option<chat_pg::json::LenientJson>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    prev_created_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    prev_edited_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    prev_deleted_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    prev_kind: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    prev_reply_to: Option<String>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    prev_attachments: Option<chat_pg::json::LenientJson>,
    #[diesel(sql_type = Nullable<Text>)]
    prev_parent_id: Option<String>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    prev_mentions: Option<Vec<String>>,
    #[diesel(sql_type = Integer)]
    prev_reply_count: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    prev_last_reply_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    prev_thread_participants: Option<Vec<String>>,
    /// A new thread reply's parent after the batch: its `seq` and summary.
    #[diesel(sql_type = Nullable<BigInt>)]
    thread_seq: Option<i64>,
    #[diesel(sql_type = Integer)]
    thread_count: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    thread_last: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    thread_participants: Option<Vec<String>>,
    #[diesel(sql_type = BigInt)]
    tx: i64,
}

/// Stores a batch of messages with one statement ([`SEND_ONE`] for a single plain
/// send, [`SEND_BATCH_LIGHT`] for a batch without thread replies or mentions,
/// [`SEND_BATCH`] otherwise, and when the lighter ones met a slow room), in its own
/// transaction: when this returns, the batch is committed (the rows are read to the
/// end, which comes after the commit). Results are in the order of `cmds`. A send
/// repeating an earlier one of the same batch (same room, sender and client id) gets
/// that one's message as a duplicate.
pub async fn send_batch(
    conn: &mut AsyncPgConnection,
    cmds: &[(SendMessage, DateTime<Utc>)],
) -> Result<Stored, StoreError> {
    // Repeats within the batch are answered from their first send, in Rust.
    let mut first_of: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut repeats: Vec<Option<usize>> = Vec::with_capacity(cmds.len());
    let mut unique = Vec::with_capacity(cmds.len());
    for (i, (cmd, _)) in cmds.iter().enumerate() {
        let key = cmd.client_msg_id.as_deref().map(|c| (cmd.room_id.as_str(), cmd.actor.user_id.as_str(), c));
        match key.and_then(|k| first_of.get(&k).copied()) {
            Some(first) => repeats.push(Some(first)),
            None => {
                if let Some(k) = key {
                    first_of.insert(k, i);
                }
                repeats.push(None);
                unique.push(i);
            }
        }
    }
    let n = unique.len();
    let mut tenants = Vec::with_capacity(n);
    let mut rooms = Vec::with_capacity(n);
    let mut senders = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut contents = Vec::with_capacity(n);
    let mut metas = Vec::with_capacity(n);
    let mut client_ids = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut replies = Vec::with_capacity(n);
    let mut files = Vec::with_capacity(n);
    let mut parents = Vec::with_capacity(n);
    let mut mentions = Vec::with_capacity(n);
    for &i in &unique {
        let (cmd, at) = &cmds[i];
        tenants.push(cmd.actor.tenant_id.as_str());
        rooms.push(cmd.room_id.as_str());
        senders.push(cmd.actor.user_id.as_str());
        names.push(stored_sender_name(cmd));
        ids.push(MessageId::generate());
        contents.push(cmd.content.as_str());
        metas.push(cmd.meta.as_ref());
        client_ids.push(cmd.client_msg_id.as_deref());
        times.push(*at);
        kinds.push(cmd.kind.as_str());
        replies.push(cmd.reply_to.as_ref().map(MessageId::as_str));
        files.push(attachments_json(&cmd.attachments));
        parents.push(cmd.parent_id.as_ref().map(MessageId::as_str));
        mentions.push(mentions_json(&cmd.mentions));
    }
    let id_strs: Vec<&str> = ids.iter().map(MessageId::as_str).collect();
    // Replies and mentions are rare: a batch without them runs the lighter statement,
    // which also leaves out slow mode: when one of its sends goes to a slow room it
    // stores nothing (each otherwise valid send answers `again`), and the batch is
    // stored with the full statement instead.
    let use_light = unique.iter().all(|&i| cmds[i].0.parent_id.is_none() && cmds[i].0.mentions.is_empty());
    macro_rules! run {
        ($sql:expr) => {
            prepared(
                diesel::sql_query($sql)
                    .bind::<Array<Text>, _>(&tenants)
                    .bind::<Array<Text>, _>(&rooms)
                    .bind::<Array<Text>, _>(&senders)
                    .bind::<Array<Nullable<Text>>, _>(&names)
                    .bind::<Array<Text>, _>(&id_strs)
                    .bind::<Array<Text>, _>(&contents)
                    .bind::<Array<Nullable<Jsonb>>, _>(&metas)
                    .bind::<Array<Nullable<Text>>, _>(&client_ids)
                    .bind::<Array<Timestamptz>, _>(&times)
                    .bind::<Array<Text>, _>(&kinds)
                    .bind::<Array<Nullable<Text>>, _>(&replies)
                    .bind::<Array<Nullable<Jsonb>>, _>(&files)
                    .bind::<Array<Nullable<Text>>, _>(&parents)
                    .bind::<Array<Nullable<Jsonb>>, _>(&mentions),
            )
            .load::<Row>(conn)
            .await?
        };
    }
    let mut rows: Vec<Row> = match (use_light, n) {
        // One send: its own statement, with scalar parameters.
        (true, 1) => {
            prepared(
                diesel::sql_query(SEND_ONE)
                    .bind::<Text, _>(tenants[0])
                    .bind::<Text, _>(rooms[0])
                    .bind::<Text, _>(senders[0])
                    .bind::<Nullable<Text>, _>(&names[0])
                    .bind::<Text, _>(id_strs[0])
                    .bind::<Text, _>(contents[0])
                    .bind::<Nullable<Jsonb>, _>(metas[0])
                    .bind::<Nullable<Text>, _>(client_ids[0])
                    .bind::<Timestamptz, _>(times[0])
                    .bind::<Text, _>(kinds[0])
                    .bind::<Nullable<Text>, _>(replies[0])
                    .bind::<Nullable<Jsonb>, _>(&files[0]),
            )
            .load::<Row>(conn)
            .await?
        }
        (true, _) => run!(SEND_BATCH_LIGHT.as_str()),
        (false, _) => run!(SEND_BATCH),
    };
    if use_light && rows.iter().any(|r| r.outcome == "again") {
        rows = run!(SEND_BATCH);
    }
    if rows.len() != n {
        return Err(StoreError::Corrupt(format!("the send statement answered {} rows for {n}", rows.len())));
    }
    let tx = <[Row]>::first(&rows).map_or(0, |r| r.tx);
    // The unique sends' results, by their input position.
    let mut by_input: Vec<Option<Result<Sent, StoreError>>> = (0..cmds.len()).map(|_| None).collect();
    let mut threads: Vec<ThreadChange> = Vec::new();
    for mut row in rows {
        let thread = (row.thread_seq, row.thread_count, row.thread_last, row.thread_participants.take());
        let k = usize::try_from(row.ord).ok().and_then(|o| o.checked_sub(1)).filter(|k| *k < n);
        let Some(k) = k else {
            return Err(StoreError::Corrupt(format!("the send statement answered position {}", row.ord)));
        };
        let i = unique[k];
        let (cmd, at) = &cmds[i];
        by_input[i] = Some(match row.outcome.as_str() {
            "not_found" => Err(StoreError::Api(ApiError::not_found("Room not found"))),
            "forbidden" => Err(StoreError::Api(ApiError::forbidden("You are not a member of this room"))),
            "duplicate" => earlier(cmd, row).map(Sent::Duplicate),
            "blocked" => Err(StoreError::Api(ApiError::forbidden(chat_domain::proto::blocks::BLOCKED_MESSAGE))),
            // Room moderation (migration 0080).
            "muted" => Err(StoreError::Api(ApiError::muted(chat_domain::proto::moderation::MUTED_MESSAGE))),
            "slow" => Err(StoreError::Api(ApiError::slow_mode(u64::try_from(row.slow_wait).unwrap_or(1)))),
            "bad_reply" => Err(StoreError::Api(ApiError::validation(
                "reply_to",
                "The message replied to is not a message of this room",
            ))),
            "parent_room" => Err(StoreError::Api(ApiError::validation("parent_id", threads::PARENT_NOT_IN_ROOM))),
            "parent_deleted" => Err(StoreError::Api(ApiError::validation("parent_id", threads::PARENT_DELETED))),
            "parent_nested" => Err(StoreError::Api(ApiError::validation("parent_id", threads::NESTED_THREAD))),
            "mention_channel" => Err(StoreError::Api(ApiError::forbidden(threads::CHANNEL_NOT_ADMIN))),
            "mention_member" => Err(StoreError::Api(ApiError::validation("mentions", threads::MENTION_NOT_MEMBER))),
            "again" => Err(StoreError::Corrupt("the send statement left a valid send unstored".to_owned())),
            _ => Ok(Sent::New(Message {
                message_id: ids[k].clone(),
                room_id: cmd.room_id.clone(),
                sender_id: cmd.actor.user_id.clone(),
                sender_name: names[k].clone(),
                seq: row.seq,
                content: cmd.content.as_str().to_owned(),
                meta: cmd.meta.clone(),
                client_msg_id: cmd.client_msg_id.clone(),
                created_at: *at,
                edited_at: None,
                deleted_at: None,
                kind: cmd.kind,
                reply_to: cmd.reply_to.clone(),
                attachments: cmd.attachments.clone(),
                parent_id: cmd.parent_id.clone(),
                thread: None,
                mentions: cmd.mentions.clone(),
                reactions: Vec::new(),
                pinned_at: None,
                pinned_by: None,
            })),
        });
        if let (Some(parent), (Some(seq), count, last, participants)) = (&cmd.parent_id, thread)
            && !threads.iter().any(|t| t.update.message_id == *parent)
        {
            threads.push(ThreadChange {
                tenant: cmd.actor.tenant_id.clone(),
                room: cmd.room_id.clone(),
                at: *at,
                update: ThreadUpdated {
                    message_id: parent.clone(),
                    seq,
                    thread: thread_summary(count, last, participants)?,
                },
            });
        }
    }
    // Repeats first (they copy their first send's result), then the sends themselves.
    let copies: Vec<Option<Result<Sent, StoreError>>> = repeats
        .iter()
        .map(|repeat| {
            repeat.map(|first| match &by_input[first] {
                Some(Ok(Sent::New(m) | Sent::Duplicate(m))) => Ok(Sent::Duplicate(m.clone())),
                Some(Err(StoreError::Api(e))) => Err(StoreError::Api(e.clone())),
                Some(Err(_)) => Err(StoreError::Api(ApiError::internal())),
                None => Err(StoreError::Corrupt("a repeated send has no first".to_owned())),
            })
        })
        .collect();
    let results = copies
        .into_iter()
        .zip(by_input)
        .map(|(copy, own)| copy.or(own).unwrap_or_else(|| Err(StoreError::Corrupt("a send has no result".to_owned()))))
        .collect();
    Ok(Stored { results, tx, threads })
}

/// A send's mentions as the statement takes them: a JSON array, NULL for none.
fn mentions_json(mentions: &[UserId]) -> Option<serde_json::Value> {
    if mentions.is_empty() { None } else { serde_json::to_value(mentions).ok() }
}

/// The stored message a duplicate send gets back.
fn earlier(cmd: &SendMessage, row: Row) -> Result<Message, StoreError> {
    let missing = || StoreError::Corrupt("a duplicate without its message".to_owned());
    Ok(Message {
        message_id: crate::error::stored(MessageId::parse(row.prev_id.ok_or_else(missing)?))?,
        room_id: cmd.room_id.clone(),
        sender_id: cmd.actor.user_id.clone(),
        sender_name: row.prev_sender_name,
        seq: row.seq,
        content: row.prev_content.ok_or_else(missing)?,
        meta: row.prev_meta.map(|m| m.into_inner()).filter(|m| !m.is_null()),
        client_msg_id: cmd.client_msg_id.clone(),
        created_at: row.prev_created_at.ok_or_else(missing)?,
        edited_at: row.prev_edited_at,
        deleted_at: row.prev_deleted_at,
        kind: message_kind(row.prev_kind.as_deref().unwrap_or("text"))?,
        reply_to: crate::error::stored(row.prev_reply_to.map(MessageId::parse).transpose())?,
        attachments: attachments(row.prev_attachments.map(|a| a.into_inner()))?,
        parent_id: crate::error::stored(row.prev_parent_id.map(MessageId::parse).transpose())?,
        thread: thread_summary(row.prev_reply_count, row.prev_last_reply_at, row.prev_thread_participants)?,
        mentions: user_ids(row.prev_mentions)?,
        reactions: Vec::new(),
        pinned_at: None,
        pinned_by: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_light_statement_leaves_out_threads_and_mentions_and_keeps_the_rest() {
        let light: &str = &SEND_BATCH_LIGHT;
        for gone in [
            "/*full{*/",
            "plain{",
            "threaded",
            "thread_senders",
            "jsonb_array_elements_text",
            "p.parent_id",
            "slow_claim",
            "room_slow_sends",
        ] {
            assert!(!light.contains(gone), "{gone:?} is still in the light statement:\n{light}");
        }
        for kept in
            ["room_mutes", "INSERT INTO messages", "room_cursors", "'ok' AS parent_state", "x.slow_room", "'again'"]
        {
            assert!(light.contains(kept), "{kept:?} is missing from the light statement:\n{light}");
        }
        // The full statement is the text as written: its alternatives are comments.
        assert!(SEND_BATCH.contains("threaded AS (") && SEND_BATCH.contains("slow_claim AS ("));
        assert!(!SEND_BATCH.contains("slow_room") || SEND_BATCH.contains("/*}plain{ 0 AS slow_secs"));
    }

    #[test]
    fn alternatives_are_replaced_in_order_and_unbalanced_markers_keep_the_full_text() {
        assert_eq!(light("a /*full{*/ b /*}plain{ c }*/ d /*full{*/e/*}plain{f}*/"), "a  c  d f");
        assert_eq!(light("a /*full{*/ b"), "a /*full{*/ b");
    }
}
