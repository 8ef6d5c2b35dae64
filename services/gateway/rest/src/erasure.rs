//! Deleting a tenant and erasing one user's personal data (issue 25, finding 8), on the
//! operator API: `DELETE /admin/tenants/{tenant_id}` and
//! `DELETE /admin/tenants/{tenant_id}/users/{user_id}`.
//!
//! The gateway asks each service to erase what it owns — message-store (PostgreSQL:
//! the directory and the tenant's cluster), notification (its PostgreSQL schema and the
//! dead letters in JetStream), presence (Redis) — and deletes the attachments' bytes
//! from the object store itself. Open sockets close: every membership removed is
//! announced as `member.removed` (the gateways close that user's sockets in the room),
//! and a deleted tenant's key stops authenticating at once (`tenant.changed`). Presence
//! is erased a second time once those sockets' closings have reached it. The gateways'
//! rate-limit counters in Redis hold no personal data and expire within 2 seconds.
//!
//! Each step is idempotent, so a call that failed part way (`503`) is simply made
//! again.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chat_domain::ids::{TenantId, UserId};
use chat_domain::proto::notify::EraseNotifications;
use chat_domain::proto::presence::ErasePresence;
use chat_domain::proto::store::{DataErased, EraseData, GetTenant};
use chat_domain::{ApiError, ErrorCode};
use gateway_core::Core;
use gateway_core::caller::Admin;
use gateway_core::error::HttpResult;
use gateway_core::extract::{InTenant, InUser, Rest};
use gateway_core::routes::{Mount, op};
use schemars::JsonSchema;
use serde::Serialize;

/// When presence is erased again: after the closed sockets' leave grace has passed.
const PRESENCE_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// What was erased.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Erased {
    pub tenant_id: TenantId,
    /// The user erased; absent when the tenant was deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// Rooms deleted (none for a user: their rooms stay for the other members).
    pub rooms: u64,
    /// Memberships removed.
    pub members: u64,
    /// Messages deleted (a tenant) or emptied to tombstones (a user).
    pub messages: u64,
    /// Directory entries removed.
    pub users: u64,
    /// Notification rows removed (notifications, inbox entries, subscriptions,
    /// deliveries, offline windows).
    pub notifications: u64,
    /// Dead letters purged from JetStream.
    pub dead_letters: u64,
    /// Presence keys and entries removed from Redis.
    pub presence: u64,
    /// Attachment files deleted from the object store.
    pub attachments: u64,
}

/// `DELETE /admin/tenants/{tenant_id}`.
pub async fn delete_tenant(
    Rest((Admin, InTenant(tenant_id))): Rest<(Admin, InTenant)>,
    state: web::Data<Core>,
) -> HttpResult {
    let erased = erase(&state, tenant_id.clone(), None).await?;
    state.forget_tenant(&tenant_id);
    Ok(HttpResponse::Ok().json(erased))
}

/// `DELETE /admin/tenants/{tenant_id}/users/{user_id}`.
pub async fn erase_user(
    Rest((Admin, InTenant(tenant_id), InUser(user_id))): Rest<(Admin, InTenant, InUser)>,
    state: web::Data<Core>,
) -> HttpResult {
    Ok(HttpResponse::Ok().json(erase(&state, tenant_id, Some(user_id)).await?))
}

async fn erase(state: &web::Data<Core>, tenant_id: TenantId, user_id: Option<UserId>) -> Result<Erased, ApiError> {
    // message-store first: it closes the sockets and, for a tenant, its key. A tenant it
    // no longer knows may still have leftovers elsewhere (an earlier call that failed
    // part way): erase those, and answer 404 only when there were none.
    let known = match state.bus.request(&GetTenant { tenant_id: tenant_id.clone() }).await {
        Ok(_) => true,
        Err(e) if e.code == ErrorCode::NotFound => false,
        Err(e) => return Err(e),
    };
    let stored = match state.bus.request(&EraseData { tenant_id: tenant_id.clone(), user_id: user_id.clone() }).await {
        Ok(d) => d,
        Err(e) if e.code == ErrorCode::NotFound => DataErased::default(),
        Err(e) => return Err(e),
    };
    let notes =
        state.bus.request(&EraseNotifications { tenant_id: tenant_id.clone(), user_id: user_id.clone() }).await?;
    let presence_cmd = ErasePresence { tenant_id: tenant_id.clone(), user_id: user_id.clone() };
    let presence = state.bus.request(&presence_cmd).await?;
    let mut keys = stored.attachment_keys.clone();
    if user_id.is_none() {
        let listed = state.attachments.store.list(&format!("{tenant_id}/")).await.map_err(|e| {
            tracing::error!(error = format!("{e:#}"), tenant = %tenant_id, "could not list the tenant's attachments");
            ApiError::unavailable("The attachments store is unavailable; try again")
        })?;
        keys.extend(listed);
        keys.sort();
        keys.dedup();
    }
    let mut attachments = 0;
    for key in keys.iter().filter(|k| k.starts_with(&format!("{tenant_id}/"))) {
        state.attachments.store.delete(key).await.map_err(|e| {
            tracing::error!(error = format!("{e:#}"), "could not delete an attachment");
            ApiError::unavailable("The attachments store is unavailable; try again")
        })?;
        attachments += 1;
    }
    // The sockets closed above leave presence after this; erase what they leave.
    let bus = state.bus.clone();
    tokio::spawn(async move {
        tokio::time::sleep(PRESENCE_AGAIN_AFTER).await;
        if let Err(e) = bus.request(&presence_cmd).await {
            tracing::warn!(error = %e, "erasing presence again failed");
        }
    });
    let erased = Erased {
        tenant_id,
        user_id,
        rooms: stored.rooms,
        members: stored.members,
        messages: stored.messages,
        users: stored.users,
        notifications: notes.rows,
        dead_letters: notes.dead_letters,
        presence: presence.removed,
        attachments,
    };
    let nothing = erased.rooms + erased.members + erased.messages + erased.users == 0
        && erased.notifications + erased.dead_letters + erased.presence + erased.attachments == 0;
    if !known && nothing {
        return Err(ApiError::not_found("No such tenant"));
    }
    tracing::info!(?erased, "erased");
    Ok(erased)
}

/// `DELETE /admin/tenants/{tenant_id}` (added to the tenant's route in `admin`) and the
/// user erasure route.
pub(crate) fn routes(m: &mut Mount) {
    m.tagged("Admin").at(&["/admin/tenants/{tenant_id}/users/{user_id}"], |r| {
        r.delete(
            erase_user,
            op("Erase a user's personal data")
                .describe(
                    "Removes the user's directory entry, memberships, read cursors, inbox, subscriptions, webhook \
                     deliveries, presence and the attachments of their messages, and closes their sockets. Their \
                     messages stay as tombstones (same id and `seq`, content, `meta` and attachments removed, sender \
                     `~deleted`), so no room's history gets a gap. Idempotent.",
                )
                .operator()
                .path_id::<TenantId>("tenant_id", "The tenant.")
                .path_id::<UserId>("user_id", "The user.")
                .reply::<Erased>(200, "What was erased.")
                .errors(&[400, 401, 403, 404, 503]),
        )
    });
}

/// The operation of `DELETE /admin/tenants/{tenant_id}`.
pub(crate) fn delete_tenant_op() -> gateway_core::openapi::Op {
    op("Delete a tenant")
        .describe(
            "Deletes everything of the tenant in every store: its keys, settings, rooms, members, messages, users, \
             notifications, deliveries, dead letters, presence and attachments; its sockets are closed and its key \
             stops working at once. Idempotent: `404` once nothing of it is left.",
        )
        .operator()
        .path_id::<TenantId>("tenant_id", "The tenant.")
        .reply::<Erased>(200, "What was deleted.")
        .errors(&[400, 401, 403, 404, 503])
}
