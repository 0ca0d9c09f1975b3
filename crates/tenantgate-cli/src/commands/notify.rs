//! `tenantgate notify`: after a deploy, bring the registry in step with
//! the ledgers and have every running server re-read its required set.

use crate::{args::Global, cli_error::CliError, exit, output};

pub(crate) async fn run(global: &Global) -> Result<u8, CliError> {
    let backend = super::backend(global).await?;
    backend.prepare().await?;
    let refreshed = if global.ledger.is_foreign() {
        let folder = super::folder(global)?;
        Some(
            tenantgate::ledger::refresh(backend.as_ref(), &folder.tenant)
                .await?
                .tenants,
        )
    } else {
        None
    };
    backend.announce_reload().await?;
    output::notified(global, refreshed.as_deref());
    Ok(exit::OK)
}
