//! Why one of the app's queries failed, sorted by what the caller should
//! answer: later (503), the request's own fault (4xx), or a bug (500).

/// A failed query of the app, classified once in each store's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppDbError {
    /// The store cannot be reached or is too busy: the same request may
    /// succeed later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The tenant's schema lacks a table or column the query needs: its
    /// migrations are behind what the guard last knew.
    #[error("the tenant's schema is incomplete: {0}")]
    SchemaIncomplete(String),
    /// A user with this username exists.
    #[error("the username is taken")]
    UsernameTaken,
    /// The store refused the values given (too long, not text, …).
    #[error("the database refused the values: {0}")]
    Rejected(String),
    /// Anything else: a bug in the app or the store.
    #[error("the query failed: {0}")]
    Failed(String),
}

/// Classifies a PostgreSQL error.
pub(super) fn from_postgres(e: &tokio_postgres::Error) -> AppDbError {
    use tokio_postgres::error::SqlState;
    let Some(db) = e.as_db_error() else {
        return AppDbError::Unavailable(e.to_string());
    };
    let code = db.code();
    let text = db.message().to_owned();
    let class = &code.code()[..2];
    if *code == SqlState::UNIQUE_VIOLATION {
        AppDbError::UsernameTaken
    } else if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN {
        AppDbError::SchemaIncomplete(text)
    } else if matches!(class, "08" | "53" | "57" | "40") {
        // Connection, resources, operator intervention, rollback (serialization, deadlock).
        AppDbError::Unavailable(text)
    } else if matches!(class, "22" | "23") {
        // Data exceptions and integrity constraints: the values given.
        AppDbError::Rejected(text)
    } else {
        AppDbError::Failed(text)
    }
}

/// Classifies a SQLite error.
pub(super) fn from_sqlite(e: &rusqlite::Error) -> AppDbError {
    use rusqlite::ErrorCode;
    let text = e.to_string();
    match e.sqlite_error() {
        Some(f) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
            AppDbError::UsernameTaken
        }
        Some(f) => match f.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::OutOfMemory
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::NotADatabase
            | ErrorCode::DatabaseCorrupt => AppDbError::Unavailable(text),
            ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch => {
                AppDbError::Rejected(text)
            }
            _ if text.contains("no such table") || text.contains("no such column") => {
                AppDbError::SchemaIncomplete(text)
            }
            _ => AppDbError::Failed(text),
        },
        None => AppDbError::Failed(text),
    }
}
