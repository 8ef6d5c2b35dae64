//! History: when users were online in a room, kept as intervals for the history time
//! (from when recording began), and answered for many spans in one round trip.
//! Offline notifications are decided from it after the fact.

use std::collections::BTreeMap;

use chat_domain::ids::UserId;
use chat_domain::proto::presence::{HistorySpan, Interval, RoomHistory, UserIntervals};
use chrono::{DateTime, Utc};

use crate::redis_state::handle::{SEP, State};

/// A stored time (milliseconds since the Unix epoch) as a date.
pub(super) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl State {
    /// Notes that history is recorded from now on, unless it already was.
    pub async fn start_history(&self, now: i64) -> redis::RedisResult<()> {
        let mut r = self.redis.clone();
        redis::cmd("SET").arg(self.global("since")).arg(now).arg("NX").query_async(&mut r).await
    }

    /// The intervals overlapping each span, in one round trip for all of them.
    pub async fn history(&self, spans: &[HistorySpan], now: i64) -> redis::RedisResult<Vec<RoomHistory>> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(self.global("since"));
        for span in spans {
            // Intervals that ended at or after the span's start (open ones included);
            // those that began after its end are left out below.
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.key("hist", &span.tenant_id, &span.room_id))
                .arg(span.from.timestamp_millis())
                .arg("+inf")
                .arg("WITHSCORES");
        }
        let mut r = self.redis.clone();
        let mut replies = pipe.query_async::<Vec<redis::Value>>(&mut r).await?.into_iter();
        let since: Option<i64> = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))?;
        // Spans starting before this are missing intervals (pruned, or never recorded).
        let kept_from = since.map_or(i64::MAX, |s| s.max(now - self.timing.history_ms));
        let mut out = Vec::with_capacity(spans.len());
        for span in spans {
            let found: Vec<(String, String)> = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))?;
            out.push(RoomHistory {
                tenant_id: span.tenant_id.clone(),
                room_id: span.room_id.clone(),
                complete: span.from.timestamp_millis() >= kept_from,
                users: overlapping(found, span),
            });
        }
        Ok(out)
    }
}

/// Groups `(user\x1ffrom, end)` pairs by user, keeping those that began by the span's end.
fn overlapping(found: Vec<(String, String)>, span: &HistorySpan) -> Vec<UserIntervals> {
    let mut users: BTreeMap<String, Vec<Interval>> = BTreeMap::new();
    for (member, end) in found {
        let Some((user, from)) = member.split_once(SEP) else { continue };
        let Ok(from) = from.parse::<i64>() else { continue };
        let from = time(from);
        if from > span.to {
            continue;
        }
        // Scores come back as integers, or "inf" while the interval is open.
        let to = end.parse::<i64>().ok().map(time);
        users.entry(user.to_owned()).or_default().push(Interval { from, to });
    }
    users
        .into_iter()
        .filter_map(|(user, mut intervals)| {
            intervals.sort_by_key(|i| i.from);
            Some(UserIntervals { user_id: UserId::parse(user).ok()?, intervals })
        })
        .collect()
}
