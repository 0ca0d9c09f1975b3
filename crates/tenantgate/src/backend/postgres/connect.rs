//! Opening connections: libpq-style URLs, TLS as libpq's `sslmode` means it.

use std::{
    str::FromStr,
    sync::{Arc, Mutex},
};

use futures::StreamExt;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme,
};
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
        let config = Config::from_str(url).map_err(|e| {
            Error::Config(format!(
                "cannot parse database URL {:?}: {e}",
                crate::backend::redact(url)
            ))
        })?;
        Ok(Self {
            config,
            tls: make_tls(),
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

/// The TLS connector tenantgate connects with, for applications that share
/// the database and want the same `sslmode` semantics.
pub fn make_tls() -> MakeRustlsConnect {
    MakeRustlsConnect::new(tls_config())
}

/// TLS as libpq's `sslmode=require` means it: encrypted, server certificate
/// not verified (`verify-ca`/`verify-full` are not offered by this build).
fn tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
        .with_no_client_auth()
}

/// Accepts any server certificate but checks the handshake signatures, as
/// libpq does for `sslmode=require`.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
