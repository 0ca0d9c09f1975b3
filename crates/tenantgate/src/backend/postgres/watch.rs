//! `LISTEN tenantgate` on a dedicated connection.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::{connect::Connector, sql::CHANNEL};
use crate::{
    backend::{RegistryChange, Watch},
    DbError, Error, TenantName,
};

/// A dedicated connection listening on the `tenantgate` channel.
pub(crate) struct PgWatch {
    client: Client,
    notifications: mpsc::UnboundedReceiver<String>,
}

impl PgWatch {
    pub(crate) async fn open(connector: &Connector) -> Result<Self, Error> {
        let (client, notifications) = connector.connect_with_notifications().await?;
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| super::sql::error_while("subscribing to registry changes", &e))?;
        Ok(Self {
            client,
            notifications,
        })
    }
}

/// The change a `NOTIFY tenantgate` payload announces: a tenant's name,
/// `*reload` (a deploy: the required set too), else (`*`, or anything
/// unexpected) everything.
fn from_payload(payload: &str) -> RegistryChange {
    if payload == super::RELOAD_PAYLOAD {
        return RegistryChange::Reload;
    }
    TenantName::parse(payload).map_or(RegistryChange::Everything, RegistryChange::Tenant)
}

fn lost(message: &str) -> Error {
    Error::DatabaseUnavailable {
        context: "watching registry changes".into(),
        source: DbError {
            code: None,
            message: message.into(),
            connection_lost: true,
        },
    }
}

#[async_trait]
impl Watch for PgWatch {
    async fn next(&mut self, timeout: Duration) -> Result<Option<RegistryChange>, Error> {
        match tokio::time::timeout(timeout, self.notifications.recv()).await {
            Ok(Some(payload)) => Ok(Some(from_payload(&payload))),
            Ok(None) => Err(lost("the listening connection closed")),
            Err(_) => Ok(None),
        }
    }

    async fn heartbeat(&mut self, timeout: Duration) -> Result<(), Error> {
        heartbeat(&self.client, timeout).await
    }
}

/// Confirms that `client`'s server still answers within `timeout`.
pub(super) async fn heartbeat(client: &Client, timeout: Duration) -> Result<(), Error> {
    match tokio::time::timeout(timeout, client.simple_query("SELECT 1")).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(super::sql::error_while(
            "checking the registry connection",
            &e,
        )),
        Err(_) => Err(lost("the registry did not answer a heartbeat in time")),
    }
}
