//! Opening connections and keeping a few idle ones; what a connection
//! string means is `conninfo`'s.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::sql::db_error;
use crate::Error;

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 8;

/// Operations a pooled connection serves before it is replaced, bounding
/// the catalog cache its server process accumulates.
const MAX_USES: u32 = 200;

type Idle = Arc<Mutex<Vec<(Client, u32)>>>;

/// How to reach one PostgreSQL database, with a few idle connections kept.
#[derive(Clone)]
pub(crate) struct Connector {
    config: Config,
    tls: MakeRustlsConnect,
    idle: Idle,
}

/// A connection from the pool. It goes back only when marked reusable with
/// [`Pooled::keep`] after a completed operation; one dropped mid-operation
/// (an error, a cancelled future) is closed, so the server rolls back
/// whatever it was doing and no open transaction is ever handed out again.
pub(crate) struct Pooled {
    client: Option<Client>,
    uses: u32,
    reusable: bool,
    idle: Idle,
}

impl Pooled {
    /// Marks the connection reusable when `completed` (the operation ended
    /// its transaction).
    pub(crate) fn keep(&mut self, completed: bool) {
        self.reusable = completed;
    }
}

impl std::ops::Deref for Pooled {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if self.reusable && !client.is_closed() && self.uses + 1 < MAX_USES {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push((client, self.uses + 1));
            }
        }
    }
}

impl Connector {
    pub(crate) fn new(url: &str) -> Result<Self, Error> {
        let settings = super::conninfo::settings(url)?;
        Ok(Self {
            config: settings.config,
            tls: settings.tls,
            idle: Idle::default(),
        })
    }

    /// Where it connects to, without credentials.
    pub(crate) fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgres {}:{port}/{}",
            hosts.join(","),
            self.config.get_dbname().unwrap_or("")
        )
    }

    /// An idle connection, or a new one.
    pub(crate) async fn checkout(&self) -> Result<Pooled, Error> {
        loop {
            let popped = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match popped {
                Some((client, _)) if client.is_closed() => continue,
                Some((client, uses)) => {
                    return Ok(Pooled {
                        client: Some(client),
                        uses,
                        reusable: false,
                        idle: self.idle.clone(),
                    })
                }
                None => break,
            }
        }
        let client = self.connect().await?;
        Ok(Pooled {
            client: Some(client),
            uses: 0,
            reusable: false,
            idle: self.idle.clone(),
        })
    }

    /// Opens a connection; its driver task runs on the current runtime.
    pub(crate) async fn connect(&self) -> Result<Client, Error> {
        Ok(self.connect_with_notifications().await?.0)
    }

    /// Opens a connection that forwards the notifications it receives; the
    /// receiver closes when the connection ends.
    pub(crate) async fn connect_with_notifications(
        &self,
    ) -> Result<(Client, mpsc::UnboundedReceiver<String>), Error> {
        let (client, mut connection) =
            self.config.connect(self.tls.clone()).await.map_err(|e| {
                Error::DatabaseUnavailable {
                    context: format!("connecting to {}", self.describe()),
                    source: db_error(&e),
                }
            })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        let _ = sender.send(n.payload().to_owned());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "postgres connection closed");
                        break;
                    }
                }
            }
        });
        Ok((client, receiver))
    }
}
