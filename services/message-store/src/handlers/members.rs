//! Room membership: list, add, remove (roles and bans checked against the moderation
//! rules of `moderation`). Changes go out as `member.added` /
//! `member.removed` events through the outbox.

use chat_domain::ApiError;
use chat_domain::ids::UserId;
use chat_domain::model::{Member, RoomType};
use chat_domain::proto::Done;
use chat_domain::proto::events::{MemberRemoved, RoomEvent, RoomEventBody};
use chat_domain::proto::store::{AddMember, Audience, ListMembers, MemberAdded, RemoveMember};
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{Store, access, moderation};
use crate::error::{StoreError, optional};
use crate::outbox;
use crate::rows::MemberRow;

pub async fn list_members(store: Store, cmd: ListMembers) -> Result<Vec<Member>, ApiError> {
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
    let rows: Vec<MemberRow> = diesel::sql_query(
        "SELECT user_id, role, joined_at FROM room_members WHERE room_id = $1
         ORDER BY joined_at, user_id LIMIT $2 OFFSET $3",
    )
    .bind::<Text, _>(cmd.room_id.as_str())
    .bind::<BigInt, _>(i64::from(cmd.limit))
    .bind::<BigInt, _>(i64::from(cmd.offset))
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(rows.into_iter().map(Member::try_from).collect::<Result<_, _>>()?)
}

pub async fn add_member(store: Store, cmd: AddMember) -> Result<MemberAdded, ApiError> {
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let (added, pending) = conn
        .transaction(async move |conn| -> Result<(MemberAdded, Option<outbox::Pending>), StoreError> {
            let room = access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?;
            let role = room.member()?;
            if !role.is_admin() {
                return Err(ApiError::forbidden("Only room admins and the owner can add members").into());
            }
            if room.room_type == RoomType::Dm {
                return Err(ApiError::forbidden("The members of a DM cannot change").into());
            }
            // Roles below the adder's own only; nobody banned (moderation, migration 0080).
            moderation::may_grant(role, cmd.role)?;
            moderation::not_banned(conn, &cmd.room_id, &cmd.user_id).await?;
            let inserted: Option<MemberRow> = optional(
                diesel::sql_query(
                    "INSERT INTO room_members (room_id, user_id, tenant_id, role) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (room_id, user_id) DO NOTHING RETURNING user_id, role, joined_at",
                )
                .bind::<Text, _>(cmd.room_id.as_str())
                .bind::<Text, _>(cmd.user_id.as_str())
                .bind::<Text, _>(cmd.actor.tenant_id.as_str())
                .bind::<Text, _>(cmd.role.as_str())
                .get_result(conn)
                .await,
            )?;
            match inserted {
                Some(row) => {
                    let member = Member::try_from(row)?;
                    let event = RoomEvent::new(
                        &cmd.actor.tenant_id,
                        &cmd.room_id,
                        member.joined_at,
                        RoomEventBody::MemberAdded(member.clone()),
                    );
                    let pending = outbox::insert(conn, &subjects, &event).await?;
                    Ok((MemberAdded { member, created: true }, Some(pending)))
                }
                None => {
                    let row: MemberRow = diesel::sql_query(
                        "SELECT user_id, role, joined_at FROM room_members WHERE room_id = $1 AND user_id = $2",
                    )
                    .bind::<Text, _>(cmd.room_id.as_str())
                    .bind::<Text, _>(cmd.user_id.as_str())
                    .get_result(conn)
                    .await?;
                    Ok((MemberAdded { member: row.try_into()?, created: false }, None))
                }
            }
        })
        .await?;
    db.publisher.submit(pending.into_iter().collect());
    Ok(added)
}

pub async fn remove_member(store: Store, cmd: RemoveMember) -> Result<Done, ApiError> {
    let subjects = store.subjects().clone();
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let pending = conn
        .transaction(async move |conn| -> Result<outbox::Pending, StoreError> {
            let room = access(conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?;
            let role = room.member()?;
            let leaving = cmd.user_id == cmd.actor.user_id;
            if room.room_type == RoomType::Dm {
                return Err(ApiError::forbidden("The members of a DM cannot change").into());
            }
            if !leaving && !role.is_admin() {
                return Err(ApiError::forbidden("Only room admins and the owner can remove other members").into());
            }
            if !leaving {
                let target = moderation::role_of(conn, &cmd.room_id, &cmd.user_id).await?;
                moderation::outranks(role, target, "remove")?;
            }
            let removed = diesel::sql_query("DELETE FROM room_members WHERE room_id = $1 AND user_id = $2")
                .bind::<Text, _>(cmd.room_id.as_str())
                .bind::<Text, _>(cmd.user_id.as_str())
                .execute(conn)
                .await?;
            if removed == 0 {
                return Err(ApiError::not_found("That user is not a member of this room").into());
            }
            if !leaving {
                moderation::log(
                    conn,
                    moderation::Action {
                        tenant: &cmd.actor.tenant_id,
                        room: &cmd.room_id,
                        actor: &cmd.actor.user_id,
                        action: "remove_member",
                        target: Some(&cmd.user_id),
                        message: None,
                        reason: None,
                        detail: None,
                    },
                )
                .await?;
            }
            let event = RoomEvent::new(
                &cmd.actor.tenant_id,
                &cmd.room_id,
                chat_domain::time::now(),
                RoomEventBody::MemberRemoved(MemberRemoved {
                    user_id: cmd.user_id.clone(),
                    removed_by: cmd.actor.user_id.clone(),
                }),
            );
            outbox::insert(conn, &subjects, &event).await
        })
        .await?;
    db.publisher.submit(vec![pending]);
    Ok(Done {})
}

/// `audience`: a room's members, or every user with a membership in the tenant.
pub async fn audience(store: Store, cmd: Audience) -> Result<Vec<UserId>, ApiError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        user_id: String,
    }
    let db = store.db(&cmd.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let rows: Vec<Row> = match &cmd.room_id {
        Some(room) => {
            #[derive(diesel::QueryableByName)]
            struct One {
                #[diesel(sql_type = diesel::sql_types::Integer)]
                #[allow(dead_code)]
                one: i32,
            }
            let exists: Option<One> = optional(
                diesel::sql_query("SELECT 1 AS one FROM rooms WHERE id = $1 AND tenant_id = $2")
                    .bind::<Text, _>(room.as_str())
                    .bind::<Text, _>(cmd.tenant_id.as_str())
                    .get_result(&mut conn)
                    .await,
            )
            .map_err(StoreError::from)?;
            if exists.is_none() {
                return Err(ApiError::not_found("Room not found"));
            }
            diesel::sql_query("SELECT user_id FROM room_members WHERE room_id = $1 ORDER BY user_id")
                .bind::<Text, _>(room.as_str())
                .load(&mut conn)
                .await
        }
        None => {
            diesel::sql_query("SELECT DISTINCT user_id FROM room_members WHERE tenant_id = $1 ORDER BY user_id")
                .bind::<Text, _>(cmd.tenant_id.as_str())
                .load(&mut conn)
                .await
        }
    }
    .map_err(StoreError::from)?;
    Ok(rows.into_iter().filter_map(|r| UserId::parse(r.user_id).ok()).collect())
}
