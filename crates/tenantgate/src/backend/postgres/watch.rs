//! `LISTEN tenantgate` on a dedicated connection.

use std::{collections::VecDeque, time::Duration};

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
    /// Changes of a payload that named several tenants, not yet returned.
    queued: VecDeque<RegistryChange>,
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
            queued: VecDeque::new(),
        })
    }
}

/// The changes a `NOTIFY tenantgate` payload announces: tenants' names
/// separated by spaces, `*reload` (a deploy: the required set too), else
/// (`*`, or anything unexpected) everything.
fn from_payload(payload: &str) -> VecDeque<RegistryChange> {
    if payload == super::RELOAD_PAYLOAD {
        return VecDeque::from([RegistryChange::Reload]);
    }
    payload
        .split(' ')
        .map(|name| TenantName::parse(name).map(RegistryChange::Tenant))
        .collect::<Result<VecDeque<_>, _>>()
        .unwrap_or_else(|_| VecDeque::from([RegistryChange::Everything]))
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
        if let Some(change) = self.queued.pop_front() {
            return Ok(Some(change));
        }
        match tokio::time::timeout(timeout, self.notifications.recv()).await {
            Ok(Some(payload)) => {
                self.queued = from_payload(&payload);
                Ok(self.queued.pop_front())
            }
            Ok(None) => Err(lost("the listening connection closed")),
            Err(_) => Ok(None),
        }
    }

    async fn heartbeat(&mut self, timeout: Duration) -> Result<(), Error> {
        heartbeat(&self.client, timeout).await
    }

    async fn registry_version(&mut self) -> Result<Option<String>, Error> {
        super::poll::digest(&self.client).await.map(Some)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> RegistryChange {
        RegistryChange::Tenant(TenantName::parse(name).unwrap())
    }

    #[test]
    fn payloads_name_one_tenant_several_or_everything() {
        assert_eq!(from_payload("acme"), [tenant("acme")]);
        assert_eq!(
            from_payload("acme globex initech"),
            [tenant("acme"), tenant("globex"), tenant("initech")]
        );
        assert_eq!(from_payload("*reload"), [RegistryChange::Reload]);
        for anything in ["*", "", "acme  globex", "acme Globex!", " acme"] {
            assert_eq!(
                from_payload(anything),
                [RegistryChange::Everything],
                "{anything:?}"
            );
        }
    }
}
