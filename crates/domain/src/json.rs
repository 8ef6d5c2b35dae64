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
//!
//! Numbers, likewise, are checked where they enter ([`unfaithful_number`]): every
//! number a client writes must read back as the same number through every path
//! (serde_json as an IEEE double or a 64-bit integer, PostgreSQL's `jsonb` as an exact
//! decimal). `1.7976931348623157e308` used to be accepted, stored as a 309-digit
//! `jsonb` integer, and then fail every read (serde_json's fast float parser
//! overflowed on it: "Invalid Json" from diesel, `500` for every list that held it).
//! The workspace now parses with serde_json's `float_roundtrip`, and a number that
//! would change on the way (more digits than a double keeps, an integer past 64 bits,
//! beyond a double's range, or a negative zero, which `jsonb` has not) is refused at
//! the door with `400 VALIDATION_ERROR`.

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

/// What every service checks of a client's value before storing it (`meta`, metadata,
/// a notification's `payload`): [`check_depth`], and no number the bus carried that
/// `jsonb` would change (a negative zero; the rest of [`unfaithful_number`] needs the
/// client's text and is checked by the gateway where it arrives).
pub fn check_stored(field: &str, value: &Value) -> Result<(), ApiError> {
    check_depth(field, value)?;
    fn negative_zero(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.as_f64().is_some_and(|x| x == 0.0 && x.is_sign_negative()),
            Value::Array(items) => items.iter().any(negative_zero),
            Value::Object(map) => map.values().any(negative_zero),
            _ => false,
        }
    }
    if negative_zero(value) {
        return Err(unfaithful(field, "-0"));
    }
    Ok(())
}

/// The error for JSON nested deeper than [`MAX_DEPTH`], naming `field`.
pub fn too_deep(field: &str) -> ApiError {
    ApiError::validation(field, format!("{field} must not nest JSON deeper than {MAX_DEPTH} levels"))
}

/// The first number in the JSON text `raw` (outside strings) that would not read back
/// as written, if any, shortened for an error message. Like [`nests_deeper_than`] it
/// reads the bytes only; malformed JSON is left for the parser to report.
///
/// A number reads back as written when serde_json keeps it exactly: an integer that
/// fits `i64` or `u64`, or a decimal whose value equals the shortest decimal of the
/// double nearest to it (what serde_json writes and `jsonb` stores) — so `0.1`,
/// `1e300` and `1.7976931348623157e308` pass, and `0.10000000000000000001`,
/// `18446744073709551616`, `1e400`, `1e-400` and `-0` do not.
pub fn unfaithful_number(raw: &[u8]) -> Option<String> {
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < raw.len() && matches!(raw[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                let token = String::from_utf8_lossy(&raw[start..i]);
                if !number_reads_back(&token) {
                    let mut shown: String = token.chars().take(40).collect();
                    if token.len() > 40 {
                        shown.push('…');
                    }
                    return Some(shown);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether the JSON number `token` survives serde_json and `jsonb` unchanged (see
/// [`unfaithful_number`]). A token that is not a number passes (the parser refuses it).
pub fn number_reads_back(token: &str) -> bool {
    let Some(written) = Decimal::parse(token) else {
        return true;
    };
    if written.negative && written.digits.is_empty() {
        // `-0`: `jsonb` keeps no sign on zero.
        return false;
    }
    if !token.contains(['.', 'e', 'E']) && (token.parse::<i64>().is_ok() || token.parse::<u64>().is_ok()) {
        return true;
    }
    match token.parse::<f64>() {
        Ok(x) if x.is_finite() => Decimal::parse(&format!("{x:e}")).is_some_and(|kept| kept == written),
        _ => false,
    }
}

/// A decimal number as `±digits × 10^exp`, `digits` without leading or trailing zeros
/// (empty for zero, whose `exp` is 0).
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exp: i64,
}

impl Decimal {
    fn parse(token: &str) -> Option<Decimal> {
        let (negative, rest) = match token.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, token),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(at) => {
                let e = &rest[at + 1..];
                let e = e.strip_prefix('+').unwrap_or(e);
                let (neg, mag) = match e.strip_prefix('-') {
                    Some(m) => (true, m),
                    None => (false, e),
                };
                if mag.is_empty() || !mag.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                // Past any double's range either way; saturating keeps the comparison honest.
                let mag = mag.trim_start_matches('0');
                let mag: i64 = if mag.is_empty() { 0 } else { mag.parse().unwrap_or(1_000_000_000) };
                (&rest[..at], if neg { -mag } else { mag })
            }
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let all = format!("{int}{frac}");
        let mut exp = exp - frac.len() as i64;
        let trimmed = all.trim_start_matches('0');
        let digits = trimmed.trim_end_matches('0');
        if digits.is_empty() {
            return Some(Decimal { negative, digits: String::new(), exp: 0 });
        }
        exp += (trimmed.len() - digits.len()) as i64;
        Some(Decimal { negative, digits: digits.to_owned(), exp })
    }
}

/// The error for a number that would not read back as written, naming `field`.
pub fn unfaithful(field: &str, number: &str) -> ApiError {
    ApiError::validation(
        field,
        format!(
            "{field} holds a number that cannot be stored exactly ({number}): numbers must fit a 64-bit integer or an IEEE double without rounding, and -0 is not kept"
        ),
    )
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

    #[test]
    fn numbers_that_read_back_pass_and_others_are_named() {
        for ok in [
            "0",
            "1",
            "-1",
            "0.0",
            "1.0",
            "0.1",
            "1e300",
            "1E+2",
            "5e-324",
            "1.7976931348623157e308",
            "-1.7976931348623157e308",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551615",
            "100000000000000000000",
            "0.30000000000000004",
            "2.5e-7",
            "123.456",
        ] {
            assert!(number_reads_back(ok), "{ok} reads back");
        }
        for bad in [
            "-0",
            "-0.0",
            "-0e5",
            "1e400",
            "-1e400",
            "1e-400",
            "18446744073709551616",
            "123456789012345678901234567890",
            "0.12345678901234567890123",
            "1.79769313486231581e308",
            "1e999999999999999999999",
        ] {
            assert!(!number_reads_back(bad), "{bad} does not read back");
        }
        assert_eq!(unfaithful_number(br#"{"a":[1,2.5,{"b":-0}]}"#).as_deref(), Some("-0"));
        assert_eq!(unfaithful_number(br#"{"a":"-0 1e400","b":1e308}"#), None, "numbers in strings do not count");
        assert_eq!(unfaithful_number(br#"{"a\"":1e400}"#).as_deref(), Some("1e400"));
        assert_eq!(unfaithful_number(b"1.7976931348623157e308"), None);
    }

    #[test]
    fn what_passes_reads_back_through_serde_json() -> Result<(), serde_json::Error> {
        for text in ["1.7976931348623157e308", "5e-324", "0.30000000000000004", "1e300", "100000000000000000000"] {
            let v: Value = serde_json::from_str(text)?;
            let written = serde_json::to_string(&v)?;
            // `jsonb` gives an exact decimal back, often without the exponent.
            let as_jsonb = match text {
                "1e300" => format!("1{}", "0".repeat(300)),
                "1.7976931348623157e308" => format!("17976931348623157{}", "0".repeat(292)),
                _ => written.clone(),
            };
            let back: Value = serde_json::from_str(&as_jsonb)?;
            assert_eq!(back.as_f64(), v.as_f64(), "{text} written as {written}");
        }
        Ok(())
    }
}
