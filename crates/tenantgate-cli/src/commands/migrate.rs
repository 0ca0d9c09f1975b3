//! `tenantgate migrate`.

use tenantgate::fleet::{self, FleetOptions};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{Global, MigrateArgs},
    exit, output,
};

pub(crate) async fn run(
    global: &Global,
    args: MigrateArgs,
    cancel: &CancellationToken,
) -> Result<u8, crate::cli_error::CliError> {
    let folder = super::folder(global)?;
    let options = FleetOptions {
        fail_fast: args.fail_fast,
        dry_run: args.dry_run,
        allow_out_of_order: args.allow_out_of_order,
        ..super::fleet_options(&args.fleet)?
    };
    let backend = super::backend(global).await?;
    let bars = output::FleetProgress::new(global);
    let report =
        fleet::migrate(backend.as_ref(), &folder, &options, &|p| bars.on(p), cancel).await?;
    bars.finish();
    output::fleet_report(global, &report);
    Ok(exit::for_fleet(&report))
}
