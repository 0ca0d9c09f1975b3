//! `tenantgate migrate`.

use tenantgate::{
    exec::{self, ExecCommand, ExecOptions},
    fleet::{self, FleetOptions},
    LedgerKind,
};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{Global, MigrateArgs},
    cli_error::CliError,
    exit, output,
};

pub(crate) async fn run(
    global: &Global,
    args: MigrateArgs,
    cancel: &CancellationToken,
) -> Result<u8, CliError> {
    let folder = super::folder(global)?;
    let options = FleetOptions {
        fail_fast: args.fail_fast,
        dry_run: args.dry_run,
        allow_out_of_order: args.allow_out_of_order,
        ..super::fleet_options(&args.fleet)?
    };
    let exec = match (&args.exec, global.ledger) {
        (None, LedgerKind::Django) => {
            return Err(CliError::Usage(
                "Django's migrations run only through Django: pass --exec 'python manage.py migrate_schemas --schema={schema}' (or set TENANTGATE_EXEC)".into(),
            ))
        }
        (Some(_), LedgerKind::Tenantgate) => {
            return Err(CliError::Usage(
                "--exec heals fleets whose ledger another tool writes (--ledger sqlx or django); tenantgate applies its own ledger's migrations itself".into(),
            ))
        }
        (Some(template), _) => Some(ExecCommand::parse(template, args.shell)?),
        (None, _) => None,
    };
    let backend = super::backend(global).await?;
    let bars = output::FleetProgress::new(global);
    let report = match exec {
        Some(command) => {
            let exec_options = ExecOptions {
                tenants: options.tenants,
                jobs: options.jobs,
                timeout: args.exec_timeout,
                fail_fast: options.fail_fast,
            };
            exec::heal(
                backend.as_ref(),
                &folder.tenant,
                &command,
                &exec_options,
                &|p| bars.on(p),
                cancel,
            )
            .await?
        }
        None => {
            fleet::migrate(backend.as_ref(), &folder, &options, &|p| bars.on(p), cancel).await?
        }
    };
    bars.finish();
    output::fleet_report(global, &report);
    Ok(exit::for_fleet(&report))
}
