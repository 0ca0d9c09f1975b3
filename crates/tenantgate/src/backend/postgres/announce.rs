//! Announcing tenants' registry changes on channel `tenantgate`, several
//! tenants to a notification, for fleet runs.
//!
//! A tenant's commit used to be followed by a small transaction of its own
//! that notified for it alone (about 50 µs of server CPU when replayed
//! alone). Here the names committed within [`WINDOW`] of each other go out
//! together, in one transaction on a connection of their own: fewer
//! transactions for the server, and one notification per batch for every
//! listening guard. Watchers split the payload on spaces (an older watcher
//! reads a list as "anything may have changed" and re-reads everything,
//! which is safe).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{
    connect::Connector,
    sql::{literal, CHANNEL},
};
use crate::TenantName;

/// How long a committed tenant may wait for others to share its
/// notification.
const WINDOW: Duration = Duration::from_millis(10);

/// How long one notification may take to send before it is given up (and
/// left to the watchers' periodic refresh): a run that lost its database
/// must not wait on it.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest payload sent: PostgreSQL refuses one of 8,000 bytes or more.
const MAX_PAYLOAD: usize = 7_900;

/// What the announcing task is asked.
enum Request {
    /// Announce this tenant within [`WINDOW`].
    Tenant(TenantName),
    /// Announce everything asked before now, then answer.
    Flush(oneshot::Sender<()>),
}

/// A handle on the task that announces tenants for a fleet run. Cloning it
/// shares the task; the task ends when every handle is dropped, announcing
/// what it still holds.
#[derive(Clone)]
pub(crate) struct Announcer {
    requests: mpsc::UnboundedSender<Request>,
}

impl Announcer {
    /// Starts the announcing task (on the current runtime), which connects
    /// through `connector` when it has something to send.
    pub(crate) fn start(connector: Connector) -> Self {
        let (requests, received) = mpsc::unbounded_channel();
        tokio::spawn(announce_batches(connector, received));
        Self { requests }
    }

    /// Whether the task still runs (it ends with the runtime it was
    /// started on).
    pub(crate) fn is_running(&self) -> bool {
        !self.requests.is_closed()
    }

    /// Announces `tenant` within [`WINDOW`] (and before [`Self::flush`]
    /// returns). A notification that cannot be sent is logged; watchers'
    /// periodic refresh covers it.
    pub(crate) fn announce(&self, tenant: &TenantName) {
        // The task ends only when every handle is gone.
        let _ = self.requests.send(Request::Tenant(tenant.clone()));
    }

    /// Returns once every tenant announced through any handle before this
    /// call has been sent (or its sending failed and was logged).
    pub(crate) async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.requests.send(Request::Flush(done)).is_ok() {
            let _ = sent.await;
        }
    }
}

/// The announcing task: collects names until [`WINDOW`] after the first,
/// a flush, or the last handle's drop, then sends them.
async fn announce_batches(connector: Connector, mut received: mpsc::UnboundedReceiver<Request>) {
    let mut pending: Vec<TenantName> = Vec::new();
    let mut deadline = tokio::time::Instant::now();
    loop {
        let request = if pending.is_empty() {
            received.recv().await
        } else {
            tokio::select! {
                request = received.recv() => request,
                () = tokio::time::sleep_until(deadline) => {
                    send(&connector, &std::mem::take(&mut pending)).await;
                    continue;
                }
            }
        };
        match request {
            Some(Request::Tenant(tenant)) => {
                if pending.is_empty() {
                    deadline = tokio::time::Instant::now() + WINDOW;
                }
                pending.push(tenant);
            }
            Some(Request::Flush(done)) => {
                send(&connector, &std::mem::take(&mut pending)).await;
                let _ = done.send(());
            }
            None => {
                send(&connector, &pending).await;
                return;
            }
        }
    }
}

/// Notifies for `tenants`; a failure is logged.
async fn send(connector: &Connector, tenants: &[TenantName]) {
    if tenants.is_empty() {
        return;
    }
    let sql = announce_sql(&payloads(tenants));
    let attempt = async {
        let mut client = connector.checkout().await.map_err(|e| e.to_string())?;
        let sent = client.batch_execute(&sql).await;
        client.keep(sent.is_ok());
        sent.map_err(|e| e.to_string())
    };
    let sent = tokio::time::timeout(SEND_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err("the database did not answer in time".into()));
    if let Err(error) = sent {
        tracing::warn!(%error, tenants = tenants.len(), "could not announce registry changes");
    }
}

/// One transaction that notifies channel `tenantgate` of each payload,
/// committed without waiting for the disk: a notification lost to a crash
/// is covered by the watchers' periodic refresh, and waiting would double
/// the fsyncs of a fleet run.
pub(crate) fn announce_sql(payloads: &[String]) -> String {
    let notifies: String = payloads
        .iter()
        .map(|payload| {
            format!(
                "SELECT pg_notify({}, {});",
                literal(CHANNEL),
                literal(payload)
            )
        })
        .collect();
    format!("BEGIN; SET LOCAL synchronous_commit TO off; {notifies} COMMIT;")
}

/// The tenants' names joined by spaces, in as few payloads as fit under
/// [`MAX_PAYLOAD`] bytes each.
fn payloads(tenants: &[TenantName]) -> Vec<String> {
    let mut payloads: Vec<String> = Vec::new();
    for name in tenants.iter().map(TenantName::as_str) {
        match payloads.last_mut() {
            Some(current) if current.len() + 1 + name.len() <= MAX_PAYLOAD => {
                current.push(' ');
                current.push_str(name);
            }
            _ => payloads.push(name.to_owned()),
        }
    }
    payloads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_split_under_the_payload_limit_and_lose_no_name() {
        let tenants: Vec<TenantName> = (0..500)
            .map(|i| TenantName::parse(&format!("t{i:03}_{}", "x".repeat(58))).unwrap())
            .collect();
        assert_eq!(tenants[0].as_str().len(), 63);
        let payloads = payloads(&tenants);
        assert!(payloads.len() > 1);
        assert!(payloads
            .iter()
            .all(|p| !p.is_empty() && p.len() <= MAX_PAYLOAD));
        let named: Vec<&str> = payloads.iter().flat_map(|p| p.split(' ')).collect();
        let expected: Vec<&str> = tenants.iter().map(TenantName::as_str).collect();
        assert_eq!(named, expected);
    }

    #[test]
    fn one_tenant_is_its_own_payload() {
        let tenant = TenantName::parse("acme").unwrap();
        assert_eq!(payloads(std::slice::from_ref(&tenant)), ["acme"]);
    }
}
