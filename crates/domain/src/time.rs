//! Timestamps: ISO 8601 in UTC with microseconds, e.g. `2025-12-13T12:00:00.123456Z`,
//! which PostgreSQL `timestamptz` stores without loss.

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats a timestamp the way every API prints it.
pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Now, truncated to microseconds so that what is stored equals what was returned.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// `serde(with = "chat_domain::time::micros")` for `DateTime<Utc>` fields.
pub mod micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

/// `serde(with = "chat_domain::time::micros_opt")` for `Option<DateTime<Utc>>` fields.
pub mod micros_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::format(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Renders a duration as `2h30m45s`, the health endpoint's uptime format.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_micros_and_z() {
        let t = DateTime::from_timestamp_micros(1_765_627_200_123_456).unwrap_or_default();
        assert_eq!(format(&t), "2025-12-13T12:00:00.123456Z");
    }

    #[test]
    fn uptime_format() {
        assert_eq!(human_duration(std::time::Duration::from_secs(9045)), "2h30m45s");
        assert_eq!(human_duration(std::time::Duration::from_secs(61)), "1m1s");
        assert_eq!(human_duration(std::time::Duration::from_secs(5)), "5s");
    }
}
