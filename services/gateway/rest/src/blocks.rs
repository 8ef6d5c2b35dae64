//! Blocks: `PUT /blocks/{user_id}`, `DELETE /blocks/{user_id}`, `GET /blocks` (see
//! `chat_domain::proto::blocks`).

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::proto::blocks::{BlockList, BlockUser, ListBlocks, UnblockUser};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use gateway_core::Core;
use gateway_core::caller::Acting;
use gateway_core::error::HttpResult;
use gateway_core::extract::{InUser, MaybeBody, Rest};
use gateway_core::routes::{Mount, op};

/// The body of `PUT /blocks/{user_id}` (may be empty).
#[derive(Deserialize, JsonSchema)]
pub struct BlockBody {
    /// Hide the blocked user's messages from the caller in group rooms and channels,
    /// live and in history. Absent: a new block does not, an existing block keeps its
    /// choice.
    #[schemars(with = "Option<bool>")]
    hide_in_groups: Option<Value>,
}

/// `PUT /blocks/{user_id}`.
pub async fn block(
    Rest((Acting(actor), InUser(user_id), MaybeBody(body))): Rest<(Acting, InUser, MaybeBody<BlockBody>)>,
    state: web::Data<Core>,
) -> HttpResult {
    let hide_in_groups = match body.and_then(|b| b.hide_in_groups) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => return Err(ApiError::validation("hide_in_groups", "hide_in_groups must be a boolean").into()),
    };
    let block = state.bus.request(&BlockUser { actor, user_id, hide_in_groups }).await?;
    Ok(HttpResponse::Ok().json(block))
}

/// `DELETE /blocks/{user_id}`.
pub async fn unblock(
    Rest((Acting(actor), InUser(user_id))): Rest<(Acting, InUser)>,
    state: web::Data<Core>,
) -> HttpResult {
    state.bus.request(&UnblockUser { actor, user_id }).await?;
    Ok(HttpResponse::Ok().json(crate::success::SUCCESS))
}

/// `GET /blocks`.
pub async fn list(Rest((Acting(actor),)): Rest<(Acting,)>, state: web::Data<Core>) -> HttpResult {
    let blocks: BlockList = state.bus.request(&ListBlocks { actor }).await?;
    Ok(HttpResponse::Ok().json(blocks))
}

/// The routes of blocks, with their documentation.
pub(crate) fn routes(m: &mut Mount) {
    let rule = "A user the caller blocks cannot create a DM with the caller nor send into their existing DM \
                (`403 FORBIDDEN`, \"You are blocked by this user\"), on every API. Their typing and presence are \
                never shown to the caller (nor are they on the caller's lists of who is online); with \
                `hide_in_groups` their messages are left out of the caller's history, search, sync and live \
                events in every room, on every API.";
    m.tagged("Blocks")
        .at(&["/blocks"], |r| {
            r.get(
                list,
                op("List the users the caller blocks")
                    .describe("Newest block first (at most 1,000).")
                    .user()
                    .reply::<BlockList>(200, "The caller's blocks.")
                    .errors(&[401, 503]),
            )
        })
        .at(&["/blocks/{user_id}"], |r| {
            r.put(
                block,
                op("Block a user")
                    .describe(&format!(
                        "Idempotent: blocking again keeps the first block (and its `created_at`); a given \
                         `hide_in_groups` replaces the block's (no body: a new block does not hide, an existing one \
                         keeps its choice). Blocking yourself is `400`; more than 1,000 blocks is `400`; a \
                         `hide_in_groups` that is not a boolean is `400` (`field: \"hide_in_groups\"`). {rule}"
                    ))
                    .user()
                    .path_id::<chat_domain::ids::UserId>("user_id", "The user to block.")
                    .json_example::<BlockBody>(json!({"hide_in_groups": true}))
                    .optional_body()
                    .reply::<chat_domain::proto::blocks::Block>(200, "The block.")
                    .errors(&[400, 401, 413, 503]),
            )
            .delete(
                unblock,
                op("Unblock a user")
                    .describe("Idempotent: unblocking a user who is not blocked also answers `200`.")
                    .user()
                    .path_id::<chat_domain::ids::UserId>("user_id", "The user to unblock.")
                    .reply::<crate::success::Success>(200, "Not blocked (any more).")
                    .errors(&[400, 401, 503]),
            )
        });
}
