//! Blocks: `PUT /blocks/{user_id}`, `DELETE /blocks/{user_id}`, `GET /blocks` (see
//! `chat_domain::proto::blocks`).

use actix_web::{HttpResponse, web};
use chat_domain::proto::blocks::{BlockList, BlockUser, ListBlocks, UnblockUser};

use gateway_core::Core;
use gateway_core::caller::Acting;
use gateway_core::error::HttpResult;
use gateway_core::extract::{InUser, Rest};
use gateway_core::routes::{Mount, op};

/// `PUT /blocks/{user_id}`.
pub async fn block(
    Rest((Acting(actor), InUser(user_id))): Rest<(Acting, InUser)>,
    state: web::Data<Core>,
) -> HttpResult {
    let block = state.bus.request(&BlockUser { actor, user_id }).await?;
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
                (`403 FORBIDDEN`, \"You are blocked by this user\"), on every API. Group rooms and channels are \
                not affected.";
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
                        "Idempotent: blocking again keeps the first block (and its `created_at`). Blocking yourself \
                         is `400`; more than 1,000 blocks is `400`. {rule}"
                    ))
                    .user()
                    .path_id::<chat_domain::ids::UserId>("user_id", "The user to block.")
                    .reply::<chat_domain::proto::blocks::Block>(200, "The block.")
                    .errors(&[400, 401, 503]),
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
