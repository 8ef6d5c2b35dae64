//! The tenant's user directory: `PUT /users/{user_id}` (upsert) and `GET
//! /users/{user_id}`, with the API key. Names, avatars and roles show in chats
//! (`/api/chat` participants); roles `support` and `admin` make the support pool, and
//! `admin` may send system messages and delete anyone's message.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::UserId;
use chat_domain::proto::chat::{GetUser, PutUser};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use gateway_core::Core;
use gateway_core::body::field;
use gateway_core::caller::Caller;
use gateway_core::error::HttpResult;
use gateway_core::extract::{Body, Cx, InUser, Part, Rest, parts};
use gateway_core::routes::{Mount, op};

/// The body of `PUT /users/{user_id}`: the whole entry (fields left out are cleared).
#[derive(Deserialize, JsonSchema)]
pub struct UserBody {
    /// The name chats show: control characters are dropped, spaces trimmed, and it is
    /// cut at 100 characters; one with nothing left is a `400`.
    #[schemars(with = "Option<String>", example = &"Alice", regex(pattern = r"[^\s\x00-\x1F\x7F-\x9F]"))]
    name: Option<Value>,
    /// An `http://` or `https://` URL (anything else, `javascript:` say, is `400`).
    #[schemars(with = "Option<String>")]
    avatar_url: Option<Value>,
    /// E.g. `support`, `admin` (both put the user in the support pool; `admin` may
    /// send system messages and delete anyone's message).
    /// At most 20, each 1 to 64 of `a-z`, `0-9`, `_`, `-` (duplicates are dropped).
    #[schemars(with = "Option<Vec<Role>>", length(max = chat_domain::proto::chat::MAX_ROLES))]
    roles: Option<Value>,
    /// Anything the tenant keeps with the user.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    metadata: Option<Value>,
}

/// A directory role, as `validate_roles` takes it.
struct Role;

impl JsonSchema for Role {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DirectoryRole".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": format!("^[a-z0-9_-]{{1,{}}}$", chat_domain::proto::chat::MAX_ROLE_CHARS),
            "examples": ["support"],
        })
    }
}

/// `PUT /users/{user_id}`.
pub struct PutRequest {
    caller: Caller,
    user_id: UserId,
    body: UserBody,
}

impl Part for PutRequest {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (caller, InUser(user_id), Body(body)) = parts(cx).await?;
        Ok(Self { caller, user_id, body })
    }
}

impl TryFrom<PutRequest> for PutUser {
    type Error = ApiError;

    fn try_from(PutRequest { caller, user_id, body }: PutRequest) -> Result<Self, ApiError> {
        Ok(PutUser {
            tenant_id: caller.tenant.tenant_id.clone(),
            user_id,
            name: field::optional_str("name", body.name)?,
            avatar_url: field::optional_str("avatar_url", body.avatar_url)?,
            roles: field::optional_str_array("roles", body.roles)?.unwrap_or_default(),
            metadata: field::optional_object("metadata", body.metadata)?.unwrap_or_else(|| json!({})),
        })
    }
}

/// Creates (`201`) or replaces (`200`) the user's directory entry.
pub async fn put(Rest(req): Rest<PutRequest>, state: web::Data<Core>) -> HttpResult {
    let put = state.bus.request(&PutUser::try_from(req)?).await?;
    let mut res = if put.created { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(res.json(put.user))
}

/// A user of the tenant (in the directory, or a member of any room); `404` otherwise.
pub async fn get(Rest((caller, InUser(user_id))): Rest<(Caller, InUser)>, state: web::Data<Core>) -> HttpResult {
    let user = state.bus.request(&GetUser { tenant_id: caller.tenant.tenant_id.clone(), user_id }).await?;
    Ok(HttpResponse::Ok().json(user))
}

/// The route of the user directory, each with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    m.tagged("Users and tokens")
.at(&["/users/{user_id}"], |r| {
            r.put(
                put,
                op("Create or update a user in the directory")
                    .describe("Replaces the user's entry. Names, avatars and roles show in chats (`/api/chat` participants); roles `support` and `admin` make the support pool.")
                    .tenant()
                    .path_id::<chat_domain::ids::UserId>("user_id", "The user.")
                    .json_example::<UserBody>(json!({"name": "Alice", "roles": ["support"], "metadata": {"team": "billing"}}))
                    .reply::<chat_domain::proto::chat::DirectoryUser>(201, "The entry, created.")
                    .reply::<chat_domain::proto::chat::DirectoryUser>(200, "The entry, replaced.")
                    .errors(&[400, 401, 413, 503]),
            )
            .get(
                get,
                op("Get a user from the directory")
                    .describe("A user of the tenant: in the directory, or a member of any room (then `registered` is `false`).")
                    .tenant()
                    .path_id::<chat_domain::ids::UserId>("user_id", "The user.")
                    .reply::<chat_domain::proto::chat::DirectoryUser>(200, "The user.")
                    .errors(&[400, 401, 404, 503]),
            )
        });
}
