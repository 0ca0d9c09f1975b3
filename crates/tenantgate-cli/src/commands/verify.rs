//! `tenantgate verify`.

use tenantgate::{
    fleet::FleetOptions,
    verify::{self, VerifyOptions},
};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{Global, VerifyArgs},
    exit, output,
};

pub(crate) async fn run(
    global: &Global,
    args: VerifyArgs,
    cancel: &CancellationToken,
) -> Result<u8, crate::cli_error::CliError> {
    let folder = super::folder(global)?;
    let options = VerifyOptions {
        deep: args.deep,
        fix: args.fix,
        peers: args.peers,
        fleet: FleetOptions {
            allow_out_of_order: args.allow_out_of_order,
            ..super::fleet_options(&args.fleet)?
        },
    };
    let backend = super::backend(global).await?;
    let bars = output::FleetProgress::new(global);
    let report =
        verify::verify(backend.as_ref(), &folder, &options, &|p| bars.on(p), cancel).await?;
    bars.finish();
    output::verify_report(global, &report);
    let mut code = exit::for_verify(&report);
    if let Some(fixed) = &report.fixed {
        code = exit::worst(code, exit::for_fleet(fixed));
    }
    Ok(code)
}
