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
    /// The name chats show.
    #[schemars(with = "Option<String>", example = &"Alice")]
    name: Option<Value>,
    /// An `http://` or `https://` URL (anything else, `javascript:` say, is `400`).
    #[schemars(with = "Option<String>")]
    avatar_url: Option<Value>,
    /// E.g. `support`, `admin` (both put the user in the support pool; `admin` may
    /// send system messages and delete anyone's message).
    #[schemars(with = "Option<Vec<String>>")]
    roles: Option<Value>,
    /// Anything the tenant keeps with the user.
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    metadata: Option<Value>,
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
