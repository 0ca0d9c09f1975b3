//! Learning of registry changes without `LISTEN`, for connections through a
//! transaction-pooling proxy (PgBouncer), where a listening session does not
//! survive the transaction: a dedicated connection digests the registry
//! every interval and announces `*` (re-read everything) when it changed.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{connect::Connector, sql::error_while};
use crate::{
    backend::{RegistryChange, Watch},
    Error,
};

/// One text value that changes whenever a row of the registry, its domains
/// or the shared ledger is inserted, updated or deleted: row counts and sums
/// of whole-row hashes. Sent with the simple-query protocol, so it needs no
/// prepared statement a pooler could lose.
const DIGEST_SQL: &str = "SELECT concat_ws('/',
    (SELECT count(*) || ':' || coalesce(sum(hashtext(t::text)), 0) FROM tenantgate.tenants t),
    (SELECT count(*) || ':' || coalesce(sum(hashtext(d::text)), 0) FROM tenantgate.domains d),
    (SELECT count(*) || ':' || coalesce(sum(hashtext(s::text)), 0) FROM tenantgate._shared_migrations s))";

/// A registry watch that polls a digest of the registry.
pub(crate) struct PgPollWatch {
    client: Client,
    interval: Duration,
    seen: String,
}

impl PgPollWatch {
    pub(crate) async fn open(connector: &Connector, interval: Duration) -> Result<Self, Error> {
        let client = connector.connect().await?;
        let seen = digest(&client).await?;
        Ok(Self {
            client,
            interval,
            seen,
        })
    }
}

/// The registry's digest (see `DIGEST_SQL`), read on `client`.
pub(super) async fn digest(client: &Client) -> Result<String, Error> {
    let messages = client
        .simple_query(DIGEST_SQL)
        .await
        .map_err(|e| error_while("polling the registry", &e))?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default())
}

#[async_trait]
impl Watch for PgPollWatch {
    async fn next(&mut self, timeout: Duration) -> Result<Option<RegistryChange>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = digest(&self.client).await?;
            if now != self.seen {
                self.seen = now;
                return Ok(Some(RegistryChange::Everything));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            tokio::time::sleep(self.interval.min(left)).await;
        }
    }

    async fn heartbeat(&mut self, timeout: Duration) -> Result<(), Error> {
        super::watch::heartbeat(&self.client, timeout).await
    }

    async fn registry_version(&mut self) -> Result<Option<String>, Error> {
        digest(&self.client).await.map(Some)
    }
}
