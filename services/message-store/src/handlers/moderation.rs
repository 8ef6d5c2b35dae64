//! Room moderation (migration 0080): bans and mutes (`restrict`, `unrestrict`,
//! `list_restrictions`), role changes, room settings (slow mode), flags and the
//! moderation log. Each action checks the actor's role against the permission table
//! (`MemberRole::rank`: a role acts on lower ranks only) and writes its log row in the
//! same transaction. Sends are checked in the send statement (`send_batch.rs`); typing
//! asks [`check_speak`].

use chat_domain::ApiError;
use chat_domain::ids::{MessageId, RoomId, TenantId, UserId};
use chat_domain::model::{Member, MemberRole, RoomType};
use chat_domain::proto::Done;
use chat_domain::proto::events::{MemberRemoved, ModerationChange, RoomEvent, RoomEventBody};
use chat_domain::proto::moderation::{
    BANNED_MESSAGE, CheckSpeak, Flag, FlagList, FlagMessage, GetRoomSettings, Lifted, ListFlags, ListRestrictions,
    LogEntry, LogPage, MAX_LIST, MAX_REASON_CHARS, MAX_SLOW_MODE_SECS, MUTED_MESSAGE, ResolveFlag, Restrict,
    Restriction, RestrictionKind, RestrictionList, RoomModerationLog, RoomSettings, SetMemberRole, TenantFlags,
    TenantModerationLog, Unrestrict, UpdateRoomSettings,
};
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{Store, access};
use crate::error::{StoreError, optional, stored};
use crate::outbox;
use crate::rows::MemberRow;

/// One action for the moderation log.
pub(super) struct Action<'a> {
    pub tenant: &'a TenantId,
    pub room: &'a RoomId,
    pub actor: &'a UserId,
    pub action: &'static str,
    pub target: Option<&'a UserId>,
    pub message: Option<&'a MessageId>,
    pub reason: Option<&'a str>,
    pub detail: Option<serde_json::Value>,
}

/// Writes `action` to the moderation log (inside the action's own transaction).
pub(super) async fn log(conn: &mut AsyncPgConnection, action: Action<'_>) -> Result<(), StoreError> {
    diesel::sql_query(
        "INSERT INTO moderation_log (id, tenant_id, room_id, actor_id, action, target_user_id, message_id, reason, detail)
         VALUES ('mod_' || replace(gen_random_uuid()::text, '-', ''), $1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind::<Text, _>(action.tenant.as_str())
    .bind::<Text, _>(action.room.as_str())
    .bind::<Text, _>(action.actor.as_str())
    .bind::<Text, _>(action.action)
    .bind::<Nullable<Text>, _>(action.target.map(UserId::as_str))
    .bind::<Nullable<Text>, _>(action.message.map(MessageId::as_str))
    .bind::<Nullable<Text>, _>(action.reason)
    .bind::<Nullable<Jsonb>, _>(action.detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the room's `moderation` event to the outbox (published after the commit).
async fn announce(
    conn: &mut AsyncPgConnection,
    subjects: &chat_bus::Subjects,
    tenant: &TenantId,
    room: &RoomId,
    change: ModerationChange,
) -> Result<outbox::Pending, StoreError> {
    let event = RoomEvent::new(tenant, room, chat_domain::time::now(), RoomEventBody::Moderation(change));
    outbox::insert(conn, subjects, &event).await
}

/// A member's role in a room (`None`: not a member).
pub(super) async fn role_of(
    conn: &mut AsyncPgConnection,
    room: &RoomId,
    user: &UserId,
) -> Result<Option<MemberRole>, StoreError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        role: String,
    }
    let row: Option<Row> = optional(
        diesel::sql_query("SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2")
            .bind::<Text, _>(room.as_str())
            .bind::<Text, _>(user.as_str())
            .get_result(conn)
            .await,
    )?;
    row.map(|r| stored(MemberRole::parse(&r.role))).transpose()
}

/// `FORBIDDEN` unless `actor` outranks `target` (a role acts on lower ranks only).
pub(super) fn outranks(actor: MemberRole, target: Option<MemberRole>, what: &str) -> Result<(), ApiError> {
    match target {
        Some(t) if t.rank() >= actor.rank() => {
            Err(ApiError::forbidden(format!("You cannot {what} a member whose role is {} or higher", actor.as_str())))
        }
        _ => Ok(()),
    }
}

/// `FORBIDDEN` unless `actor` may give `role`: only roles below its own; `owner` is never
/// given (`VALIDATION_ERROR` on `role`).
pub(super) fn may_grant(actor: MemberRole, role: MemberRole) -> Result<(), ApiError> {
    if role == MemberRole::Owner {
        // A request that can never succeed: the room's creator is its one owner.
        return Err(ApiError::validation(
            "role",
            "The owner role cannot be given. Must be one of: admin, moderator, member",
        ));
    }
    if role.rank() >= actor.rank() {
        return Err(ApiError::forbidden(format!("A room {} can give the roles below its own only", actor.as_str())));
    }
    Ok(())
}

/// `BANNED` when `user` has a ban in force in `room`.
pub(super) async fn not_banned(conn: &mut AsyncPgConnection, room: &RoomId, user: &UserId) -> Result<(), StoreError> {
    if in_force(conn, RestrictionKind::Ban, room, user).await? {
        return Err(ApiError::banned(BANNED_MESSAGE).into());
    }
    Ok(())
}

fn table(kind: RestrictionKind) -> &'static str {
    match kind {
        RestrictionKind::Ban => "room_bans",
        RestrictionKind::Mute => "room_mutes",
    }
}

async fn in_force(
    conn: &mut AsyncPgConnection,
    kind: RestrictionKind,
    room: &RoomId,
    user: &UserId,
) -> Result<bool, StoreError> {
    #[derive(QueryableByName)]
    struct Hit {
        #[diesel(sql_type = Integer)]
        #[allow(dead_code)]
        one: i32,
    }
    let hit: Vec<Hit> = diesel::sql_query(format!(
        "SELECT 1 AS one FROM {} WHERE room_id = $1 AND user_id = $2 AND (expires_at IS NULL OR expires_at > now())",
        table(kind)
    ))
    .bind::<Text, _>(room.as_str())
    .bind::<Text, _>(user.as_str())
    .load(conn)
    .await?;
    Ok(!hit.is_empty())
}

fn check_reason(field: &str, reason: Option<&str>) -> Result<(), ApiError> {
    match reason {
        Some(r) if r.chars().count() > MAX_REASON_CHARS => {
            Err(ApiError::validation(field, format!("{field} must be at most {MAX_REASON_CHARS} characters")))
        }
        _ => Ok(()),
    }
}

#[derive(QueryableByName)]
struct RestrictionRow {
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Text)]
    created_by: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

impl TryFrom<RestrictionRow> for Restriction {
    type Error = StoreError;
    fn try_from(r: RestrictionRow) -> Result<Self, StoreError> {
        Ok(Restriction {
            room_id: stored(RoomId::parse(r.room_id))?,
            user_id: stored(UserId::parse(r.user_id))?,
            reason: r.reason,
            expires_at: r.expires_at,
            created_by: stored(UserId::parse(r.created_by))?,
            created_at: r.created_at,
        })
    }
}

const RESTRICTION_COLUMNS: &str = "room_id, user_id, reason, expires_at, created_by, created_at";

pub async fn restrict(store: Store, cmd: Restrict) -> Result<Restriction, ApiError> {
    check_reason("reason", cmd.reason.as_deref())?;
    let now = chat_domain::time::now();
    if cmd.expires_at.is_some_and(|t| t <= now) {
        return Err(ApiError::validation("expires_at", "expires_at must be in the future"));
    }
    if cmd.user_id == cmd.actor.user_id {
        return Err(ApiError::validation("user_id", format!("You cannot {} yourself", cmd.kind.as_str())));
    }
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (restriction, pending) = conn
        .transaction(async move |conn| -> Result<(Restriction, Vec<outbox::Pending>), StoreError> {
            let room = access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?;
            let role = room.member()?;
            if room.room_type == RoomType::Dm {
                return Err(ApiError::forbidden("Nobody can be banned or muted in a DM").into());
            }
            if !role.is_moderator() {
                return Err(ApiError::forbidden("Only room moderators, admins and the owner can ban or mute").into());
            }
            let target = role_of(conn, &cmd.room_id, &cmd.user_id).await?;
            outranks(role, target, cmd.kind.as_str())?;
            let row: RestrictionRow = diesel::sql_query(format!(
                "INSERT INTO {table} (room_id, user_id, tenant_id, reason, expires_at, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET reason = EXCLUDED.reason,
                     expires_at = EXCLUDED.expires_at, created_by = EXCLUDED.created_by,
                     created_at = EXCLUDED.created_at
                 RETURNING {RESTRICTION_COLUMNS}",
                table = table(cmd.kind)
            ))
            .bind::<Text, _>(cmd.room_id.as_str())
            .bind::<Text, _>(cmd.user_id.as_str())
            .bind::<Text, _>(cmd.actor.tenant_id.as_str())
            .bind::<Nullable<Text>, _>(cmd.reason.as_deref())
            .bind::<Nullable<Timestamptz>, _>(cmd.expires_at)
            .bind::<Text, _>(cmd.actor.user_id.as_str())
            .bind::<Timestamptz, _>(now)
            .get_result(conn)
            .await?;
            // A ban removes the member: their sockets in the room close on every gateway
            // when `member.removed` arrives (the fan-out kicks a removed user's sockets).
            let mut pending = vec![
                announce(
                    conn,
                    &subjects,
                    &cmd.actor.tenant_id,
                    &cmd.room_id,
                    ModerationChange {
                        action: cmd.kind.as_str().to_owned(),
                        actor_id: cmd.actor.user_id.clone(),
                        user_id: Some(cmd.user_id.clone()),
                        reason: cmd.reason.clone(),
                        expires_at: cmd.expires_at,
                        role: None,
                        slow_mode_secs: None,
                    },
                )
                .await?,
            ];
            if cmd.kind == RestrictionKind::Ban && target.is_some() {
                diesel::sql_query("DELETE FROM room_members WHERE room_id = $1 AND user_id = $2")
                    .bind::<Text, _>(cmd.room_id.as_str())
                    .bind::<Text, _>(cmd.user_id.as_str())
                    .execute(conn)
                    .await?;
                let event = RoomEvent::new(
                    &cmd.actor.tenant_id,
                    &cmd.room_id,
                    now,
                    RoomEventBody::MemberRemoved(MemberRemoved {
                        user_id: cmd.user_id.clone(),
                        removed_by: cmd.actor.user_id.clone(),
                    }),
                );
                pending.push(outbox::insert(conn, &subjects, &event).await?);
            }
            log(
                conn,
                Action {
                    tenant: &cmd.actor.tenant_id,
                    room: &cmd.room_id,
                    actor: &cmd.actor.user_id,
                    action: cmd.kind.as_str(),
                    target: Some(&cmd.user_id),
                    message: None,
                    reason: cmd.reason.as_deref(),
                    detail: Some(serde_json::json!({
                        "expires_at": cmd.expires_at.map(|t| chat_domain::time::format(&t)),
                        "was_member": target.is_some(),
                    })),
                },
            )
            .await?;
            Ok((Restriction::try_from(row)?, pending))
        })
        .await?;
    db.publisher.submit(pending);
    Ok(restriction)
}

pub async fn unrestrict(store: Store, cmd: Unrestrict) -> Result<Lifted, ApiError> {
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (lifted, pending) = conn
        .transaction(async move |conn| -> Result<(Lifted, Option<outbox::Pending>), StoreError> {
            let role = access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
            if !role.is_moderator() {
                return Err(
                    ApiError::forbidden("Only room moderators, admins and the owner can lift a ban or mute").into()
                );
            }
            #[derive(QueryableByName)]
            struct Gone {
                #[diesel(sql_type = diesel::sql_types::Bool)]
                in_force: bool,
            }
            let gone: Vec<Gone> = diesel::sql_query(format!(
                "DELETE FROM {} WHERE room_id = $1 AND user_id = $2
                 RETURNING (expires_at IS NULL OR expires_at > now()) AS in_force",
                table(cmd.kind)
            ))
            .bind::<Text, _>(cmd.room_id.as_str())
            .bind::<Text, _>(cmd.user_id.as_str())
            .load(conn)
            .await?;
            let removed = gone.iter().any(|g| g.in_force);
            let mut pending = None;
            if removed {
                let action = match cmd.kind {
                    RestrictionKind::Ban => "unban",
                    RestrictionKind::Mute => "unmute",
                };
                log(
                    conn,
                    Action {
                        tenant: &cmd.actor.tenant_id,
                        room: &cmd.room_id,
                        actor: &cmd.actor.user_id,
                        action,
                        target: Some(&cmd.user_id),
                        message: None,
                        reason: None,
                        detail: None,
                    },
                )
                .await?;
                let change = ModerationChange {
                    action: action.to_owned(),
                    actor_id: cmd.actor.user_id.clone(),
                    user_id: Some(cmd.user_id.clone()),
                    reason: None,
                    expires_at: None,
                    role: None,
                    slow_mode_secs: None,
                };
                pending = Some(announce(conn, &subjects, &cmd.actor.tenant_id, &cmd.room_id, change).await?);
            }
            Ok((Lifted { removed }, pending))
        })
        .await?;
    db.publisher.submit(pending.into_iter().collect());
    Ok(lifted)
}

pub async fn list_restrictions(store: Store, cmd: ListRestrictions) -> Result<RestrictionList, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let role = access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    if !role.is_moderator() {
        return Err(ApiError::forbidden("Only room moderators, admins and the owner can list bans and mutes"));
    }
    let rows: Vec<RestrictionRow> = diesel::sql_query(format!(
        "SELECT {RESTRICTION_COLUMNS} FROM {} WHERE room_id = $1 AND (expires_at IS NULL OR expires_at > now())
         ORDER BY created_at DESC, user_id LIMIT 1000",
        table(cmd.kind)
    ))
    .bind::<Text, _>(cmd.room_id.as_str())
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(RestrictionList { items: rows.into_iter().map(Restriction::try_from).collect::<Result<_, _>>()? })
}

pub async fn set_member_role(store: Store, cmd: SetMemberRole) -> Result<Member, ApiError> {
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (member, pending) = conn
        .transaction(async move |conn| -> Result<(Member, Option<outbox::Pending>), StoreError> {
            let room = access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?;
            let role = room.member()?;
            if room.room_type == RoomType::Dm {
                return Err(ApiError::forbidden("The roles of a DM cannot change").into());
            }
            if !role.is_admin() {
                return Err(ApiError::forbidden("Only room admins and the owner can change roles").into());
            }
            let Some(before) = role_of(conn, &cmd.room_id, &cmd.user_id).await? else {
                return Err(ApiError::not_found("That user is not a member of this room").into());
            };
            outranks(role, Some(before), "change the role of")?;
            may_grant(role, cmd.role)?;
            let row: MemberRow = diesel::sql_query(
                "UPDATE room_members SET role = $3 WHERE room_id = $1 AND user_id = $2
                 RETURNING user_id, role, joined_at",
            )
            .bind::<Text, _>(cmd.room_id.as_str())
            .bind::<Text, _>(cmd.user_id.as_str())
            .bind::<Text, _>(cmd.role.as_str())
            .get_result(conn)
            .await?;
            let mut pending = None;
            if before != cmd.role {
                let change = ModerationChange {
                    action: "role".to_owned(),
                    actor_id: cmd.actor.user_id.clone(),
                    user_id: Some(cmd.user_id.clone()),
                    reason: None,
                    expires_at: None,
                    role: Some(cmd.role),
                    slow_mode_secs: None,
                };
                pending = Some(announce(conn, &subjects, &cmd.actor.tenant_id, &cmd.room_id, change).await?);
                log(
                    conn,
                    Action {
                        tenant: &cmd.actor.tenant_id,
                        room: &cmd.room_id,
                        actor: &cmd.actor.user_id,
                        action: "role",
                        target: Some(&cmd.user_id),
                        message: None,
                        reason: None,
                        detail: Some(serde_json::json!({"from": before.as_str(), "to": cmd.role.as_str()})),
                    },
                )
                .await?;
            }
            Ok((Member::try_from(row)?, pending))
        })
        .await?;
    db.publisher.submit(pending.into_iter().collect());
    Ok(member)
}

async fn settings_of(conn: &mut AsyncPgConnection, room: &RoomId) -> Result<RoomSettings, StoreError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Integer)]
        slow_mode_secs: i32,
    }
    let row: Row = diesel::sql_query("SELECT slow_mode_secs FROM rooms WHERE id = $1")
        .bind::<Text, _>(room.as_str())
        .get_result(conn)
        .await?;
    Ok(RoomSettings { slow_mode_secs: u32::try_from(row.slow_mode_secs).unwrap_or(0) })
}

pub async fn get_room_settings(store: Store, cmd: GetRoomSettings) -> Result<RoomSettings, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    Ok(settings_of(&mut conn, &cmd.room_id).await?)
}

pub async fn update_room_settings(store: Store, cmd: UpdateRoomSettings) -> Result<RoomSettings, ApiError> {
    if cmd.slow_mode_secs.is_some_and(|s| s > MAX_SLOW_MODE_SECS) {
        return Err(ApiError::validation(
            "slow_mode_secs",
            format!("slow_mode_secs must be an integer from 0 to {MAX_SLOW_MODE_SECS}"),
        ));
    }
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (settings, pending) = conn
        .transaction(async move |conn| -> Result<(RoomSettings, Option<outbox::Pending>), StoreError> {
            let role = access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
            if !role.is_admin() {
                return Err(ApiError::forbidden("Only room admins and the owner can change the room's settings").into());
            }
            let before = settings_of(conn, &cmd.room_id).await?;
            let Some(secs) = cmd.slow_mode_secs.filter(|s| *s != before.slow_mode_secs) else {
                return Ok((before, None));
            };
            diesel::sql_query("UPDATE rooms SET slow_mode_secs = $2 WHERE id = $1")
                .bind::<Text, _>(cmd.room_id.as_str())
                .bind::<Integer, _>(i32::try_from(secs).unwrap_or(i32::MAX))
                .execute(conn)
                .await?;
            log(
                conn,
                Action {
                    tenant: &cmd.actor.tenant_id,
                    room: &cmd.room_id,
                    actor: &cmd.actor.user_id,
                    action: "settings",
                    target: None,
                    message: None,
                    reason: None,
                    detail: Some(serde_json::json!({"slow_mode_secs": {"from": before.slow_mode_secs, "to": secs}})),
                },
            )
            .await?;
            let change = ModerationChange {
                action: "settings".to_owned(),
                actor_id: cmd.actor.user_id.clone(),
                user_id: None,
                reason: None,
                expires_at: None,
                role: None,
                slow_mode_secs: Some(secs),
            };
            let pending = announce(conn, &subjects, &cmd.actor.tenant_id, &cmd.room_id, change).await?;
            Ok((RoomSettings { slow_mode_secs: secs }, Some(pending)))
        })
        .await?;
    db.publisher.submit(pending.into_iter().collect());
    Ok(settings)
}

pub async fn check_speak(store: Store, cmd: CheckSpeak) -> Result<Done, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    // The primary: a mute made a moment ago holds at once, as it does for sends.
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    if in_force(&mut conn, RestrictionKind::Mute, &cmd.room_id, &cmd.actor.user_id).await? {
        return Err(ApiError::muted(MUTED_MESSAGE));
    }
    Ok(Done {})
}

#[derive(QueryableByName)]
struct FlagRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = Text)]
    message_id: String,
    #[diesel(sql_type = Text)]
    sender_id: String,
    #[diesel(sql_type = Text)]
    flagged_by: String,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    resolved_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    resolved_by: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    resolution: Option<String>,
}

const FLAG_COLUMNS: &str =
    "id, room_id, message_id, sender_id, flagged_by, reason, created_at, resolved_at, resolved_by, resolution";

impl TryFrom<FlagRow> for Flag {
    type Error = StoreError;
    fn try_from(r: FlagRow) -> Result<Self, StoreError> {
        Ok(Flag {
            flag_id: r.id,
            room_id: stored(RoomId::parse(r.room_id))?,
            message_id: stored(MessageId::parse(r.message_id))?,
            sender_id: stored(UserId::parse(r.sender_id))?,
            flagged_by: stored(UserId::parse(r.flagged_by))?,
            reason: r.reason,
            created_at: r.created_at,
            resolved_at: r.resolved_at,
            resolved_by: r.resolved_by.map(|u| stored(UserId::parse(u))).transpose()?,
            resolution: r.resolution,
        })
    }
}

pub async fn flag_message(store: Store, cmd: FlagMessage) -> Result<Flag, ApiError> {
    if cmd.reason.trim().is_empty() {
        return Err(ApiError::validation("reason", "reason is required"));
    }
    check_reason("reason", Some(&cmd.reason))?;
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let flag = conn
        .transaction(async move |conn| -> Result<Flag, StoreError> {
            access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
            let inserted: Option<FlagRow> = optional(
                diesel::sql_query(format!(
                    "INSERT INTO message_flags (id, tenant_id, room_id, message_id, sender_id, flagged_by, reason)
                     SELECT 'flag_' || replace(gen_random_uuid()::text, '-', ''), $1, m.room_id, m.id, m.sender_id,
                            $3, $4
                     FROM messages m WHERE m.id = $2 AND m.room_id = $5 AND m.deleted_at IS NULL
                     ON CONFLICT (message_id, flagged_by) DO NOTHING
                     RETURNING {FLAG_COLUMNS}"
                ))
                .bind::<Text, _>(cmd.actor.tenant_id.as_str())
                .bind::<Text, _>(cmd.message_id.as_str())
                .bind::<Text, _>(cmd.actor.user_id.as_str())
                .bind::<Text, _>(cmd.reason.as_str())
                .bind::<Text, _>(cmd.room_id.as_str())
                .get_result(conn)
                .await,
            )?;
            let row = match inserted {
                Some(row) => row,
                None => {
                    // Flagged before (the first flag stands), or no such live message.
                    let earlier: Option<FlagRow> = optional(
                        diesel::sql_query(format!(
                            "SELECT {FLAG_COLUMNS} FROM message_flags
                             WHERE message_id = $1 AND flagged_by = $2 AND room_id = $3"
                        ))
                        .bind::<Text, _>(cmd.message_id.as_str())
                        .bind::<Text, _>(cmd.actor.user_id.as_str())
                        .bind::<Text, _>(cmd.room_id.as_str())
                        .get_result(conn)
                        .await,
                    )?;
                    return match earlier {
                        Some(row) => Flag::try_from(row),
                        None => Err(ApiError::not_found("Message not found").into()),
                    };
                }
            };
            let flag = Flag::try_from(row)?;
            log(
                conn,
                Action {
                    tenant: &cmd.actor.tenant_id,
                    room: &cmd.room_id,
                    actor: &cmd.actor.user_id,
                    action: "flag",
                    target: Some(&flag.sender_id),
                    message: Some(&flag.message_id),
                    reason: Some(&flag.reason),
                    detail: Some(serde_json::json!({"flag_id": flag.flag_id})),
                },
            )
            .await?;
            Ok(flag)
        })
        .await?;
    Ok(flag)
}

pub async fn list_flags(store: Store, cmd: ListFlags) -> Result<FlagList, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    let role = access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    if !role.is_moderator() {
        return Err(ApiError::forbidden("Only room moderators, admins and the owner can see flags"));
    }
    let rows: Vec<FlagRow> = diesel::sql_query(format!(
        "SELECT {FLAG_COLUMNS} FROM message_flags WHERE room_id = $1 AND (NOT $2 OR resolved_at IS NULL)
         ORDER BY created_at DESC, id LIMIT $3 OFFSET $4"
    ))
    .bind::<Text, _>(cmd.room_id.as_str())
    .bind::<diesel::sql_types::Bool, _>(cmd.open_only)
    .bind::<BigInt, _>(i64::from(cmd.limit.clamp(1, MAX_LIST)))
    .bind::<BigInt, _>(i64::from(cmd.offset))
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(FlagList { flags: rows.into_iter().map(Flag::try_from).collect::<Result<_, _>>()? })
}

pub async fn resolve_flag(store: Store, cmd: ResolveFlag) -> Result<Flag, ApiError> {
    check_reason("resolution", cmd.resolution.as_deref())?;
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let flag = conn
        .transaction(async move |conn| -> Result<Flag, StoreError> {
            let role = access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
            if !role.is_moderator() {
                return Err(ApiError::forbidden("Only room moderators, admins and the owner can resolve flags").into());
            }
            let updated: Option<FlagRow> = optional(
                diesel::sql_query(format!(
                    "UPDATE message_flags SET resolved_at = now(), resolved_by = $3, resolution = $4
                     WHERE id = $1 AND room_id = $2 AND resolved_at IS NULL RETURNING {FLAG_COLUMNS}"
                ))
                .bind::<Text, _>(cmd.flag_id.as_str())
                .bind::<Text, _>(cmd.room_id.as_str())
                .bind::<Text, _>(cmd.actor.user_id.as_str())
                .bind::<Nullable<Text>, _>(cmd.resolution.as_deref())
                .get_result(conn)
                .await,
            )?;
            let Some(row) = updated else {
                let earlier: Option<FlagRow> = optional(
                    diesel::sql_query(format!(
                        "SELECT {FLAG_COLUMNS} FROM message_flags WHERE id = $1 AND room_id = $2"
                    ))
                    .bind::<Text, _>(cmd.flag_id.as_str())
                    .bind::<Text, _>(cmd.room_id.as_str())
                    .get_result(conn)
                    .await,
                )?;
                return match earlier {
                    Some(row) => Flag::try_from(row),
                    None => Err(ApiError::not_found("Flag not found").into()),
                };
            };
            let flag = Flag::try_from(row)?;
            log(
                conn,
                Action {
                    tenant: &cmd.actor.tenant_id,
                    room: &cmd.room_id,
                    actor: &cmd.actor.user_id,
                    action: "resolve_flag",
                    target: Some(&flag.sender_id),
                    message: Some(&flag.message_id),
                    reason: cmd.resolution.as_deref(),
                    detail: Some(serde_json::json!({"flag_id": flag.flag_id})),
                },
            )
            .await?;
            Ok(flag)
        })
        .await?;
    Ok(flag)
}

pub async fn tenant_flags(store: Store, cmd: TenantFlags) -> Result<FlagList, ApiError> {
    let db = store.db(&cmd.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    let rows: Vec<FlagRow> = diesel::sql_query(format!(
        "SELECT {FLAG_COLUMNS} FROM message_flags WHERE tenant_id = $1 AND (NOT $2 OR resolved_at IS NULL)
         ORDER BY created_at DESC, id LIMIT $3 OFFSET $4"
    ))
    .bind::<Text, _>(cmd.tenant_id.as_str())
    .bind::<diesel::sql_types::Bool, _>(cmd.open_only)
    .bind::<BigInt, _>(i64::from(cmd.limit.clamp(1, MAX_LIST)))
    .bind::<BigInt, _>(i64::from(cmd.offset))
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(FlagList { flags: rows.into_iter().map(Flag::try_from).collect::<Result<_, _>>()? })
}

#[derive(QueryableByName)]
struct LogRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = Text)]
    actor_id: String,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Nullable<Text>)]
    target_user_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    message_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    detail: Option<serde_json::Value>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

const LOG_COLUMNS: &str = "id, room_id, actor_id, action, target_user_id, message_id, reason, detail, created_at";

impl TryFrom<LogRow> for LogEntry {
    type Error = StoreError;
    fn try_from(r: LogRow) -> Result<Self, StoreError> {
        Ok(LogEntry {
            entry_id: r.id,
            room_id: stored(RoomId::parse(r.room_id))?,
            actor_id: stored(UserId::parse(r.actor_id))?,
            action: r.action,
            target_user_id: r.target_user_id.map(|u| stored(UserId::parse(u))).transpose()?,
            message_id: r.message_id.map(|m| stored(MessageId::parse(m))).transpose()?,
            reason: r.reason,
            detail: r.detail,
            created_at: r.created_at,
        })
    }
}

pub async fn room_moderation_log(store: Store, cmd: RoomModerationLog) -> Result<LogPage, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    let role = access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    if !role.is_admin() {
        return Err(ApiError::forbidden("Only room admins and the owner can read the moderation log"));
    }
    let rows: Vec<LogRow> = diesel::sql_query(format!(
        "SELECT {LOG_COLUMNS} FROM moderation_log WHERE room_id = $1
         ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
    ))
    .bind::<Text, _>(cmd.room_id.as_str())
    .bind::<BigInt, _>(i64::from(cmd.limit.clamp(1, MAX_LIST)))
    .bind::<BigInt, _>(i64::from(cmd.offset))
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(LogPage { entries: rows.into_iter().map(LogEntry::try_from).collect::<Result<_, _>>()? })
}

pub async fn tenant_moderation_log(store: Store, cmd: TenantModerationLog) -> Result<LogPage, ApiError> {
    let db = store.db(&cmd.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    let rows: Vec<LogRow> = diesel::sql_query(format!(
        "SELECT {LOG_COLUMNS} FROM moderation_log WHERE tenant_id = $1
         ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
    ))
    .bind::<Text, _>(cmd.tenant_id.as_str())
    .bind::<BigInt, _>(i64::from(cmd.limit.clamp(1, MAX_LIST)))
    .bind::<BigInt, _>(i64::from(cmd.offset))
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(LogPage { entries: rows.into_iter().map(LogEntry::try_from).collect::<Result<_, _>>()? })
}
