//! The open windows as `feed` left them in `notification.offline_windows`: reading
//! back those that are due, and the earliest end among the rest. Closing them (the
//! deletion) is part of the batch's write, in `write`.

use anyhow::Context as _;
use chat_domain::ids::{RoomId, TenantId, UserId};
use chat_domain::proto::store::RoomRef;
use chat_pg::prepared;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;

use crate::State;
use crate::offline::settings::Settings;

/// Most windows closed together.
pub(super) const BATCH: i64 = 256;

#[derive(QueryableByName)]
struct WindowRow {
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    room_id: String,
    #[diesel(sql_type = Timestamptz)]
    window_start: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    window_end: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    first_seq: i64,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
    #[diesel(sql_type = Nullable<Text>)]
    sole_sender: Option<String>,
}

/// An open window of one room.
pub(super) struct Window {
    pub(super) room: RoomRef,
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    pub(super) first_seq: i64,
    pub(super) last_seq: i64,
    /// The one user who sent all of the window's messages, when one did.
    pub(super) sole_sender: Option<UserId>,
}

impl TryFrom<WindowRow> for Window {
    type Error = anyhow::Error;

    fn try_from(r: WindowRow) -> anyhow::Result<Self> {
        Ok(Self {
            room: RoomRef {
                tenant_id: TenantId::parse(r.tenant_id).context("stored tenant id")?,
                room_id: RoomId::parse(r.room_id).context("stored room id")?,
            },
            start: r.window_start,
            end: r.window_end,
            first_seq: r.first_seq,
            last_seq: r.last_seq,
            sole_sender: r.sole_sender.map(UserId::parse).transpose().context("stored sender id")?,
        })
    }
}

/// The earliest end of this deployment's open windows.
pub async fn earliest_end(state: &State, settings: &Settings) -> anyhow::Result<Option<DateTime<Utc>>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Nullable<Timestamptz>)]
        end: Option<DateTime<Utc>>,
    }
    let mut conn = state.pool.get().await.context("database")?;
    let row: Row = prepared(
        diesel::sql_query("SELECT min(window_end) AS end FROM notification.offline_windows WHERE follower = $1")
            .bind::<Text, _>(&settings.follower),
    )
    .get_result(&mut conn)
    .await
    .context("reading the open offline windows")?;
    Ok(row.end)
}

/// The first [`BATCH`] windows that ended at or before `until`, oldest end first.
pub(super) async fn due(state: &State, settings: &Settings, until: DateTime<Utc>) -> anyhow::Result<Vec<Window>> {
    let rows: Vec<WindowRow> = {
        let mut conn = state.pool.get().await.context("database")?;
        prepared(
            diesel::sql_query(
                "SELECT tenant_id, room_id, window_start, window_end, first_seq, last_seq, sole_sender
                 FROM notification.offline_windows WHERE follower = $1 AND window_end <= $2
                 ORDER BY window_end, tenant_id, room_id LIMIT $3",
            )
            .bind::<Text, _>(&settings.follower)
            .bind::<Timestamptz, _>(until)
            .bind::<BigInt, _>(BATCH),
        )
        .load(&mut conn)
        .await
        .context("reading the offline windows due")?
    };
    rows.into_iter().map(Window::try_from).collect()
}
