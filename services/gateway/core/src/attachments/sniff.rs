//! What an upload is, decided from its bytes alone.
//!
//! The client's `Content-Type` is ignored, and its file name never makes bytes pass for
//! something they are not: a type comes from the file's magic numbers (the `infer` crate) in its first [`HEAD`] bytes. Bytes with no
//! known signature are `text/plain` when the *whole* file is UTF-8 text without NUL or
//! other control characters (tab, line feed, carriage return and form feed are fine),
//! and `application/octet-stream` otherwise. Text is checked as it streams
//! ([`TextCheck`]), so a file that starts as text and turns binary later is refused
//! like any other disallowed type. The one use of the name: text named `*.csv` is
//! `text/csv` ([`refine`]).

/// How many leading bytes are read before the type is decided (every signature
/// `infer` knows fits in far less; a text decision also needs a stretch to look at).
pub const HEAD: usize = 8 * 1024;

/// Plain text: what bytes without a signature are when they are UTF-8 text.
pub const TEXT: &str = "text/plain";
/// Anything else without a signature.
pub const BINARY: &str = "application/octet-stream";

/// The type of a file starting with `head` (at most [`HEAD`] bytes; shorter only when
/// that is the whole file). For [`TEXT`], the rest must pass a [`TextCheck`] too.
pub fn sniff(head: &[u8]) -> &'static str {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type();
    }
    let mut check = TextCheck::default();
    if check.feed(head) { TEXT } else { BINARY }
}

/// Plain text named `*.csv` by the client: the bytes show it is text, and text is safe
/// to label either way, so the extension only picks between the two text types.
pub const CSV: &str = "text/csv";

/// The type to store a file as: what [`sniff`] found, except that text the client
/// named `*.csv` is [`CSV`].
pub fn refine(sniffed: &'static str, filename: &str) -> &'static str {
    let csv = filename.rsplit_once('.').is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("csv"));
    if sniffed == TEXT && csv { CSV } else { sniffed }
}

/// Whether the tenant's `upload_allowed_types` (lower-case `type/subtype` each) lists `mime`.
pub fn allowed(mime: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| a == mime)
}

/// Types a browser may show in place (`Content-Disposition: inline`); everything else
/// is served as a download. Never HTML, SVG or anything that runs script.
pub fn inline(mime: &str) -> bool {
    matches!(mime, "image/png" | "image/jpeg" | "image/gif" | "image/webp" | TEXT)
}

/// The `Content-Type` to serve a stored type with.
pub fn content_type(mime: &str) -> String {
    if mime == TEXT || mime == CSV { format!("{mime}; charset=utf-8") } else { mime.to_owned() }
}

/// Checks that a stream of chunks is UTF-8 text, across chunk boundaries.
#[derive(Debug, Default)]
pub struct TextCheck {
    /// The start of a character split by a chunk boundary (at most 3 bytes).
    carry: Vec<u8>,
}

impl TextCheck {
    /// Feeds the next chunk; `false` once the stream cannot be text.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let mut joined;
        let bytes = if self.carry.is_empty() {
            chunk
        } else {
            joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(chunk);
            &joined[..]
        };
        let (valid, rest) = match std::str::from_utf8(bytes) {
            Ok(s) => (s, &[][..]),
            // An incomplete character at the very end may finish in the next chunk.
            Err(e) if e.error_len().is_none() => {
                let (ok, rest) = bytes.split_at(e.valid_up_to());
                (std::str::from_utf8(ok).unwrap_or_default(), rest)
            }
            Err(_) => return false,
        };
        if valid.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{c}')) {
            return false;
        }
        self.carry = rest.to_vec();
        true
    }

    /// Whether the stream ended on a whole character.
    pub fn finish(&self) -> bool {
        self.carry.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(sniff(PNG), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff("héllo wörld\r\n\ttabs".as_bytes()), TEXT);
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0"), "application/vnd.microsoft.portable-executable");
        assert_eq!(sniff(b"hello\0world"), BINARY);
        assert_eq!(sniff(&[0xff, 0xfe, 0x00, 0x41]), BINARY);
    }

    #[test]
    fn text_is_checked_across_chunks() {
        let text = "ab€cd".as_bytes();
        let mut check = TextCheck::default();
        // Split inside the three bytes of `€`.
        assert!(check.feed(&text[..3]) && check.feed(&text[3..4]) && check.feed(&text[4..]));
        assert!(check.finish());
        let mut cut = TextCheck::default();
        assert!(cut.feed(&text[..3]));
        assert!(!cut.finish(), "a stream ending inside a character is not text");
        let mut binary = TextCheck::default();
        assert!(binary.feed(b"fine so far"));
        assert!(!binary.feed(b"then \x01 a control byte"));
    }

    #[test]
    fn csv_is_text_named_csv() {
        assert_eq!(refine(TEXT, "report.CSV"), CSV);
        assert_eq!(refine(TEXT, "report.txt"), TEXT);
        assert_eq!(refine("image/png", "fake.csv"), "image/png");
        let defaults: Vec<String> =
            chat_domain::settings::DEFAULT_UPLOAD_ALLOWED_TYPES.iter().map(|t| (*t).to_owned()).collect();
        assert!(allowed("image/png", &defaults) && allowed(CSV, &defaults));
        assert!(!allowed("text/html", &defaults) && !allowed(BINARY, &defaults));
    }
}
