//! How deep JSON may nest anywhere in the system.
//!
//! serde_json refuses input nested deeper than 128 levels. A value accepted at 126
//! levels used to be stored, and every reply that wraps it (the bus envelope, a history
//! page, a WebSocket frame) then passed 128 and could not be read back: one message
//! broke its room's history for good. So JSON is limited to [`MAX_DEPTH`] levels where
//! it enters (REST bodies, WebSocket frames, bus commands), far below what any envelope
//! around a stored value needs.
//!
//! Depth counts containers: `1` and `"a"` are 0 deep, `{}` and `[]` 1, `{"a":[1]}` 2.

use serde_json::Value;

use crate::error::ApiError;

/// The deepest JSON a client may send: a request body, a WebSocket frame, or a stored
/// value such as `meta` or a notification's `payload`.
pub const MAX_DEPTH: usize = 32;

/// Levels a bus command may add around a client's value (the command's own object, a
/// batch's array and its item): commands nested deeper than
/// `MAX_DEPTH + COMMAND_ENVELOPE_DEPTH` are refused before they are parsed.
pub const COMMAND_ENVELOPE_DEPTH: usize = 8;

/// Whether the JSON text `raw` nests deeper than `max` levels. Reads the bytes only
/// (brackets outside strings), so it is cheap and works on input serde would refuse;
/// malformed JSON is left for the parser to report.
pub fn nests_deeper_than(raw: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in raw {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// How deep `value` nests, counting at most `max + 1` levels (so a deep value costs no
/// deep recursion).
pub fn depth(value: &Value, max: usize) -> usize {
    fn walk(v: &Value, at: usize, cap: usize) -> usize {
        if at >= cap {
            return at;
        }
        match v {
            Value::Array(items) => items.iter().map(|i| walk(i, at + 1, cap)).max().unwrap_or(at + 1),
            Value::Object(map) => map.values().map(|i| walk(i, at + 1, cap)).max().unwrap_or(at + 1),
            _ => at,
        }
    }
    walk(value, 0, max + 1)
}

/// `VALIDATION_ERROR` naming `field` when `value` nests deeper than [`MAX_DEPTH`].
pub fn check_depth(field: &str, value: &Value) -> Result<(), ApiError> {
    if depth(value, MAX_DEPTH) > MAX_DEPTH {
        return Err(too_deep(field));
    }
    Ok(())
}

/// The error for JSON nested deeper than [`MAX_DEPTH`], naming `field`.
pub fn too_deep(field: &str) -> ApiError {
    ApiError::validation(field, format!("{field} must not nest JSON deeper than {MAX_DEPTH} levels"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "{\"a\":".repeat(levels), "1".to_owned() + &"}".repeat(levels))
    }

    #[test]
    fn raw_depth_counts_containers_outside_strings() {
        assert!(!nests_deeper_than(b"1", 0));
        assert!(nests_deeper_than(b"{}", 0));
        assert!(!nests_deeper_than(b"{}", 1));
        assert!(!nests_deeper_than(br#"{"a":[1],"b":{"c":[]}}"#, 3));
        assert!(nests_deeper_than(br#"{"a":[1],"b":{"c":[]}}"#, 2));
        assert!(!nests_deeper_than(br#"{"a":"[[[[{{{{\"[[["}"#, 1), "brackets in strings do not count");
        assert!(!nests_deeper_than(nested(MAX_DEPTH).as_bytes(), MAX_DEPTH));
        assert!(nests_deeper_than(nested(MAX_DEPTH + 1).as_bytes(), MAX_DEPTH));
        assert!(nests_deeper_than("[".repeat(100_000).as_bytes(), MAX_DEPTH), "malformed input is still measured");
    }

    #[test]
    fn value_depth_agrees_with_the_raw_reading() -> Result<(), serde_json::Error> {
        for levels in [0, 1, 5, MAX_DEPTH, MAX_DEPTH + 1, 100] {
            let v: Value = serde_json::from_str(&nested(levels))?;
            assert_eq!(depth(&v, 200), levels);
            assert_eq!(check_depth("meta", &v).is_ok(), levels <= MAX_DEPTH);
            assert_eq!(nests_deeper_than(nested(levels).as_bytes(), MAX_DEPTH), levels > MAX_DEPTH);
        }
        assert_eq!(depth(&serde_json::json!({"a": [], "b": {}}), 10), 2);
        assert_eq!(depth(&serde_json::json!("x"), 10), 0);
        Ok(())
    }
}
