//! `POST /tokens`: a short-lived user token for a browser or mobile app, minted with
//! the tenant's API key (`gateway_core::tokens` signs and verifies them).

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::UserId;
use gateway_core::Core;
use gateway_core::body::field;
use gateway_core::caller::Caller;
use gateway_core::error::HttpResult;
use gateway_core::extract::{MaybeBody, Rest};
use gateway_core::routes::{Mount, op};
use gateway_core::tokens::{DEFAULT_TTL_SECS, MAX_TTL_SECS, mint};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The body of `POST /tokens` (which may be empty).
#[derive(Deserialize, JsonSchema)]
pub struct NewToken {
    /// The user the token acts for; `X-User-Id` when absent.
    #[schemars(with = "Option<UserId>", example = &"user_123")]
    user_id: Option<serde_json::Value>,
    /// Seconds until the token expires (3600 when absent).
    #[schemars(with = "Option<i64>", range(min = 1, max = MAX_TTL_SECS))]
    ttl_secs: Option<serde_json::Value>,
}

/// A minted token.
#[derive(Serialize, JsonSchema)]
pub struct Token {
    /// A user token: `Authorization: Bearer <token>`, or `?token=` on the WebSocket.
    token: String,
    user_id: UserId,
    /// When the token expires (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    expires_at: Option<String>,
    /// Seconds until it expires.
    expires_in: i64,
}

/// `POST /tokens` `{"user_id"?, "ttl_secs"?}` with the API key → `{"token","user_id","expires_at"}`.
/// The user is the body's `user_id`, else `X-User-Id`.
pub async fn create(
    Rest((caller, MaybeBody(body))): Rest<(Caller, MaybeBody<NewToken>)>,
    state: web::Data<Core>,
) -> HttpResult {
    let (user_id, ttl_secs) = body.map_or((None, None), |b| (b.user_id, b.ttl_secs));
    let user = match field::optional_str("user_id", user_id)? {
        Some(u) => gateway_core::extract::user_id("user_id", &u)?,
        None => {
            caller.actor().map_err(|_| ApiError::validation("user_id", "user_id (or X-User-Id) is required"))?.user_id
        }
    };
    let ttl = field::optional_i64("ttl_secs", ttl_secs)?.unwrap_or(DEFAULT_TTL_SECS);
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiError::validation("ttl_secs", format!("ttl_secs must be between 1 and {MAX_TTL_SECS}")).into());
    }
    let (_, secret) = state.secrets.get(&state.bus, &caller.tenant.tenant_id).await?;
    let (token, exp) = mint(&secret, &caller.tenant.tenant_id, &user, ttl)?;
    let expires_at = chrono::DateTime::from_timestamp(exp, 0).map(|t| chat_domain::time::format(&t));
    Ok(HttpResponse::Created().json(Token { token, user_id: user, expires_at, expires_in: ttl }))
}

/// The route of `POST /tokens`, each with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    m.tagged("Users and tokens")
.at(&["/tokens"], |r| {
            r.post(
                create,
                op("Mint a user token")
                    .describe("A short-lived HS256 JWT for a browser or mobile app, which then calls the user routes with `Authorization: Bearer` (or `?token=` on a WebSocket) and never holds the API key. The body may be empty: the user is then `X-User-Id`.")
                    .tenant()
                    .json_example::<NewToken>(json!({"user_id": "user_123", "ttl_secs": 3600}))
                    .optional_body()
                    .reply_example::<Token>(
                        201,
                        "The token.",
                        json!({
                            "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyXzEyMyIsInRpZCI6InRlbl9hY21lIiwiaWF0IjoxNzY1NjI3MjAwLCJleHAiOjE3NjU2MzA4MDB9.c2lnbmF0dXJl",
                            "user_id": "user_123",
                            "expires_at": "2025-12-13T13:00:00.000000Z",
                            "expires_in": 3600,
                        }),
                    )
                    .errors(&[400, 401, 413, 503]),
            )
        });
}
