//! `sync`: what changed in every room of a user since a token (migration 0031), in one
//! call.
//!
//! A token holds a transaction boundary: `pg_snapshot_xmin` when it was issued (every
//! transaction below it had ended, so no later commit can add a change below it). A
//! sync reads, in one repeatable-read snapshot, the changes written by transactions in
//! `[token boundary, boundary now)` — new messages (`messages.tx`), edits and deletions
//! (`messages.changed_tx`), cursors, joins and departures — and returns the boundary
//! now as the next token. Each change lies in exactly one such window: none is
//! returned twice, none is skipped, whatever commits during the sync.
//!
//! Like history, a sync leaves out the messages of the senders the caller hides (blocks
//! with `hide_in_groups`, read in the same snapshot): they are neither new nor updated,
//! and `has_more`, `from_seq` and the counts behind them are of what the caller sees,
//! so paging the rest with history (which hides the same senders) fills the gap exactly.
//!
//! The token is signed with the tenant's token secret (HMAC-SHA256) over the tenant,
//! user, cluster, boundary and issue time, so its size does not grow with the number of
//! rooms and a client can neither forge one nor use another user's.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, UserId};
use chat_domain::model::{Actor, Member, Message, Room};
use chat_domain::proto::sync::{
    MAX_LIMIT_PER_ROOM, MAX_TOKEN_LEN, MemberCursor, RoomChanges, SyncChanges, SyncReply, TOKEN_TTL_DAYS,
};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Store;
use crate::error::{StoreError, stored};
use crate::rows::{MemberRow, MessageRow, RoomRow};

type HmacSha256 = Hmac<Sha256>;

/// The token format's version, first in its payload.
const VERSION: &str = "s1";

fn bad_token(why: &str) -> ApiError {
    ApiError::validation("since", format!("since is not a usable sync token ({why}); sync again without since"))
}

/// The signed token of `boundary` for `actor` on `cluster`.
fn sign(secret: &str, actor: &Actor, cluster: &str, boundary: i64, issued: i64) -> Result<String, ApiError> {
    let payload = format!("{VERSION}\n{}\n{}\n{cluster}\n{boundary}\n{issued}", actor.tenant_id, actor.user_id);
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| ApiError::internal())?;
    mac.update(payload.as_bytes());
    let tag = mac.finalize().into_bytes();
    Ok(format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag)))
}

/// The boundary of a token this tenant's secret signed for `actor` on `cluster`.
fn verify(secret: &str, token: &str, actor: &Actor, cluster: &str, now: i64) -> Result<i64, ApiError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(bad_token("too long"));
    }
    let (payload, tag) = token.split_once('.').ok_or_else(|| bad_token("malformed"))?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad_token("malformed"))?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| bad_token("malformed"))?;
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| ApiError::internal())?;
    mac.update(&payload);
    // Also what a token signed before the tenant's key was rotated meets.
    mac.verify_slice(&tag).map_err(|_| bad_token("altered, or issued before the tenant's key was rotated"))?;
    let payload = String::from_utf8(payload).map_err(|_| bad_token("malformed"))?;
    let parts: Vec<&str> = payload.split('\n').collect();
    let [version, tenant, user, token_cluster, boundary, issued] = parts[..] else {
        return Err(bad_token("malformed"));
    };
    if version != VERSION {
        return Err(bad_token("an older format"));
    }
    if tenant != actor.tenant_id.as_str() || user != actor.user_id.as_str() {
        return Err(bad_token("issued to another user"));
    }
    if token_cluster != cluster {
        return Err(bad_token("issued before the tenant's data moved"));
    }
    let issued: i64 = issued.parse().map_err(|_| bad_token("malformed"))?;
    if now.saturating_sub(issued) > TOKEN_TTL_DAYS * 24 * 3600 {
        return Err(bad_token("expired"));
    }
    boundary.parse().map_err(|_| bad_token("malformed"))
}

/// The columns of [`MessageRow`] on `m`.
const M: &str = "m.id, m.room_id, m.sender_id, m.sender_name, m.seq, m.content, m.meta, m.client_msg_id, \
                 m.created_at, m.edited_at, m.deleted_at, m.kind, m.reply_to, m.attachments,
                m.parent_id, m.reply_count, m.last_reply_at, m.thread_participants, m.mentions";

#[derive(QueryableByName)]
struct RoomOf {
    #[diesel(embed)]
    room: RoomRow,
    #[diesel(sql_type = Bool)]
    joined: bool,
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(embed)]
    message: MessageRow,
    #[diesel(sql_type = BigInt)]
    total: i64,
    /// The lowest `seq` of the room's new messages (all of them, not only those returned).
    #[diesel(sql_type = BigInt)]
    first_seq: i64,
}

#[derive(QueryableByName)]
struct CursorRow {
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    delivered_seq: i64,
    #[diesel(sql_type = BigInt)]
    read_seq: i64,
}

#[derive(QueryableByName)]
struct MemberOf {
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(embed)]
    member: MemberRow,
}

#[derive(QueryableByName)]
struct Departure {
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = Text)]
    user_id: String,
}

#[derive(QueryableByName)]
struct Hidden {
    #[diesel(sql_type = Text)]
    blocked_id: String,
}

#[derive(QueryableByName)]
struct Boundary {
    #[diesel(sql_type = BigInt)]
    boundary: i64,
}

#[derive(QueryableByName)]
struct Secret {
    #[diesel(sql_type = Text)]
    token_secret: String,
}

pub async fn sync(store: Store, cmd: SyncChanges) -> Result<SyncReply, ApiError> {
    let limit = i64::from(cmd.limit_per_room.clamp(1, MAX_LIMIT_PER_ROOM));
    let secret: Secret = {
        let mut home = store.home().pool.get().await.map_err(StoreError::from)?;
        diesel::sql_query("SELECT token_secret FROM tenants WHERE id = $1")
            .bind::<Text, _>(cmd.actor.tenant_id.as_str())
            .get_result(&mut home)
            .await
            .map_err(StoreError::from)?
    };
    let db = store.db(&cmd.actor.tenant_id).await?;
    let now = chat_domain::time::now().timestamp();
    let since = cmd.since.as_deref().map(|t| verify(&secret.token_secret, t, &cmd.actor, &db.name, now)).transpose()?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let actor = cmd.actor.clone();
    let (boundary, rooms, left) = conn
        .build_transaction()
        .repeatable_read()
        .read_only()
        .run(async move |conn| -> Result<(i64, Vec<RoomChanges>, Vec<RoomId>), StoreError> {
            changes(conn, &actor, since, limit).await
        })
        .await?;
    let token = sign(&secret.token_secret, &cmd.actor, &db.name, boundary, now)?;
    Ok(SyncReply { token, rooms, left })
}

/// Everything of [`sync`] inside its snapshot.
async fn changes(
    conn: &mut AsyncPgConnection,
    actor: &Actor,
    since: Option<i64>,
    limit: i64,
) -> Result<(i64, Vec<RoomChanges>, Vec<RoomId>), StoreError> {
    let (t, u) = (actor.tenant_id.as_str(), actor.user_id.as_str());
    let now: Boundary = diesel::sql_query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS boundary")
        .get_result(conn)
        .await?;
    let to = now.boundary;
    let from = since.unwrap_or(0);
    if from > to {
        return Err(bad_token("from the future").into());
    }
    // The caller's rooms; one they joined in a transaction past the boundary waits for
    // the next sync (where it is `joined`).
    let rooms: Vec<RoomOf> = diesel::sql_query(
        "SELECT r.id, r.room_type, r.name, r.unique_key, r.last_seq,
                r.member_count,
                r.created_by, r.created_at, (m.tx IS NOT NULL AND m.tx >= $3) AS joined
         FROM room_members m JOIN rooms r ON r.id = m.room_id AND r.tenant_id = $1
         WHERE m.tenant_id = $1 AND m.user_id = $2 AND (m.tx IS NULL OR m.tx < $4)
         ORDER BY r.id",
    )
    .bind::<Text, _>(t)
    .bind::<Text, _>(u)
    .bind::<BigInt, _>(from)
    .bind::<BigInt, _>(to)
    .load(conn)
    .await?;
    let ids: Vec<&str> = rooms.iter().map(|r| r.room.id.as_str()).collect();
    let fresh = since.is_none();
    // The senders the caller hides, read once and bound as a list: the planner then
    // knows it (an empty one changes nothing), where a subquery's unknown array of
    // senders can look selective enough to read whole rooms instead of their newest
    // messages.
    let hidden: Vec<String> = diesel::sql_query(
        "SELECT blocked_id FROM user_blocks WHERE tenant_id = $1 AND blocker_id = $2 AND hide_in_groups",
    )
    .bind::<Text, _>(t)
    .bind::<Text, _>(u)
    .load::<Hidden>(conn)
    .await?
    .into_iter()
    .map(|h| h.blocked_id)
    .collect();

    let new: Vec<Counted> = if fresh {
        diesel::sql_query(format!(
            "SELECT {M}, n.total, 1::bigint AS first_seq FROM unnest($1::text[]) AS r(id)
             CROSS JOIN LATERAL (SELECT count(*) AS total FROM (
                 SELECT 1 FROM messages x WHERE x.room_id = r.id AND (x.tx IS NULL OR x.tx < $2)
                   AND x.sender_id <> ALL ($4)
                 ORDER BY x.seq DESC LIMIT $3 + 1) c) n
             CROSS JOIN LATERAL (SELECT * FROM messages x WHERE x.room_id = r.id AND (x.tx IS NULL OR x.tx < $2)
                                   AND x.sender_id <> ALL ($4)
                                 ORDER BY x.seq DESC LIMIT $3) m
             ORDER BY m.room_id, m.seq"
        ))
        .bind::<Array<Text>, _>(&ids)
        .bind::<BigInt, _>(to)
        .bind::<BigInt, _>(limit)
        .bind::<Array<Text>, _>(&hidden)
        .load(conn)
        .await?
    } else {
        diesel::sql_query(format!(
            "SELECT {M}, m.total, m.first_seq FROM (
                 SELECT x.*, row_number() OVER (PARTITION BY x.room_id ORDER BY x.seq DESC) AS rn,
                        count(*) OVER (PARTITION BY x.room_id) AS total,
                        min(x.seq) OVER (PARTITION BY x.room_id) AS first_seq
                 FROM messages x WHERE x.room_id = ANY ($1) AND x.tx >= $2 AND x.tx < $3
                   AND x.sender_id <> ALL ($5)) m
             WHERE m.rn <= $4 ORDER BY m.room_id, m.seq"
        ))
        .bind::<Array<Text>, _>(&ids)
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .bind::<BigInt, _>(limit)
        .bind::<Array<Text>, _>(&hidden)
        .load(conn)
        .await?
    };
    let updated: Vec<Counted> = if fresh {
        Vec::new()
    } else {
        diesel::sql_query(format!(
            "SELECT {M}, m.total, 0::bigint AS first_seq FROM (
                 SELECT x.*, row_number() OVER (PARTITION BY x.room_id ORDER BY x.seq DESC) AS rn,
                        count(*) OVER (PARTITION BY x.room_id) AS total
                 FROM messages x WHERE x.room_id = ANY ($1) AND x.changed_tx >= $2 AND x.changed_tx < $3
                   AND NOT (x.tx IS NOT NULL AND x.tx >= $2 AND x.tx < $3) AND x.sender_id <> ALL ($5)) m
             WHERE m.rn <= $4 ORDER BY m.room_id, m.seq"
        ))
        .bind::<Array<Text>, _>(&ids)
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .bind::<BigInt, _>(limit)
        .bind::<Array<Text>, _>(&hidden)
        .load(conn)
        .await?
    };
    let cursors: Vec<CursorRow> = if fresh {
        diesel::sql_query(
            "SELECT room_id, user_id, delivered_seq, read_seq FROM room_cursors
             WHERE room_id = ANY ($1) AND user_id = $2 ORDER BY room_id",
        )
        .bind::<Array<Text>, _>(&ids)
        .bind::<Text, _>(u)
        .load(conn)
        .await?
    } else {
        diesel::sql_query(
            "SELECT room_id, user_id, delivered_seq, read_seq FROM room_cursors
             WHERE room_id = ANY ($1) AND tx >= $2 AND tx < $3 ORDER BY room_id, user_id",
        )
        .bind::<Array<Text>, _>(&ids)
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .load(conn)
        .await?
    };
    let (added, removed, left): (Vec<MemberOf>, Vec<Departure>, Vec<Departure>) = if fresh {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        let added = diesel::sql_query(
            "SELECT room_id, user_id, role, joined_at FROM room_members
             WHERE room_id = ANY ($1) AND tx >= $2 AND tx < $3 ORDER BY room_id, joined_at, user_id",
        )
        .bind::<Array<Text>, _>(&ids)
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .load(conn)
        .await?;
        let removed = diesel::sql_query(
            "SELECT d.room_id, d.user_id FROM room_departures d
             WHERE d.room_id = ANY ($1) AND d.tx >= $2 AND d.tx < $3
               AND NOT EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = d.room_id AND m.user_id = d.user_id)
             ORDER BY d.room_id, d.user_id",
        )
        .bind::<Array<Text>, _>(&ids)
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .load(conn)
        .await?;
        let left = diesel::sql_query(
            "SELECT d.room_id, d.user_id FROM room_departures d
             WHERE d.tenant_id = $1 AND d.user_id = $2 AND d.tx >= $3 AND d.tx < $4
               AND NOT EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = d.room_id AND m.user_id = d.user_id)
             ORDER BY d.room_id",
        )
        .bind::<Text, _>(t)
        .bind::<Text, _>(u)
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .load(conn)
        .await?;
        (added, removed, left)
    };

    // Assemble per room, in room id order.
    let mut out: BTreeMap<String, RoomChanges> = BTreeMap::new();
    for r in rooms {
        let id = r.room.id.clone();
        let last_seq = r.room.last_seq;
        out.insert(
            id,
            RoomChanges {
                room: Room::try_from(r.room)?,
                joined: r.joined || fresh,
                messages: Vec::new(),
                has_more: false,
                // Nothing new unless messages below say otherwise.
                from_seq: if fresh { 0 } else { last_seq },
                updated: Vec::new(),
                updated_has_more: false,
                cursors: Vec::new(),
                members_added: Vec::new(),
                members_removed: Vec::new(),
            },
        );
    }
    for c in new {
        if let Some(room) = out.get_mut(&c.message.room_id) {
            room.has_more = c.total > limit;
            room.from_seq = c.first_seq - 1;
            room.messages.push(Message::try_from(c.message)?);
        }
    }
    for c in updated {
        if let Some(room) = out.get_mut(&c.message.room_id) {
            room.updated_has_more = c.total > limit;
            room.updated.push(Message::try_from(c.message)?);
        }
    }
    for c in cursors {
        if let Some(room) = out.get_mut(&c.room_id) {
            room.cursors.push(MemberCursor {
                user_id: stored(UserId::parse(c.user_id))?,
                delivered_seq: c.delivered_seq,
                read_seq: c.read_seq,
            });
        }
    }
    for a in added {
        if let Some(room) = out.get_mut(&a.room_id) {
            room.members_added.push(Member::try_from(a.member)?);
        }
    }
    for d in removed {
        if let Some(room) = out.get_mut(&d.room_id) {
            room.members_removed.push(stored(UserId::parse(d.user_id))?);
        }
    }
    // Reactions and pins as the caller sees them, in the same snapshot, for every
    // room's messages in one go.
    let mut all: Vec<Message> = Vec::new();
    let mut sizes = Vec::with_capacity(out.len());
    for room in out.values_mut() {
        sizes.push((room.messages.len(), room.updated.len()));
        all.append(&mut room.messages);
        all.append(&mut room.updated);
    }
    super::reactions::decorate(conn, &mut all, Some(&actor.user_id)).await?;
    let mut all = all.into_iter();
    for (room, (new, updated)) in out.values_mut().zip(sizes) {
        room.messages = all.by_ref().take(new).collect();
        room.updated = all.by_ref().take(updated).collect();
    }
    let rooms = out
        .into_values()
        .filter(|r| {
            r.joined
                || !r.messages.is_empty()
                || !r.updated.is_empty()
                || !r.cursors.is_empty()
                || !r.members_added.is_empty()
                || !r.members_removed.is_empty()
        })
        .collect();
    let left = left.into_iter().map(|d| stored(RoomId::parse(d.room_id))).collect::<Result<Vec<_>, _>>()?;
    Ok((to, rooms, left))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::ids::TenantId;

    fn actor(u: &str) -> Result<Actor, Box<dyn std::error::Error>> {
        Ok(Actor { tenant_id: TenantId::parse("ten_a")?, user_id: UserId::parse(u)? })
    }

    #[test]
    fn tokens_verify_only_untouched_for_their_user_and_cluster() -> Result<(), Box<dyn std::error::Error>> {
        let (alice, bob) = (actor("alice")?, actor("bob")?);
        let token = sign("secret", &alice, "main", 1234, 1_000)?;
        assert_eq!(verify("secret", &token, &alice, "main", 1_000).ok(), Some(1234));
        assert!(verify("other", &token, &alice, "main", 1_000).is_err(), "rotated key");
        assert!(verify("secret", &token, &bob, "main", 1_000).is_err(), "another user");
        assert!(verify("secret", &token, &alice, "east", 1_000).is_err(), "moved tenant");
        assert!(verify("secret", &token, &alice, "main", 1_000 + 31 * 86_400).is_err(), "expired");
        // Flip one character of the payload: the tag no longer matches.
        let mut forged = token.clone().into_bytes();
        forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
        assert!(verify("secret", &String::from_utf8(forged)?, &alice, "main", 1_000).is_err());
        assert!(verify("secret", "garbage", &alice, "main", 1_000).is_err());
        assert!(token.len() < 200, "bounded: {}", token.len());
        Ok(())
    }
}
