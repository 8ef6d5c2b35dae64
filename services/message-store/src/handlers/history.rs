//! `older_messages`: history paged backwards from a message id, newest first — the
//! `fetch_messages {before_id, limit}` of `ws-conversations.md`, whose clients know
//! message ids rather than `seq`s.

use chat_domain::ApiError;
use chat_domain::model::Message;
use chat_domain::proto::store::OlderMessages;
use chat_pg::prepared;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

use super::messages::{MAX_PAGE, PageShape, read_page};
use super::{Store, access};
use crate::error::{StoreError, optional};

pub async fn older_messages(store: Store, cmd: OlderMessages) -> Result<Vec<Message>, ApiError> {
    let limit = i64::from(cmd.limit.clamp(1, MAX_PAGE));
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    let before = match &cmd.before_id {
        None => i64::MAX,
        Some(id) => {
            // Membership first: whether a message id is in the room is for members to learn.
            access(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?.member()?;
            #[derive(diesel::QueryableByName)]
            struct Seq {
                #[diesel(sql_type = BigInt)]
                seq: i64,
            }
            let found: Option<Seq> = optional(
                prepared(
                    diesel::sql_query("SELECT seq FROM messages WHERE room_id = $1 AND id = $2")
                        .bind::<Text, _>(cmd.room_id.as_str())
                        .bind::<Text, _>(id.as_str()),
                )
                .get_result(&mut conn)
                .await,
            )
            .map_err(StoreError::from)?;
            found.map(|s| s.seq).ok_or_else(|| {
                let mut e = ApiError::not_found(format!("before_id {id} is not a message of this room"));
                e.field = Some("before_id".to_owned());
                e
            })?
        }
    };
    // One statement for the page with its reactions and pins (and, without `before_id`,
    // the membership check), oldest first; this command answers newest first.
    let mut messages =
        read_page(&mut conn, &cmd.actor, &cmd.room_id, PageShape::Before, (0, before), limit, false).await?;
    messages.reverse();
    Ok(messages)
}
