//! `erase`: what the notification service keeps of a tenant or one user, removed
//! (issue 25, finding 8). A tenant: its notifications, inboxes, subscriptions,
//! deliveries and offline windows, and its dead letters in JetStream (jobs on the work
//! queue carry only a delivery id; with the row gone they are dropped). A user: their
//! inbox, subscriptions and deliveries (webhook bodies name them), other members'
//! notices of missed messages and mentions that name them, and their id on open offline windows.

use chat_domain::ApiError;
use chat_domain::proto::notify::{EraseNotifications, NotificationsErased};
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

use crate::State;

fn failed(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "erasing notifications failed");
    ApiError::internal()
}

/// `s` with `LIKE`'s wildcards escaped (`\` is the default escape).
fn like_escaped(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

pub async fn erase(state: State, cmd: EraseNotifications) -> Result<NotificationsErased, ApiError> {
    let mut conn =
        state.pool.get().await.map_err(|_| ApiError::unavailable("The notification store is unavailable"))?;
    let t = cmd.tenant_id.as_str();
    let mut erased = NotificationsErased::default();
    match &cmd.user_id {
        None => {
            for table in ["inbox", "subscriptions", "deliveries", "offline_windows", "notifications"] {
                let sql = format!("DELETE FROM notification.{table} WHERE tenant_id = $1");
                erased.rows +=
                    diesel::sql_query(sql).bind::<Text, _>(t).execute(&mut conn).await.map_err(failed)? as u64;
            }
            let stream = state.js.get_stream(state.bus.subjects().dead_letter_stream()).await.map_err(failed)?;
            let purged =
                stream.purge().filter(state.bus.subjects().dead_letters_of(&cmd.tenant_id)).await.map_err(failed)?;
            erased.dead_letters = purged.purged;
        }
        Some(user) => {
            let u = user.as_str();
            for table in ["inbox", "subscriptions", "deliveries"] {
                let sql = format!("DELETE FROM notification.{table} WHERE tenant_id = $1 AND user_id = $2");
                erased.rows += diesel::sql_query(sql)
                    .bind::<Text, _>(t)
                    .bind::<Text, _>(u)
                    .execute(&mut conn)
                    .await
                    .map_err(failed)? as u64;
            }
            // Others' notices of missed messages and of mentions that name the user (as a
            // JSON string, or at the end of "New message from <user>"): copies of what is
            // being erased.
            for table in ["inbox", "deliveries"] {
                let sql = format!(
                    "DELETE FROM notification.{table} WHERE tenant_id = $1 AND kind IN ('message', 'mention')
                       AND (body::text LIKE $2 OR body::text LIKE $3)"
                );
                erased.rows += diesel::sql_query(sql)
                    .bind::<Text, _>(t)
                    .bind::<Text, _>(format!("%\"{}\"%", like_escaped(u)))
                    .bind::<Text, _>(format!("% {}\"%", like_escaped(u)))
                    .execute(&mut conn)
                    .await
                    .map_err(failed)? as u64;
            }
            diesel::sql_query(
                "UPDATE notification.offline_windows SET sole_sender = NULL WHERE tenant_id = $1 AND sole_sender = $2",
            )
            .bind::<Text, _>(t)
            .bind::<Text, _>(u)
            .execute(&mut conn)
            .await
            .map_err(failed)?;
        }
    }
    Ok(erased)
}
