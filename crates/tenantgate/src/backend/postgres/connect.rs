//! Opening connections, and a deadpool of them for short registry work;
//! what a connection string means is `conninfo`'s.

use deadpool_postgres::{
    HookError, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::sql::db_error;
use crate::{DbError, Error};

/// Connections the pool holds at most.
const POOL_SIZE: usize = 16;

/// Times a pooled connection is handed out again before it is replaced,
/// bounding the catalog cache its server process accumulates.
const MAX_REUSES: usize = 200;

/// How to reach one PostgreSQL database, with a pool for short work.
#[derive(Clone)]
pub(crate) struct Connector {
    config: Config,
    tls: MakeRustlsConnect,
    pool: Pool,
    /// What kind of server it is, learned on first use.
    kind: std::sync::Arc<tokio::sync::OnceCell<ServerKind>>,
}

/// What kind of PostgreSQL server a connector reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerKind {
    /// A plain server.
    Plain,
    /// A Citus coordinator (the `citus` extension with nodes in
    /// `pg_dist_node`): tenant schemas are distributed schemas, and
    /// migrations go one statement per message.
    Citus,
}

/// A connection from the pool. It goes back only when marked reusable with
/// [`Pooled::keep`] after a completed operation; one dropped mid-operation
/// (an error, a cancelled future) is closed, so the server rolls back
/// whatever it was doing and no open transaction is ever handed out again.
pub(crate) struct Pooled {
    object: Option<Object>,
    reusable: bool,
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
        self.object.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Client {
        self.object.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            if !self.reusable {
                // Detached from the pool and dropped: the connection closes.
                drop(Object::take(object));
            }
        }
    }
}

impl Connector {
    pub(crate) fn new(url: &str) -> Result<Self, Error> {
        Self::from_settings(super::conninfo::settings(url)?)
    }

    /// The same user, database and TLS settings at another server (a Citus
    /// worker the coordinator names); a password from the password file.
    pub(crate) fn for_node(&self, host: &str, port: u16) -> Result<Self, Error> {
        let mut config = Config::new();
        config
            .host(host)
            .port(port)
            .ssl_mode(self.config.get_ssl_mode());
        if let Some(user) = self.config.get_user() {
            config.user(user);
        }
        if let Some(db) = self.config.get_dbname() {
            config.dbname(db);
        }
        if let Some(name) = self.config.get_application_name() {
            config.application_name(name);
        }
        if let Some(timeout) = self.config.get_connect_timeout() {
            config.connect_timeout(*timeout);
        }
        match self.config.get_password() {
            Some(password) => {
                config.password(password);
            }
            None => super::conninfo::add_password_from_file(&mut config),
        }
        Self::from_settings(super::conninfo::ConnectionSettings {
            config,
            tls: self.tls.clone(),
        })
    }

    fn from_settings(settings: super::conninfo::ConnectionSettings) -> Result<Self, Error> {
        let manager = Manager::from_config(
            settings.config.clone(),
            settings.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .post_recycle(deadpool_postgres::Hook::sync_fn(|_, metrics| {
                if metrics.recycle_count >= MAX_REUSES {
                    Err(HookError::message("served its share; replaced"))
                } else {
                    Ok(())
                }
            }))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the connection pool: {e}")))?;
        Ok(Self {
            config: settings.config,
            tls: settings.tls,
            pool,
            kind: Default::default(),
        })
    }

    /// Whether the server is a Citus coordinator; asked once.
    pub(crate) async fn kind(&self) -> Result<ServerKind, Error> {
        self.kind
            .get_or_try_init(|| async {
                let mut client = self.checkout().await?;
                let citus: bool = super::sql::one_row(
                    &client,
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')
                        AND to_regclass('pg_catalog.pg_dist_node') IS NOT NULL",
                    &[],
                    "asking whether the server runs Citus",
                )
                .await?
                .get(0);
                client.keep(true);
                Ok(if citus {
                    ServerKind::Citus
                } else {
                    ServerKind::Plain
                })
            })
            .await
            .copied()
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

    /// A pooled connection (an idle one, or a new one).
    pub(crate) async fn checkout(&self) -> Result<Pooled, Error> {
        let object = self.pool.get().await.map_err(|e| {
            let source = match &e {
                PoolError::Backend(e) => db_error(e),
                other => DbError {
                    code: None,
                    message: other.to_string(),
                    connection_lost: true,
                },
            };
            Error::DatabaseUnavailable {
                context: format!("connecting to {}", self.describe()),
                source,
            }
        })?;
        Ok(Pooled {
            object: Some(object),
            reusable: false,
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
