//! Mentions: a member named in a message's `mentions` (or every member, for
//! `@channel`) who has no socket open in the room when the pass reads the message gets
//! one inbox entry and one webhook of kind `mention` for that message, at once: it is
//! never folded into the coalesced windows (`close` leaves a member's mentions out of
//! what they missed).
//!
//! The pass reads mentioning messages with each feed page ([`FeedPage::mentions`]) and
//! writes their entries before the page's cursor moves; entries are keyed
//! `mention:<message id>` per user, so a page read again writes nothing twice.
//!
//! Inbox entry body: `{"room_id","topic":"mention","message_id","seq","mentioned_by",
//! "payload":{"title","content","action_url"}}`. Webhook body: `{"type":"mention",
//! "user_id","mentioned_by","room_id","message_id","seq","channel","message"}` (the
//! whole message; `channel`: mentioned through `@channel`), to which the delivery worker
//! adds `delivery_id`, `tenant_id` and `attempt`.
//!
//! [`FeedPage::mentions`]: chat_domain::proto::store::FeedPage::mentions

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use chat_domain::ids::{DeliveryId, TenantId, UserId};
use chat_domain::model::{MENTION_CHANNEL, Message};
use chat_domain::proto::presence::GetOnline;
use chat_domain::proto::store::{FeedMention, GetWebhook, RoomAudiences, RoomRef};
use chat_pg::prepared;
use diesel::QueryableByName;
use diesel::sql_types::{Array, Jsonb, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::{Value, json};

use crate::State;

/// Whether `m` mentions `user` (by name, or through `@channel`), so that they were
/// notified of it on its own.
pub fn mentions(m: &Message, user: &UserId) -> bool {
    m.sender_id != *user && m.mentions.iter().any(|u| u == user || u.as_str() == MENTION_CHANNEL)
}

/// One entry to write.
struct Entry<'a> {
    tenant: &'a TenantId,
    user: UserId,
    message: &'a Message,
    channel: bool,
}

impl Entry<'_> {
    fn key(&self) -> String {
        format!("mention:{}", self.message.message_id)
    }

    fn inbox(&self) -> Value {
        let m = self.message;
        let by = m.sender_name.as_deref().unwrap_or(m.sender_id.as_str());
        json!({
            "room_id": m.room_id,
            "topic": "mention",
            "message_id": m.message_id,
            "seq": m.seq,
            "mentioned_by": m.sender_id,
            "payload": {
                "title": format!("{by} mentioned you"),
                "content": m.content,
                "action_url": format!("/rooms/{}", m.room_id),
            },
        })
    }

    fn webhook(&self) -> Value {
        let m = self.message;
        json!({
            "type": "mention",
            "user_id": self.user,
            "mentioned_by": m.sender_id,
            "room_id": m.room_id,
            "message_id": m.message_id,
            "seq": m.seq,
            "channel": self.channel,
            "message": m,
        })
    }
}

/// Notifies the offline members mentioned by `found` (a feed page's mentions).
pub async fn notify(state: &State, found: &[FeedMention]) -> anyhow::Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    let rooms: BTreeSet<RoomRef> =
        found.iter().map(|f| RoomRef { tenant_id: f.tenant_id.clone(), room_id: f.message.room_id.clone() }).collect();
    // Members (mentions of people who left since are dropped) and who is online now.
    let audiences: BTreeMap<RoomRef, BTreeSet<UserId>> = state
        .bus
        .request(&RoomAudiences { rooms: rooms.iter().cloned().collect() })
        .await
        .context("asking message-store for the mentioning rooms' members")?
        .into_iter()
        .map(|a| (RoomRef { tenant_id: a.tenant_id, room_id: a.room_id }, a.members.into_iter().collect()))
        .collect();
    let mut online: BTreeMap<&RoomRef, BTreeSet<UserId>> = BTreeMap::new();
    for room in &rooms {
        let ask = GetOnline { tenant_id: room.tenant_id.clone(), room_id: room.room_id.clone() };
        let now = state.bus.request(&ask).await.context("asking presence who is online")?;
        online.insert(room, now.online_users.into_iter().collect());
    }
    let mut entries: Vec<Entry> = Vec::new();
    for f in found {
        let room = RoomRef { tenant_id: f.tenant_id.clone(), room_id: f.message.room_id.clone() };
        let (Some(members), Some(here)) = (audiences.get(&room), online.get(&room)) else { continue };
        let channel = f.message.mentions.iter().any(|u| u.as_str() == MENTION_CHANNEL);
        let named: BTreeSet<&UserId> = f.message.mentions.iter().filter(|u| u.as_str() != MENTION_CHANNEL).collect();
        for user in members {
            let mentioned = channel || named.contains(user);
            if mentioned && *user != f.message.sender_id && !here.contains(user) {
                entries.push(Entry { tenant: &f.tenant_id, user: user.clone(), message: &f.message, channel });
            }
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    let tenants: BTreeSet<&TenantId> = entries.iter().map(|e| e.tenant).collect();
    let mut hooked = BTreeSet::new();
    for t in tenants {
        let hook = state.bus.request(&GetWebhook { tenant_id: t.clone() }).await.context("reading a webhook")?;
        if hook.url.is_some() {
            hooked.insert(t.clone());
        }
    }
    let queued = write(state, &entries, &hooked).await?;
    crate::deliveries::queue_recorded(state, &queued).await;
    crate::metrics::MENTIONS_NOTIFIED.inc_by(entries.len() as u64);
    Ok(())
}

/// Writes the entries and their webhooks (once each: keyed by message and user).
async fn write(state: &State, entries: &[Entry<'_>], hooked: &BTreeSet<TenantId>) -> anyhow::Result<Vec<DeliveryId>> {
    let tenants: Vec<&str> = entries.iter().map(|e| e.tenant.as_str()).collect();
    let users: Vec<&str> = entries.iter().map(|e| e.user.as_str()).collect();
    let keys: Vec<String> = entries.iter().map(Entry::key).collect();
    let bodies: Vec<Value> = entries.iter().map(Entry::inbox).collect();
    let times: Vec<chrono::DateTime<chrono::Utc>> = entries.iter().map(|e| e.message.created_at).collect();
    let hooks: Vec<&Entry> = entries.iter().filter(|e| hooked.contains(e.tenant)).collect();
    let hook_ids: Vec<String> = hooks.iter().map(|_| DeliveryId::generate().to_string()).collect();
    let hook_tenants: Vec<&str> = hooks.iter().map(|e| e.tenant.as_str()).collect();
    let hook_keys: Vec<String> = hooks.iter().map(|e| e.key()).collect();
    let hook_users: Vec<&str> = hooks.iter().map(|e| e.user.as_str()).collect();
    let hook_rooms: Vec<&str> = hooks.iter().map(|e| e.message.room_id.as_str()).collect();
    let hook_bodies: Vec<Value> = hooks.iter().map(|e| e.webhook()).collect();
    #[derive(QueryableByName)]
    struct Recorded {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let mut conn = state.pool.get().await.context("database")?;
    let recorded: Vec<Recorded> = conn
        .transaction(async |conn| -> anyhow::Result<Vec<Recorded>> {
            prepared(
                diesel::sql_query(
                    "INSERT INTO notification.inbox (tenant_id, user_id, item_id, kind, body, created_at)
                     SELECT t, u, k, 'mention', b, c
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[])
                         AS x (t, u, k, b, c)
                     ON CONFLICT DO NOTHING",
                )
                .bind::<Array<Text>, _>(&tenants)
                .bind::<Array<Text>, _>(&users)
                .bind::<Array<Text>, _>(&keys)
                .bind::<Array<Jsonb>, _>(&bodies)
                .bind::<Array<Timestamptz>, _>(&times),
            )
            .execute(conn)
            .await
            .context("writing mention inbox entries")?;
            if hook_ids.is_empty() {
                return Ok(Vec::new());
            }
            prepared(
                diesel::sql_query(
                    "INSERT INTO notification.deliveries (id, tenant_id, kind, ref_id, user_id, room_id, body, queued)
                     SELECT i, t, 'mention', k, u, r, b, false
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
                         AS x (i, t, k, u, r, b)
                     ON CONFLICT DO NOTHING
                     RETURNING id",
                )
                .bind::<Array<Text>, _>(&hook_ids)
                .bind::<Array<Text>, _>(&hook_tenants)
                .bind::<Array<Text>, _>(&hook_keys)
                .bind::<Array<Text>, _>(&hook_users)
                .bind::<Array<Text>, _>(&hook_rooms)
                .bind::<Array<Jsonb>, _>(&hook_bodies),
            )
            .load(conn)
            .await
            .context("recording mention webhook deliveries")
        })
        .await?;
    recorded.into_iter().map(|r| DeliveryId::parse(r.id).context("recorded delivery id")).collect()
}
