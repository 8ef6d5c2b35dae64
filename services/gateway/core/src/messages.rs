//! What the REST dialects read alike of a send and of a history page: the client's id
//! for a send (the `Idempotency-Key` header, else a body field) and the display name,
//! and the `after_seq` / `before_seq` / `limit` rules of a page of history.

use chat_domain::ApiError;
use chat_domain::ids::{MessageId, UserId};
use chat_domain::model::validate_client_id;
use schemars::JsonSchema;
use serde_json::Value;

use crate::body::{Query, field};
use crate::extract::Cx;

/// The header a client retries a send with.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The client's id for a send: the `Idempotency-Key` header (which wins), else the
/// body's field `field`.
pub fn client_msg_id(
    header: Option<Result<String, ApiError>>,
    field: &str,
    body: Option<Value>,
) -> Result<Option<String>, ApiError> {
    match header {
        Some(h) => {
            let h = h?;
            validate_client_id(IDEMPOTENCY_KEY, &h)?;
            Ok(Some(h))
        }
        None => match field::optional_str(field, body)? {
            Some(id) => {
                validate_client_id(field, &id)?;
                Ok(Some(id))
            }
            None => Ok(None),
        },
    }
}

/// The `Idempotency-Key` header's schema: what [`idempotency_key`] and
/// `validate_client_id` take, 1 to `MAX_CLIENT_ID_LEN` printable ASCII characters
/// (HTTP trims the spaces around a header value).
pub struct IdempotencyKey;

impl JsonSchema for IdempotencyKey {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IdempotencyKey".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": chat_domain::model::MAX_CLIENT_ID_LEN,
            "pattern": "^[\\x21-\\x7E]([\\x20-\\x7E]*[\\x21-\\x7E])?$",
        })
    }
}

/// The `Idempotency-Key` header, if sent (it must be printable ASCII).
pub fn idempotency_key(cx: &Cx) -> Option<Result<String, ApiError>> {
    cx.req.headers().get(IDEMPOTENCY_KEY).map(|v| {
        v.to_str()
            .map(str::to_owned)
            .map_err(|_| ApiError::validation(IDEMPOTENCY_KEY, "Idempotency-Key must be printable ASCII"))
    })
}

/// A display name as stored (see [`chat_domain::model::display_name`]).
pub fn display_name(name: Option<String>) -> Option<String> {
    name.as_deref().and_then(chat_domain::model::display_name)
}

/// A page of history: after `after_seq` (from the start when absent), or the newest
/// messages before `before_seq` when only that is given; in `seq` order either way.
#[derive(JsonSchema)]
pub struct History {
    /// Messages with a `seq` greater than this.
    #[schemars(range(min = 0))]
    pub after_seq: Option<i64>,
    /// Messages with a `seq` less than this (the newest of them, when `after_seq` is absent).
    #[schemars(range(min = 1))]
    pub before_seq: Option<i64>,
    /// Most messages returned.
    #[schemars(default = "crate::extract::default_limit", range(min = 1, max = 100))]
    pub limit: u32,
    /// `false` leaves thread replies out (top-level messages only); they are included
    /// by default.
    #[schemars(default = "yes")]
    pub threads: bool,
}

fn yes() -> bool {
    true
}

/// Reads a [`History`] from the query, with the history rules.
pub fn history(q: &Query) -> Result<History, ApiError> {
    Ok(History {
        after_seq: q.int("after_seq", 0, i64::MAX)?,
        before_seq: q.int("before_seq", 1, i64::MAX)?,
        limit: q.int("limit", 1, 100)?.map_or(crate::extract::default_limit(), |n| n as u32),
        threads: q.bool("threads")?.unwrap_or(true),
    })
}

/// A page of a thread (`?after_seq=&limit=`): replies after the room `seq` `after_seq`.
#[derive(JsonSchema)]
pub struct ThreadQuery {
    /// Replies with a (room) `seq` greater than this.
    #[schemars(range(min = 0))]
    pub after_seq: Option<i64>,
    /// Most replies returned.
    #[schemars(default = "crate::extract::default_limit", range(min = 1, max = 100))]
    pub limit: u32,
}

/// Reads a [`ThreadQuery`].
pub fn thread_query(q: &Query) -> Result<ThreadQuery, ApiError> {
    Ok(ThreadQuery {
        after_seq: q.int("after_seq", 0, i64::MAX)?,
        limit: q.int("limit", 1, 100)?.map_or(crate::extract::default_limit(), |n| n as u32),
    })
}

/// A send's thread parent (`parent_id`, `parentId`, ...): a message id, or absent.
pub fn parent_id(field: &str, v: Option<Value>) -> Result<Option<MessageId>, ApiError> {
    field::optional_str(field, v)?
        .map(|id| MessageId::parse(id).map_err(|e| ApiError::validation(field, format!("{field} {e}"))))
        .transpose()
}

/// A send's mentions: an array of user ids (`@channel` mentions everyone), at most
/// [`chat_domain::model::MAX_MENTIONS`], no repeats.
pub fn mentions(field: &str, v: Option<Value>) -> Result<Vec<UserId>, ApiError> {
    let ids = field::optional_str_array(field, v)?.unwrap_or_default();
    let ids = ids
        .into_iter()
        .map(|id| UserId::parse(id).map_err(|e| ApiError::validation(field, format!("{field}: a user id {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    chat_domain::model::validate_mentions(&ids).map_err(|e| e.with_field(field))?;
    Ok(ids)
}
