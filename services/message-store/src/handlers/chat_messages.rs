//! `chat_messages`: a chat's history as `rest-chat.md` pages it, newest first, by
//! page number and an optional time cursor (`before`).

use chat_domain::ApiError;
use chat_domain::model::Message;
use chat_domain::proto::chat::{ChatMessagePage, ChatMessages, MAX_CHAT_PAGE};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;

use super::Store;
use super::blocks::hidden_senders;
use super::chats::participant;
use crate::error::StoreError;
use crate::rows::{MESSAGE_COLUMNS, MessageRow};

pub async fn chat_messages(store: Store, cmd: ChatMessages) -> Result<ChatMessagePage, ApiError> {
    let limit = i64::from(cmd.limit.clamp(1, MAX_CHAT_PAGE));
    let offset = i64::from(cmd.page.max(1) - 1) * limit;
    let db = store.db(&cmd.actor.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    participant(&mut conn, &cmd.actor.tenant_id, &cmd.room_id, &cmd.actor.user_id).await?;
    // Walks the primary key backwards from the newest message, leaving out the senders
    // the caller hides (`total` still counts every message).
    let rows: Vec<MessageRow> = diesel::sql_query(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE room_id = $1 AND ($2::timestamptz IS NULL OR created_at < $2) AND {}
         ORDER BY seq DESC LIMIT $3 OFFSET $4",
        hidden_senders("$5", "$6")
    ))
    .bind::<Text, _>(cmd.room_id.as_str())
    .bind::<Nullable<Timestamptz>, _>(cmd.before)
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(offset)
    .bind::<Text, _>(cmd.actor.tenant_id.as_str())
    .bind::<Text, _>(cmd.actor.user_id.as_str())
    .load(&mut conn)
    .await
    .map_err(StoreError::from)?;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    // Without a cursor the total is the room's last seq (seqs have no gaps, and a
    // deleted message keeps its row); with one, the messages before it are counted.
    let total: Count = match cmd.before {
        None => {
            diesel::sql_query("SELECT last_seq AS n FROM rooms WHERE id = $1")
                .bind::<Text, _>(cmd.room_id.as_str())
                .get_result(&mut conn)
                .await
        }
        Some(before) => {
            diesel::sql_query("SELECT count(*) AS n FROM messages WHERE room_id = $1 AND created_at < $2")
                .bind::<Text, _>(cmd.room_id.as_str())
                .bind::<Timestamptz, _>(before)
                .get_result(&mut conn)
                .await
        }
    }
    .map_err(StoreError::from)?;
    let mut messages = rows.into_iter().map(Message::try_from).collect::<Result<Vec<_>, _>>()?;
    super::reactions::decorate(&mut conn, &mut messages, Some(&cmd.actor.user_id)).await?;
    Ok(ChatMessagePage { messages, total: total.n })
}
