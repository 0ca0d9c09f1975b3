//! Running SQLite work off the async runtime, and stopping it when the
//! caller gives up (Ctrl-C drops the future: the work is interrupted and its
//! transaction rolled back).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use fallible_iterator::FallibleIterator;
use rusqlite::{Batch, Connection, ErrorCode};

use crate::{DbError, Error};

/// Runs `work` on the blocking pool; a panic in it resumes in the caller.
pub(crate) async fn blocking<T, F>(work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A flag raised when the awaiting future is dropped, and the deadline of
/// the work under way.
#[derive(Clone, Default)]
pub(crate) struct Cancel {
    flag: Arc<AtomicBool>,
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl Cancel {
    /// Whether the caller gave up.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Interrupts statements on `conn` once the caller gives up or the
    /// deadline set by [`Self::limit`] passes.
    pub(crate) fn watch(&self, conn: &Connection) {
        let cancel = self.clone();
        conn.progress_handler(
            1_000,
            Some(move || {
                cancel.is_cancelled()
                    || cancel
                        .deadline
                        .lock()
                        .expect("deadline lock")
                        .is_some_and(|d| Instant::now() > d)
            }),
        );
    }

    /// Bounds the next piece of work (one migration file, one backfill) to
    /// `limit` from now; `None` lifts the bound.
    pub(crate) fn limit(&self, limit: Option<Duration>) {
        *self.deadline.lock().expect("deadline lock") = limit.map(|l| Instant::now() + l);
    }
}

/// Raises the [`Cancel`] flag when dropped unless disarmed.
struct CancelOnDrop(Option<Cancel>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Like [`blocking`], but `work` sees a [`Cancel`] raised if this future is
/// dropped before it finishes.
pub(crate) async fn cancellable<T, F>(work: F) -> T
where
    T: Send + 'static,
    F: FnOnce(Cancel) -> T + Send + 'static,
{
    let cancel = Cancel::default();
    let mut guard = CancelOnDrop(Some(cancel.clone()));
    let value = blocking(move || work(cancel)).await;
    guard.0 = None;
    value
}

/// Converts a SQLite error into the engine's neutral form. Errors that mean
/// the files themselves are unusable (I/O, gone, full, not a database) count
/// as the store being lost.
pub(crate) fn db_error(e: &rusqlite::Error) -> DbError {
    DbError {
        code: None,
        message: e.to_string(),
        connection_lost: matches!(
            e.sqlite_error_code(),
            Some(
                ErrorCode::CannotOpen
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DiskFull
                    | ErrorCode::NotADatabase
                    | ErrorCode::DatabaseCorrupt
                    | ErrorCode::ReadOnly
            )
        ),
    }
}

/// An I/O error on a store file in the engine's neutral form.
pub(crate) fn io_error(context: &str, e: &std::io::Error) -> DbError {
    DbError {
        code: None,
        message: format!("{context}: {e}"),
        connection_lost: true,
    }
}

/// An engine error for a failed registry or store operation.
pub(crate) fn error_while(context: &str, source: DbError) -> Error {
    if source.connection_lost {
        Error::DatabaseUnavailable {
            context: context.to_owned(),
            source,
        }
    } else {
        Error::Database {
            context: context.to_owned(),
            source,
        }
    }
}

/// Whether `e` means another writer held the lock past the busy timeout.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Whether `e` is an interruption by [`Cancel::watch`].
pub(crate) fn is_interrupt(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted)
}

/// Runs every statement of `sql` to completion (rows of queries are read
/// and dropped); returns the rows changed by its writing statements.
pub(crate) fn run_script(conn: &Connection, sql: &str) -> rusqlite::Result<u64> {
    let mut changed = 0;
    let mut batch = Batch::new(conn, sql);
    while let Some(mut statement) = batch.next()? {
        let writes = !statement.readonly();
        let mut rows = statement.raw_query();
        while rows.next()?.is_some() {}
        if writes {
            changed += conn.changes();
        }
    }
    Ok(changed)
}

/// Maps `items` on a few threads (files are opened and read in parallel),
/// keeping their order.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(results) => results,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}
