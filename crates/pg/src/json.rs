//! [`LenientJson`]: a `jsonb` column read so that one value that cannot be read never
//! fails the query it is in.
//!
//! diesel's own `serde_json::Value` reading fails the whole result set ("Invalid Json")
//! when one stored value does not parse — a number past a double's range written by
//! something other than the services, say — and every list holding that row then
//! answered `500`. Read through [`LenientJson`], such a value becomes `null` with a
//! logged error and a count in `chat_stored_json_unreadable_total`, and the row is
//! still listed. (What the services store is checked where it enters, see
//! `chat_domain::json::unfaithful_number`; this is the second line.)

use std::sync::LazyLock;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::Jsonb;
use serde_json::Value;

/// Stored JSON values that could not be read (and were shown as `null`).
pub static UNREADABLE: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    match prometheus::IntCounter::new(
        "chat_stored_json_unreadable_total",
        "Stored jsonb values that could not be parsed and were read as null",
    ) {
        Ok(c) => {
            let _ = prometheus::register(Box::new(c.clone()));
            c
        }
        Err(e) => panic!("metric definition is invalid: {e}"),
    }
});

/// A `jsonb` value; `null` (with an error logged) when what is stored cannot be parsed.
#[derive(Debug, Clone, PartialEq, Default, FromSqlRow)]
pub struct LenientJson(pub Value);

impl LenientJson {
    pub fn into_inner(self) -> Value {
        self.0
    }
}

impl LenientJson {
    /// Reads binary `jsonb`: a version byte (1) and the JSON text.
    fn from_binary(bytes: &[u8]) -> deserialize::Result<Self> {
        match bytes.split_first() {
            Some((1, text)) => Ok(LenientJson(match serde_json::from_slice(text) {
                Ok(v) => v,
                Err(e) => {
                    UNREADABLE.inc();
                    tracing::error!(error = %e, bytes = text.len(), "a stored jsonb value cannot be read; it is shown as null");
                    Value::Null
                }
            })),
            _ => Err("unsupported jsonb encoding version".into()),
        }
    }
}

impl FromSql<Jsonb, Pg> for LenientJson {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        Self::from_binary(value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_values_become_null() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let read = LenientJson::from_binary;
        assert_eq!(read(b"\x01{\"a\":1.5}")?.0, serde_json::json!({"a": 1.5}));
        let huge = format!("\x01{{\"a\":1{}}}", "0".repeat(400));
        assert_eq!(read(huge.as_bytes())?.0, Value::Null);
        assert_eq!(
            read(format!("\x01[17976931348623157{}]", "0".repeat(292)).as_bytes())?.0,
            serde_json::json!([f64::MAX])
        );
        assert!(read(b"\x02{}").is_err());
        Ok(())
    }
}
