//! Learning of registry changes made by other processes: SQLite has no
//! LISTEN, so a dedicated connection polls `PRAGMA data_version`, which
//! changes whenever another connection commits to the registry.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use rusqlite::Connection;

use super::{
    blocking::{blocking, db_error, error_while},
    data_dir::{open, Create},
};
use crate::{
    backend::{RegistryChange, Watch},
    Error,
};

/// How often the registry's version is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A registry watch; every change is announced as `*` (re-read everything),
/// since the version says that something changed, not what.
pub(crate) struct SqliteWatch {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    seen: i64,
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

impl SqliteWatch {
    /// Opens a dedicated connection to the registry at `path`.
    pub(crate) async fn open(path: PathBuf) -> Result<Self, Error> {
        let opened = path.clone();
        let (conn, seen) = blocking(move || {
            let conn = open(&opened, Create::No, Duration::from_secs(1))?;
            let seen = data_version(&conn)?;
            Ok::<_, rusqlite::Error>((conn, seen))
        })
        .await
        .map_err(|e| error_while("watching the registry", db_error(&e)))?;
        Ok(Self {
            path,
            conn: Arc::new(Mutex::new(conn)),
            seen,
        })
    }

    async fn poll(&self) -> Result<i64, Error> {
        let (conn, path) = (self.conn.clone(), self.path.clone());
        blocking(move || {
            if !path.exists() {
                return Err(Error::DatabaseUnavailable {
                    context: "watching the registry".into(),
                    source: crate::DbError {
                        code: None,
                        message: format!("{} is gone", path.display()),
                        connection_lost: true,
                    },
                });
            }
            data_version(&conn.lock().expect("watch connection lock"))
                .map_err(|e| error_while("watching the registry", db_error(&e)))
        })
        .await
    }
}

#[async_trait]
impl Watch for SqliteWatch {
    async fn next(&mut self, timeout: Duration) -> Result<Option<RegistryChange>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let version = self.poll().await?;
            if version != self.seen {
                self.seen = version;
                return Ok(Some(RegistryChange::Everything));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    async fn heartbeat(&mut self, timeout: Duration) -> Result<(), Error> {
        match tokio::time::timeout(timeout, self.poll()).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(Error::DatabaseUnavailable {
                context: "checking the registry".into(),
                source: crate::DbError {
                    code: None,
                    message: format!("no answer within {timeout:?}"),
                    connection_lost: true,
                },
            }),
        }
    }

    /// `PRAGMA data_version` on the watch's own connection, which never
    /// writes: it differs whenever any other connection committed.
    async fn registry_version(&mut self) -> Result<Option<String>, Error> {
        Ok(Some(self.poll().await?.to_string()))
    }
}
