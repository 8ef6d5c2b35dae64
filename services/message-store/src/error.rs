//! Errors inside message-store, how they become reply envelopes, and the helpers that
//! read a query's outcome (a stored id that does not parse, a row that is not there).

use chat_domain::ApiError;

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A failure the caller should see as-is (not found, forbidden, conflict...).
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(String),
    /// Stored data that does not parse back into domain types.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<diesel_async::pooled_connection::bb8::RunError> for StoreError {
    fn from(e: diesel_async::pooled_connection::bb8::RunError) -> Self {
        StoreError::Pool(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Api(e) => e,
            StoreError::Pool(cause) => {
                tracing::error!(%cause, "no database connection");
                ApiError::unavailable("The database is unavailable")
            }
            // The connection died under the query (PostgreSQL restarting, the network):
            // an outage the caller may retry through, not a bug.
            StoreError::Db(ref e) if connection_lost(e) => {
                tracing::error!(error = %e, "the database connection was lost");
                ApiError::unavailable("The database is unavailable")
            }
            // A server that no longer takes writes (a primary demoted by a failover,
            // or shutting down): the next connection finds the new primary.
            StoreError::Db(ref e) if not_primary(e) => {
                tracing::error!(error = %e, "the database server is not (or no longer) the primary");
                ApiError::unavailable("The database is failing over; retry")
            }
            // A room or tenant that went away under the statement: only a tenant moving
            // to another cluster removes them (see moves.rs); the retry goes there.
            StoreError::Db(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                ref info,
            )) => {
                tracing::warn!(message = info.message(), "a write met a tenant that moved to another cluster");
                ApiError::unavailable("The tenant's data moved to another database cluster; retry")
            }
            other => {
                tracing::error!(error = %other, "store operation failed");
                ApiError::internal()
            }
        }
    }
}

/// Whether a database error means the connection is gone rather than the statement
/// being wrong.
pub fn connection_lost(e: &diesel::result::Error) -> bool {
    use diesel::result::DatabaseErrorKind::{ClosedConnection, UnableToSendCommand};
    matches!(e, diesel::result::Error::DatabaseError(ClosedConnection | UnableToSendCommand, _))
}

/// Whether the server refused a statement because it is not (or no longer) a writable
/// primary: `25006 read_only_sql_transaction` (a demoted primary), the `57P0x`
/// terminations a server sends its sessions as it goes down (`admin_shutdown`,
/// `crash_shutdown`: its postmaster was killed), or a server still in recovery.
pub fn not_primary(e: &diesel::result::Error) -> bool {
    const GOING_AWAY: [&str; 6] = [
        "read-only transaction",
        "terminating connection due to administrator command",
        "terminating connection due to unexpected postmaster exit",
        "terminating connection because of crash of another server process",
        "the database system is in recovery mode",
        "the database system is shutting down",
    ];
    match e {
        diesel::result::Error::DatabaseError(_, info) => GOING_AWAY.iter().any(|m| info.message().contains(m)),
        _ => false,
    }
}

/// Parses a stored id back into its domain type.
pub fn stored<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `Ok(None)` for diesel's `NotFound`.
pub fn optional<T>(r: Result<T, diesel::result::Error>) -> Result<Option<T>, diesel::result::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(diesel::result::Error::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error};

    struct Info(&'static str);

    impl DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn db(message: &'static str) -> super::StoreError {
        super::StoreError::Db(Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(Info(message))))
    }

    /// What a failover looks like to a statement in flight is a retryable 503, never a
    /// 500 (the chaos suite saw 500s while the primary died).
    #[test]
    fn a_primary_going_away_is_unavailable_not_internal() {
        for m in [
            "terminating connection due to unexpected postmaster exit",
            "cannot execute INSERT in a read-only transaction",
            "terminating connection due to administrator command",
        ] {
            assert_eq!(chat_domain::ApiError::from(db(m)).code, chat_domain::ErrorCode::ServiceUnavailable, "{m}");
        }
        assert_eq!(
            chat_domain::ApiError::from(db("syntax error at or near \"FORM\"")).code,
            chat_domain::ErrorCode::InternalError
        );
    }
}
