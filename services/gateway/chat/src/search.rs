//! `GET /api/chat/search?q=&chatId=&senderId=&before=&after=&limit=&cursor=`: message
//! search for `rest-chat.md` clients, the same search as the canonical `GET /search`
//! (same rooms, same rules), in this dialect's `{success, data}` camelCase shape.

use actix_web::http::StatusCode;
use actix_web::web;
use chat_domain::ids::{RoomId, UserId};
use chat_domain::proto::search::{SearchMessages, snippet_html};
use schemars::JsonSchema;
use serde::Serialize;

use super::error::{ChatResult, ok};
use super::extract::{ChatCaller, ChatRest};
use super::render::{self, MessageJson};
use gateway_core::Core;
use gateway_core::extract::QueryString;
use gateway_core::search::{self, Names};

const NAMES: Names = Names { q: "q", before: "before", after: "after", limit: "limit", cursor: "cursor" };

/// The query of `GET /api/chat/search` (its schema documents the parameters).
#[allow(dead_code)] // read by `search::read`; the struct documents the parameters
#[derive(JsonSchema)]
pub(crate) struct ChatSearchQuery {
    /// What to look for (1 to 256 characters, at most 16 words): every word must
    /// match; `"two words"` matches a phrase; `word*` matches words starting with
    /// `word` (at least 3 letters or digits before the `*`).
    #[schemars(required, example = &"\"blue bike\" addr*")]
    pub q: String,
    /// Only this chat's messages.
    #[serde(rename = "chatId")]
    pub chat_id: Option<RoomId>,
    /// Only this user's messages.
    #[serde(rename = "senderId")]
    pub sender_id: Option<UserId>,
    /// Only messages created before this time (ISO 8601).
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub before: Option<String>,
    /// Only messages created after this time (ISO 8601).
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub after: Option<String>,
    /// Most results, 1 to 50.
    #[schemars(default = "default_limit", range(min = 1, max = 50))]
    pub limit: u32,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

fn default_limit() -> u32 {
    chat_domain::proto::search::DEFAULT_SEARCH_LIMIT
}

/// One message found.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "ChatSearchResult")]
pub(crate) struct Found {
    /// The message, exactly as `GET /api/chat/:id/messages` shows it.
    message: MessageJson,
    /// An extract of the content around the matches: HTML-escaped text, each match in
    /// `<mark>...</mark>`.
    snippet: String,
    /// How well it matches; higher is better, comparable only within one search.
    score: f32,
}

/// The answer of `GET /api/chat/search`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChatSearchResults {
    /// Best match first (then newest).
    results: Vec<Found>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// `GET /api/chat/search`.
pub(crate) async fn search(
    ChatRest((caller, QueryString(q))): ChatRest<(ChatCaller, QueryString)>,
    state: web::Data<Core>,
) -> ChatResult {
    let page = search::read(&q, NAMES)?;
    let room_id = q.get_str("chatId").map(gateway_core::extract::room_id).transpose()?;
    let sender_id = q.get_str("senderId").map(|u| gateway_core::extract::user_id("senderId", u)).transpose()?;
    let offset = page.offset;
    let cmd = SearchMessages {
        actor: caller.actor,
        query: page.query,
        room_id,
        sender_id,
        before: page.before,
        after: page.after,
        offset,
        limit: page.limit,
    };
    let found = state.bus.request(&cmd).await?;
    let links = state.links();
    let next_cursor = search::next_cursor(offset, found.hits.len(), found.more);
    let results = found
        .hits
        .iter()
        .map(|h| Found {
            message: render::message(&h.message, &links),
            snippet: snippet_html(&h.snippet),
            score: h.score,
        })
        .collect();
    Ok(ok(StatusCode::OK, ChatSearchResults { results, next_cursor }))
}
