//! The tenant's user directory: `put_user` and `get_user`. A user exists when the
//! directory has a row for them, or once they are a member of any room of the tenant
//! (nothing is written per message or per membership to make that so).

use chat_domain::ApiError;
use chat_domain::ids::{TenantId, UserId};
use chat_domain::model::MAX_DISPLAY_NAME_CHARS;
use chat_domain::proto::chat::{
    DirectoryUser, GetUser, PutUser, UserPut, validate_avatar_url, validate_metadata, validate_roles,
};
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, Bool, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Store;
use crate::error::{StoreError, optional, stored};

#[derive(QueryableByName)]
struct UserRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    avatar_url: Option<String>,
    #[diesel(sql_type = Array<Text>)]
    roles: Vec<String>,
    /// Read leniently: an unreadable value is `null`, the user still listed.
    #[diesel(sql_type = Jsonb)]
    metadata: chat_pg::json::LenientJson,
    #[diesel(sql_type = Bool)]
    registered: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    created_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    updated_at: Option<DateTime<Utc>>,
}

impl TryFrom<UserRow> for DirectoryUser {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        Ok(DirectoryUser {
            user_id: stored(UserId::parse(r.id))?,
            name: r.name,
            avatar_url: r.avatar_url,
            roles: r.roles,
            metadata: r.metadata.into_inner(),
            registered: r.registered,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub async fn put_user(store: Store, cmd: PutUser) -> Result<UserPut, ApiError> {
    let name = match cmd.name.as_deref() {
        Some(raw) => Some(chat_domain::model::display_name(raw).ok_or_else(|| {
            ApiError::validation("name", format!("name must be 1 to {MAX_DISPLAY_NAME_CHARS} characters"))
        })?),
        None => None,
    };
    if let Some(url) = &cmd.avatar_url {
        validate_avatar_url(url)?;
    }
    let roles = validate_roles(&cmd.roles)?;
    validate_metadata("metadata", &cmd.metadata)?;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(embed)]
        user: UserRow,
        #[diesel(sql_type = Bool)]
        created: bool,
    }
    let db = store.db(&cmd.tenant_id).await?;
    let mut conn = db.pool.get().await.map_err(StoreError::from)?;
    let row: Row = diesel::sql_query(
        "INSERT INTO users AS u (tenant_id, id, name, avatar_url, roles, metadata)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, id) DO UPDATE SET
             name = EXCLUDED.name, avatar_url = EXCLUDED.avatar_url, roles = EXCLUDED.roles,
             metadata = EXCLUDED.metadata, updated_at = now()
         RETURNING u.id, u.name, u.avatar_url, u.roles, u.metadata, true AS registered, u.created_at, u.updated_at,
                   (xmax = 0) AS created",
    )
    .bind::<Text, _>(cmd.tenant_id.as_str())
    .bind::<Text, _>(cmd.user_id.as_str())
    .bind::<Nullable<Text>, _>(&name)
    .bind::<Nullable<Text>, _>(&cmd.avatar_url)
    .bind::<Array<Text>, _>(&roles)
    .bind::<Jsonb, _>(&cmd.metadata)
    .get_result(&mut conn)
    .await
    .map_err(StoreError::from)?;
    Ok(UserPut { user: row.user.try_into()?, created: row.created })
}

pub async fn get_user(store: Store, cmd: GetUser) -> Result<DirectoryUser, ApiError> {
    let db = store.db(&cmd.tenant_id).await?;
    let mut conn = db.reads.get().await.map_err(StoreError::from)?;
    let row: Option<UserRow> = optional(
        diesel::sql_query(
            "SELECT $2 AS id, u.name, u.avatar_url, COALESCE(u.roles, '{}') AS roles,
                    COALESCE(u.metadata, '{}'::jsonb) AS metadata, u.id IS NOT NULL AS registered,
                    u.created_at, u.updated_at
             FROM (SELECT 1) one
             LEFT JOIN users u ON u.tenant_id = $1 AND u.id = $2
             WHERE u.id IS NOT NULL
                OR EXISTS (SELECT 1 FROM room_members m WHERE m.tenant_id = $1 AND m.user_id = $2)",
        )
        .bind::<Text, _>(cmd.tenant_id.as_str())
        .bind::<Text, _>(cmd.user_id.as_str())
        .get_result(&mut conn)
        .await,
    )
    .map_err(StoreError::from)?;
    Ok(row.ok_or_else(|| ApiError::not_found("User not found"))?.try_into()?)
}

/// The users of `users` the tenant does not know (neither in its directory nor a
/// member of any of its rooms), in the given order.
pub(super) async fn unknown_users(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    users: &[UserId],
) -> Result<Vec<String>, StoreError> {
    #[derive(QueryableByName)]
    struct Unknown {
        #[diesel(sql_type = Text)]
        id: String,
    }
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let rows: Vec<Unknown> = diesel::sql_query(
        "SELECT q.id FROM unnest($2::text[]) WITH ORDINALITY AS q (id, ord)
         WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.tenant_id = $1 AND u.id = q.id)
           AND NOT EXISTS (SELECT 1 FROM room_members m WHERE m.tenant_id = $1 AND m.user_id = q.id)
         ORDER BY q.ord",
    )
    .bind::<Text, _>(tenant.as_str())
    .bind::<Array<Text>, _>(&ids)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// The tenant's support pool (directory users with role `support` or `admin`), but
/// `except`, sorted; at most `limit`.
pub(super) async fn support_pool(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    except: &UserId,
    limit: i64,
) -> Result<Vec<UserId>, StoreError> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let rows: Vec<Id> = diesel::sql_query(
        "SELECT id FROM users WHERE tenant_id = $1 AND roles && ARRAY['support', 'admin']::text[] AND id <> $2
         ORDER BY id LIMIT $3",
    )
    .bind::<Text, _>(tenant.as_str())
    .bind::<Text, _>(except.as_str())
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    rows.into_iter().map(|r| stored(UserId::parse(r.id))).collect()
}

/// Whether the directory gives `user` the role `role`.
pub(super) async fn has_role(
    conn: &mut AsyncPgConnection,
    tenant: &TenantId,
    user: &UserId,
    role: &str,
) -> Result<bool, StoreError> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = Bool)]
        found: bool,
    }
    let found: Found = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2 AND $3 = ANY (roles)) AS found",
    )
    .bind::<Text, _>(tenant.as_str())
    .bind::<Text, _>(user.as_str())
    .bind::<Text, _>(role)
    .get_result(conn)
    .await?;
    Ok(found.found)
}
