//! Who missed what, from presence history alone: a member missed a message when they
//! did not send it and had no socket open in the room at any moment from the message's
//! `created_at` to the end of the grace period after it. Only the history as of the
//! message's time counts, so the answer does not depend on when the pass runs.

use chat_domain::proto::presence::Interval;
use chrono::{DateTime, TimeDelta, Utc};

/// Whether a member with these intervals had a socket open at some moment of
/// `[at, at + grace]`.
pub fn present(intervals: &[Interval], at: DateTime<Utc>, grace: TimeDelta) -> bool {
    let until = at + grace;
    intervals.iter().any(|i| i.from <= until && i.to.is_none_or(|to| to >= at))
}

/// Whether [`present`] holds for every moment of `[from, to)`: such a member missed
/// nothing sent then, whatever was sent, and their messages need not be read.
pub fn present_throughout(intervals: &[Interval], from: DateTime<Utc>, to: DateTime<Utc>, grace: TimeDelta) -> bool {
    // A message at `t` was seen when some interval has `from - grace <= t <= to`.
    let mut spans: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> =
        intervals.iter().map(|i| (i.from - grace, i.to)).collect();
    spans.sort_by_key(|s| s.0);
    let mut covered = from;
    for (start, end) in spans {
        if start > covered {
            break;
        }
        match end {
            None => return true,
            // `end` itself is covered; the next instant must be covered by another span.
            Some(end) if end >= covered => covered = end + TimeDelta::microseconds(1),
            Some(_) => {}
        }
        if covered >= to {
            return true;
        }
    }
    covered >= to
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    fn iv(from: i64, to: Option<i64>) -> Interval {
        Interval { from: t(from), to: to.map(t) }
    }

    const GRACE: TimeDelta = TimeDelta::seconds(3);

    #[test]
    fn a_socket_open_across_the_message_and_its_grace_saw_it() {
        assert!(present(&[iv(0, Some(20))], t(10), GRACE));
        assert!(present(&[iv(0, None)], t(10), GRACE));
    }

    #[test]
    fn opening_within_the_grace_or_closing_after_the_message_counts() {
        assert!(present(&[iv(12, Some(30))], t(10), GRACE), "opened 2 s after");
        assert!(present(&[iv(13, Some(30))], t(10), GRACE), "opened at the end of the grace");
        assert!(present(&[iv(0, Some(10))], t(10), GRACE), "closed as it arrived");
    }

    #[test]
    fn no_socket_in_the_span_missed_it() {
        assert!(!present(&[], t(10), GRACE));
        assert!(!present(&[iv(0, Some(9))], t(10), GRACE), "closed just before");
        assert!(!present(&[iv(14, None)], t(10), GRACE), "opened after the grace");
        assert!(!present(&[iv(0, Some(5)), iv(20, None)], t(10), GRACE));
    }

    #[test]
    fn throughout_needs_every_moment_covered() {
        let (from, to) = (t(0), t(15));
        assert!(present_throughout(&[iv(-5, None)], from, to, GRACE));
        assert!(present_throughout(&[iv(2, None)], from, to, GRACE), "opened within the grace of the start");
        assert!(!present_throughout(&[iv(4, None)], from, to, GRACE), "a message at 0 was missed");
        assert!(present_throughout(&[iv(-5, Some(16))], from, to, GRACE));
        assert!(!present_throughout(&[iv(-5, Some(10))], from, to, GRACE), "a message at 11 was missed");
        assert!(present_throughout(&[iv(-5, Some(8)), iv(10, None)], from, to, GRACE), "gap shorter than the grace");
        assert!(!present_throughout(&[iv(-5, Some(5)), iv(10, None)], from, to, GRACE), "gap longer than the grace");
        assert!(!present_throughout(&[], from, to, GRACE));
    }
}
