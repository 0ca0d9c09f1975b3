//! `tenantgate tenants create|list|show|drop`.

use tenantgate::{provision, Domain, Error, MigrationFolder, TenantName};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{Global, TenantsCommand},
    cli_error::CliError,
    exit, output,
};

pub(crate) async fn run(
    global: &Global,
    command: TenantsCommand,
    cancel: &CancellationToken,
) -> Result<u8, CliError> {
    match command {
        TenantsCommand::Create {
            name,
            domains,
            placement,
        } => {
            let tenant = TenantName::parse(&name)?;
            let domains = domains
                .iter()
                .map(|d| Domain::parse(d))
                .collect::<Result<Vec<_>, _>>()?;
            let folder = super::folder(global)?;
            let backend = super::backend(global).await?;
            let limits = tenantgate::fleet::FleetOptions::default().limits;
            let created = tokio::select! {
                created = provision::create_tenant_on(backend.as_ref(), &folder, placement.as_deref(), &tenant, &domains, &limits) => created?,
                () = cancel.cancelled() => return Err(Error::Interrupted.into()),
            };
            output::provisioned(global, &created, &backend.container(&tenant));
            Ok(exit::OK)
        }
        TenantsCommand::Move {
            name,
            to_node: Some((host, port)),
            ..
        } => {
            let tenant = TenantName::parse(&name)?;
            let backend = super::backend(global).await?;
            backend.prepare().await?;
            let started = std::time::Instant::now();
            backend.move_to_node(&tenant, &host, port).await?;
            output::moved_to_node(
                global,
                &tenant,
                &format!("{host}:{port}"),
                started.elapsed(),
            );
            Ok(exit::OK)
        }
        TenantsCommand::Move {
            name,
            to,
            keep_source,
            ..
        } => {
            let tenant = TenantName::parse(&name)?;
            let to = to.ok_or_else(|| {
                CliError::Usage("tenants move needs --to PLACEMENT or --to-node HOST:PORT".into())
            })?;
            let folder = super::folder(global)?;
            let backend = super::backend(global).await?;
            let limits = tenantgate::fleet::FleetOptions::default().limits;
            let options = tenantgate::moves::MoveOptions { keep_source };
            // Not cancelled mid-way: an interrupted move is settled by the
            // next one, but a finished one needs no settling.
            let moved = tenantgate::moves::move_tenant(
                backend.as_ref(),
                &folder,
                &tenant,
                &to,
                options,
                &limits,
            )
            .await?;
            output::moved(global, &moved);
            Ok(exit::OK)
        }
        TenantsCommand::List => {
            let backend = super::backend(global).await?;
            backend.prepare().await?;
            let mut tenants = backend.tenants().await?;
            let folder = apply_effective_states(global, &mut tenants);
            let names: Vec<TenantName> = tenants.iter().map(|t| t.name.clone()).collect();
            let nodes = backend.nodes(&names).await?;
            output::tenant_list(global, &tenants, &nodes, &|v| key_of(folder.as_ref(), v));
            Ok(exit::OK)
        }
        TenantsCommand::Show { name } => {
            let tenant = TenantName::parse(&name)?;
            let backend = super::backend(global).await?;
            backend.prepare().await?;
            let mut tenants = backend.tenants().await?;
            tenants.retain(|t| t.name == tenant);
            let folder = apply_effective_states(global, &mut tenants);
            let found = tenants.pop().ok_or(Error::UnknownTenant { tenant: name })?;
            output::tenant_detail(global, &found, &backend.container(&tenant), &|v| {
                key_of(folder.as_ref(), v)
            });
            Ok(exit::OK)
        }
        TenantsCommand::Drop { name, yes } => {
            let tenant = TenantName::parse(&name)?;
            if !yes {
                return Err(CliError::Usage(format!(
                    "dropping tenant {tenant} deletes its schema (or file) and data; run again with --yes to confirm"
                )));
            }
            let backend = super::backend(global).await?;
            provision::drop_tenant(backend.as_ref(), &tenant).await?;
            output::dropped(global, &tenant, &backend.container(&tenant));
            Ok(exit::OK)
        }
    }
}

/// Shows `pending` for ready tenants that lack a migration of the folder,
/// when the folder loads (and returns it); otherwise the registry's states
/// stand.
fn apply_effective_states(
    global: &Global,
    tenants: &mut [tenantgate::Tenant],
) -> Option<MigrationFolder> {
    match super::folder(global) {
        Ok(folder) => {
            for t in tenants.iter_mut() {
                t.state = t.effective_state(&folder.tenant);
            }
            Some(folder)
        }
        Err(e) => {
            tracing::warn!("showing registry states only: {e}");
            None
        }
    }
}

/// The folder's name for an applied version (`app.name` for Django), else the number.
fn key_of(folder: Option<&MigrationFolder>, version: i64) -> String {
    folder
        .and_then(|f| f.tenant.get(version))
        .map_or_else(|| version.to_string(), |m| m.key.clone())
}
