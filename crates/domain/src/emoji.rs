//! What a reaction is: a Unicode emoji sequence or a short custom name, and the limits
//! on reactions (issue 23).
//!
//! An [`Emoji`] is either
//! - a Unicode emoji sequence: 1 to [`MAX_EMOJI_CHARS`] code points, at most
//!   [`MAX_EMOJI_BYTES`] bytes of UTF-8, each an emoji code point (pictographs, symbols,
//!   dingbats, regional indicators, ...) or a joiner / modifier (ZWJ U+200D, variation
//!   selectors U+FE0E/U+FE0F, skin tones U+1F3FB-U+1F3FF, tags U+E0020-U+E007F), with at
//!   least one emoji code point; `0-9`, `#` and `*` only as a keycap (with U+20E3); or
//! - a custom name `:name:`, the name 1 to [`MAX_CUSTOM_NAME`] of `a-z 0-9 _ + -`
//!   (`:party_parrot:`, `:+1:`).
//!
//! It is stored and shown exactly as given (no normalization: `👍` and `👍🏽` are two
//! reactions).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Longest emoji, in bytes of UTF-8.
pub const MAX_EMOJI_BYTES: usize = 64;
/// Most code points in a Unicode emoji sequence.
pub const MAX_EMOJI_CHARS: usize = 16;
/// Longest custom name between the colons.
pub const MAX_CUSTOM_NAME: usize = 32;
/// Most different emoji on one message.
pub const MAX_EMOJI_PER_MESSAGE: i64 = 50;
/// Most reactions (different emoji) one user may put on one message.
pub const MAX_REACTIONS_PER_USER: i64 = 20;
/// How many user ids a message's reaction summary shows per emoji (the first to react).
pub const REACTION_SAMPLE: usize = 3;

/// A validated reaction emoji (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Emoji(String);

impl JsonSchema for Emoji {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Emoji".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_EMOJI_BYTES,
            "description": "A Unicode emoji sequence (👍, 👍🏽, 🏳️‍🌈, 1️⃣) or a custom name `:name:` (1-32 of a-z 0-9 _ + -).",
            "examples": ["👍", ":party_parrot:"],
        })
    }
}

fn bad(why: &str) -> ApiError {
    ApiError::validation(
        "emoji",
        format!(
            "emoji must be a Unicode emoji sequence (at most {MAX_EMOJI_BYTES} bytes, {MAX_EMOJI_CHARS} code points) \
             or a custom name :name: (1-{MAX_CUSTOM_NAME} of a-z 0-9 _ + -): {why}"
        ),
    )
}

/// A code point that is an emoji on its own (or the start of one).
fn pictographic(c: char) -> bool {
    matches!(u32::from(c),
        0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x2122 | 0x2139 | 0x2194..=0x21AA | 0x231A..=0x23FF
        | 0x24C2 | 0x25AA..=0x25FE | 0x2600..=0x27BF | 0x2934 | 0x2935 | 0x2B00..=0x2BFF
        | 0x3030 | 0x303D | 0x3297 | 0x3299 | 0x1F000..=0x1F3FA | 0x1F400..=0x1FAFF)
}

/// A code point that only joins or modifies emoji.
fn modifier(c: char) -> bool {
    matches!(u32::from(c), 0x200D | 0xFE0E | 0xFE0F | 0x20E3 | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F)
}

impl Emoji {
    pub fn parse(s: impl Into<String>) -> Result<Self, ApiError> {
        let s = s.into();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.len() > MAX_EMOJI_BYTES {
            return Err(bad("it is too long"));
        }
        if let Some(name) = s.strip_prefix(':').and_then(|r| r.strip_suffix(':')) {
            let ok = (1..=MAX_CUSTOM_NAME).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_+-".contains(&b));
            return if ok { Ok(Self(s)) } else { Err(bad("not a valid custom name")) };
        }
        if s.chars().count() > MAX_EMOJI_CHARS {
            return Err(bad("too many code points"));
        }
        let keycap = s.contains('\u{20E3}');
        let mut emoji = false;
        for c in s.chars() {
            if pictographic(c) || (keycap && (c.is_ascii_digit() || c == '#' || c == '*')) {
                emoji = true;
            } else if !modifier(c) {
                return Err(bad(&format!("U+{:04X} is not part of an emoji", u32::from(c))));
            }
        }
        if emoji { Ok(Self(s)) } else { Err(bad("it has only modifiers")) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Emoji {
    type Error = ApiError;
    fn try_from(s: String) -> Result<Self, ApiError> {
        Self::parse(s)
    }
}

impl From<Emoji> for String {
    fn from(e: Emoji) -> String {
        e.0
    }
}

impl std::fmt::Display for Emoji {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_sequences_and_custom_names_are_accepted() {
        for ok in ["👍", "👍🏽", "❤️", "🏳️‍🌈", "👨‍👩‍👧‍👦", "🇫🇷", "1️⃣", "#️⃣", "☕", ":party_parrot:", ":+1:", "🏴󠁧󠁢󠁥󠁮󠁧󠁿"]
        {
            assert!(Emoji::parse(ok).is_ok(), "{ok:?} is an emoji");
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_field() {
        let long = ":".to_owned() + &"a".repeat(MAX_CUSTOM_NAME + 1) + ":";
        let many = "👍".repeat(MAX_EMOJI_CHARS + 1);
        for bad in ["", "a", "1", "👍a", ":Party:", "::", ":a b:", "\u{200D}", "\u{FE0F}", "<script>", &long, &many] {
            let e = Emoji::parse(bad).err();
            assert_eq!(e.and_then(|e| e.field), Some("emoji".to_owned()), "{bad:?} is refused");
        }
    }
}
