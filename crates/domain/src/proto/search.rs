//! Message search (`GET /search`, `GET /api/chat/search`): the command message-store
//! answers, its reply, and [`SearchQuery`], the user's query text compiled once, at the
//! edge, into PostgreSQL `tsquery` syntax.
//!
//! Who sees what: the messages of the rooms the caller is a member of; of a room they
//! left, only the messages up to the room's last `seq` when they left, and of those
//! only the ones not edited since (a banned user keeps nothing of the room). Deleted
//! messages are never found.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Command, Service, ServiceCommand};
use crate::ApiError;
use crate::ids::{RoomId, UserId};
use crate::model::{Actor, Message};

/// Longest query text, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most words (plain, phrase or prefix) in one query.
pub const MAX_QUERY_TERMS: usize = 16;
/// Largest page of results.
pub const MAX_SEARCH_LIMIT: u32 = 50;
/// Default page of results.
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;
/// How far a search can be paged (results skipped), so a page never costs more than
/// ranking this many matches.
pub const MAX_SEARCH_OFFSET: u32 = 1_000;
/// Shortest prefix before a trailing `*`: shorter ones match a large share of all
/// words (a two-letter prefix costs a search more than its whole result is worth).
pub const MIN_PREFIX_CHARS: usize = 3;

/// What the user typed, compiled to `tsquery` text: every word must match; `"two
/// words"` must match as a phrase (in that order, adjacent); `word*` matches words
/// starting with `word`. Only letters and digits reach the `tsquery`: every other
/// character separates words, so no input can inject `tsquery` operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SearchQuery(String);

impl SearchQuery {
    /// Compiles `q`. `VALIDATION_ERROR` on field `field` when it is empty, too long,
    /// has too many words, or no word at all.
    pub fn parse(field: &str, q: &str) -> Result<Self, ApiError> {
        let bad = |m: String| ApiError::validation(field, m);
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(bad(format!("{field} must be at most {MAX_QUERY_CHARS} characters")));
        }
        let mut parts: Vec<String> = Vec::new();
        let mut terms = 0usize;
        // Split on double quotes: odd segments are phrases (an unclosed quote runs to
        // the end).
        for (i, segment) in q.split('"').enumerate() {
            if i % 2 == 1 {
                let words = words(segment);
                terms += words.len();
                match words.len() {
                    0 => {}
                    1 => parts.push(words.concat()),
                    _ => parts.push(format!("({})", words.join(" <-> "))),
                }
                continue;
            }
            for token in segment.split_whitespace() {
                let prefix = token.ends_with('*');
                let words = words(token);
                terms += words.len();
                let n = words.len();
                for (k, w) in words.into_iter().enumerate() {
                    if prefix && k + 1 == n {
                        if w.chars().count() < MIN_PREFIX_CHARS {
                            return Err(bad(format!(
                                "a prefix ({w}*) must have at least {MIN_PREFIX_CHARS} letters or digits"
                            )));
                        }
                        parts.push(format!("{w}:*"));
                    } else {
                        parts.push(w);
                    }
                }
            }
        }
        if terms > MAX_QUERY_TERMS {
            return Err(bad(format!("{field} may have at most {MAX_QUERY_TERMS} words")));
        }
        if parts.is_empty() {
            return Err(bad(format!("{field} must contain at least one letter or digit")));
        }
        Ok(Self(parts.join(" & ")))
    }

    /// The `tsquery` text (for `to_tsquery(language, ...)`).
    pub fn as_tsquery(&self) -> &str {
        &self.0
    }
}

/// The runs of letters and digits of `s`, lower-cased.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Search the messages the caller may read (see the module documentation), best
/// match first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SearchMessages {
    pub actor: Actor,
    pub query: SearchQuery,
    /// Only this room's messages.
    pub room_id: Option<RoomId>,
    /// Only this user's messages.
    pub sender_id: Option<UserId>,
    /// Only messages created before this time.
    #[serde(default, with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub before: Option<DateTime<Utc>>,
    /// Only messages created after this time.
    #[serde(default, with = "crate::time::micros_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub after: Option<DateTime<Utc>>,
    /// Results skipped (from the page cursor), at most [`MAX_SEARCH_OFFSET`].
    pub offset: u32,
    /// Most results, 1 to [`MAX_SEARCH_LIMIT`].
    pub limit: u32,
}

/// One message found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchHit {
    /// The message as history shows it.
    pub message: Message,
    /// A short extract of the content around the matches, each match between the
    /// characters U+E000 and U+E001 (the dialects turn them into their own markup).
    pub snippet: String,
    /// How well it matches (higher is better; only comparable within one search).
    pub score: f32,
}

/// A page of results, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    /// Whether a next page may hold more.
    pub more: bool,
}

impl Command for SearchMessages {
    const VERB: &'static str = "search_messages";
    type Reply = SearchResults;
}
impl ServiceCommand for SearchMessages {
    const SERVICE: Service = Service::MessageStore;
}

/// Where a match starts and ends in [`SearchHit::snippet`].
pub const MATCH_START: char = '\u{E000}';
pub const MATCH_END: char = '\u{E001}';

/// A snippet as HTML: its text escaped, each match in `<mark>...</mark>`.
pub fn snippet_html(snippet: &str) -> String {
    let mut out = String::with_capacity(snippet.len() + 16);
    for c in snippet.chars() {
        match c {
            MATCH_START => out.push_str("<mark>"),
            MATCH_END => out.push_str("</mark>"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<String, String> {
        SearchQuery::parse("q", s).map(|q| q.0).map_err(|e| e.message)
    }

    #[test]
    fn words_phrases_and_prefixes_compile() {
        assert_eq!(q("Hello world"), Ok("hello & world".into()));
        assert_eq!(q("\"two words\" more"), Ok("(two <-> words) & more".into()));
        assert_eq!(q("addr*"), Ok("addr:*".into()));
        assert_eq!(q("e-mail*"), Ok("e & mail:*".into()));
        assert_eq!(q("\"unclosed phrase here"), Ok("(unclosed <-> phrase <-> here)".into()));
        assert_eq!(q("Straße 12"), Ok("straße & 12".into()));
    }

    #[test]
    fn operators_never_reach_the_tsquery() {
        assert_eq!(q("a & b | !c <-> ddd:* 'x'"), Ok("a & b & c & ddd:* & x".into()));
        assert_eq!(q("(a) \\ ''"), Ok("a".into()));
    }

    #[test]
    fn empty_long_and_short_prefixes_are_refused() {
        assert!(q("").is_err());
        assert!(q("  \"\" ** !!").is_err());
        assert!(q("a*").is_err());
        assert!(q("ab*").is_err());
        assert!(q("abc*").is_ok());
        assert!(q(&"x".repeat(MAX_QUERY_CHARS + 1)).is_err());
        assert!(q(&"w ".repeat(MAX_QUERY_TERMS + 1)).is_err());
        assert!(q(&"w ".repeat(MAX_QUERY_TERMS)).is_ok());
    }

    #[test]
    fn snippets_are_escaped() {
        assert_eq!(snippet_html("<b>\u{E000}hi\u{E001} & 'x'"), "&lt;b&gt;<mark>hi</mark> &amp; &#39;x&#39;");
    }
}
