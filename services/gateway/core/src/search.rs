//! What the REST dialects read alike of a message search (`GET /search`, `GET
//! /api/chat/search`): the query text, the time bounds, the page size and the opaque
//! page cursor. Each dialect names the parameters in its own words and renders the
//! results in its own shape; the command is the same.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat_domain::ApiError;
use chat_domain::proto::search::{DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT, MAX_SEARCH_OFFSET, SearchQuery};
use chrono::{DateTime, Utc};

use crate::body::Query;

/// The parameter names of one dialect.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    pub q: &'static str,
    pub before: &'static str,
    pub after: &'static str,
    pub limit: &'static str,
    pub cursor: &'static str,
}

/// The dialect-neutral parts of a search request.
#[derive(Debug)]
pub struct SearchPage {
    pub query: SearchQuery,
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
    pub offset: u32,
    pub limit: u32,
}

/// Reads the query text (required), the time bounds (ISO 8601), `limit` (1 to 50,
/// default 20) and the cursor of a previous page.
pub fn read(q: &Query, n: Names) -> Result<SearchPage, ApiError> {
    let text = q.get_str(n.q).ok_or_else(|| ApiError::validation(n.q, format!("{} is required", n.q)))?;
    let query = SearchQuery::parse(n.q, text)?;
    let time = |name: &'static str| {
        q.get_str(name)
            .map(|t| {
                DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                    ApiError::validation(name, format!("{name} must be an ISO 8601 time, e.g. 2025-12-13T12:00:00Z"))
                })
            })
            .transpose()
    };
    let limit = q.int(n.limit, 1, i64::from(MAX_SEARCH_LIMIT))?.map_or(DEFAULT_SEARCH_LIMIT, |l| l as u32);
    let offset = q.get_str(n.cursor).map(|c| decode_cursor(n.cursor, c)).transpose()?.unwrap_or(0);
    Ok(SearchPage { query, before: time(n.before)?, after: time(n.after)?, offset, limit })
}

/// The cursor of the page after one that started at `offset` and held `len` results,
/// when more may follow and paging may go that far.
pub fn next_cursor(offset: u32, len: usize, more: bool) -> Option<String> {
    let next = offset.saturating_add(len as u32);
    (more && next <= MAX_SEARCH_OFFSET).then(|| URL_SAFE_NO_PAD.encode(format!("s1:{next}")))
}

fn decode_cursor(name: &str, cursor: &str) -> Result<u32, ApiError> {
    let bad = || ApiError::validation(name, format!("{name} is not a cursor this API returned"));
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&raw).map_err(|_| bad())?;
    let offset: u32 = text.strip_prefix("s1:").and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    if offset > MAX_SEARCH_OFFSET {
        return Err(bad());
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        let c = next_cursor(20, 20, true).unwrap_or_default();
        assert_eq!(decode_cursor("cursor", &c).ok(), Some(40));
        assert!(next_cursor(20, 5, false).is_none());
        assert!(next_cursor(MAX_SEARCH_OFFSET, 20, true).is_none());
        assert!(decode_cursor("cursor", "abc").is_err());
        assert!(decode_cursor("cursor", &URL_SAFE_NO_PAD.encode("s1:999999")).is_err());
        assert!(decode_cursor("cursor", &URL_SAFE_NO_PAD.encode("s1:-1")).is_err());
    }
}
