//! Search: `GET /search?q=&room_id=&sender_id=&before=&after=&limit=&cursor=` over the
//! messages the caller may read, best match first, each with a highlighted snippet.

use actix_web::{HttpResponse, web};
use chat_domain::ApiError;
use chat_domain::ids::{RoomId, UserId};
use chat_domain::proto::search::{SearchMessages, snippet_html};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use gateway_core::Core;
use gateway_core::body::Query;
use gateway_core::caller::Acting;
use gateway_core::error::HttpResult;
use gateway_core::extract::{QueryString, Rest};
use gateway_core::routes::{Mount, op};
use gateway_core::search::{self, Names};

use crate::messages::{LinkedMessage, linked};

const NAMES: Names = Names { q: "q", before: "before", after: "after", limit: "limit", cursor: "cursor" };

/// The query of `GET /search` (its schema documents the parameters).
#[allow(dead_code)] // read by `search::read`; the struct documents the parameters
#[derive(JsonSchema)]
pub struct SearchParams {
    /// What to look for (1 to 256 characters, at most 16 words): every word must
    /// match; `"two words"` matches a phrase; `word*` matches words starting with
    /// `word` (at least 3 letters or digits before the `*`). Case and punctuation are ignored.
    #[schemars(required, example = &"\"blue bike\" addr*")]
    pub q: String,
    /// Only this room's messages.
    pub room_id: Option<RoomId>,
    /// Only this user's messages.
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
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn default_limit() -> u32 {
    chat_domain::proto::search::DEFAULT_SEARCH_LIMIT
}

/// One message found.
#[derive(Serialize, JsonSchema)]
pub struct Found {
    /// The message, exactly as history (`GET /rooms/{room_id}/messages`) shows it.
    message: LinkedMessage,
    /// An extract of the content around the matches: HTML-escaped text, each match in
    /// `<mark>...</mark>`.
    snippet: String,
    /// How well it matches; higher is better, comparable only within one search.
    score: f32,
}

/// A page of results.
#[derive(Serialize, JsonSchema)]
pub struct SearchPage {
    /// Best match first (then newest).
    results: Vec<Found>,
    /// Pass as `cursor` for the next page; `null` on the last one (paging stops after
    /// 1,000 results).
    next_cursor: Option<String>,
}

fn command(actor: chat_domain::model::Actor, q: &Query) -> Result<SearchMessages, ApiError> {
    let page = search::read(q, NAMES)?;
    let room_id = q.get_str("room_id").map(gateway_core::extract::room_id).transpose()?;
    let sender_id = q.get_str("sender_id").map(|u| gateway_core::extract::user_id("sender_id", u)).transpose()?;
    Ok(SearchMessages {
        actor,
        query: page.query,
        room_id,
        sender_id,
        before: page.before,
        after: page.after,
        offset: page.offset,
        limit: page.limit,
    })
}

/// `GET /search`.
pub async fn search(
    Rest((Acting(actor), QueryString(q))): Rest<(Acting, QueryString)>,
    state: web::Data<Core>,
) -> HttpResult {
    let cmd = command(actor, &q)?;
    let offset = cmd.offset;
    let found = state.bus.request(&cmd).await?;
    let links = state.links();
    let next_cursor = search::next_cursor(offset, found.hits.len(), found.more);
    let results = found
        .hits
        .into_iter()
        .map(|h| Found { snippet: snippet_html(&h.snippet), score: h.score, message: linked(&links, h.message) })
        .collect();
    Ok(HttpResponse::Ok().json(SearchPage { results, next_cursor }))
}

/// The route of search, with its documentation.
pub(crate) fn routes(m: &mut Mount) {
    m.tagged("Search").at(&["/search"], |r| {
        r.get(
            search,
            op("Search messages")
                .describe(
                    "Full-text search over the messages of the rooms the caller is a member of. Of a room the caller \
                     left (or was removed from) only the messages up to the moment they left are found, and not those \
                     edited since; a banned user finds nothing of the room. Deleted messages are never found; an \
                     edited message is found by its new words. Words are matched in the tenant's `search_language` \
                     (settings; `simple` by default). Best match first, then newest.",
                )
                .user()
                .query::<SearchParams>()
                .reply_example::<SearchPage>(
                    200,
                    "A page of results.",
                    json!({
                        "results": [{
                            "message": {
                                "message_id": "msg_0193c5f2a7e87d3a9b1f4e2c8d6a0b11",
                                "room_id": "room_0193c5f1d2a07b4c8e3f9a1b2c3d4e5f",
                                "sender_id": "bob",
                                "sender_name": "Bob",
                                "seq": 43,
                                "content": "The address is 12 Blue Bike Lane",
                                "meta": null,
                                "client_msg_id": null,
                                "created_at": "2025-12-13T12:10:00.000000Z",
                                "edited_at": null,
                                "deleted_at": null,
                            },
                            "snippet": "The <mark>address</mark> is 12 <mark>Blue</mark> <mark>Bike</mark> Lane",
                            "score": 0.3,
                        }],
                        "next_cursor": null,
                    }),
                )
                .errors(&[400, 401, 503]),
        )
    });
}
