//! `tenantgate backfill NAME`.

use tenantgate::{
    backend::BackfillMode,
    fleet::{self, FleetOptions},
};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{BackfillArgs, Global},
    exit, output,
};

pub(crate) async fn run(
    global: &Global,
    args: BackfillArgs,
    cancel: &CancellationToken,
) -> Result<u8, crate::cli_error::CliError> {
    let folder = super::folder(global)?;
    let options = FleetOptions {
        fail_fast: args.fail_fast,
        ..super::fleet_options(&args.fleet)?
    };
    let mode = BackfillMode {
        force: args.force,
        dry_run: args.dry_run,
    };
    let backend = super::backend(global).await?;
    let bars = output::FleetProgress::new(global);
    let report = fleet::backfill(
        backend.as_ref(),
        &folder,
        &args.name,
        mode,
        &options,
        &|p| bars.on(p),
        cancel,
    )
    .await?;
    bars.finish();
    output::fleet_report(global, &report);
    Ok(exit::for_fleet(&report))
}
