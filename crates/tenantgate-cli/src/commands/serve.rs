//! `tenantgate serve`: the messages demo app behind the guard.

use axum::Router;
use tenantgate::{fleet, Backend};
use tenantgate_demo::{AppDb, AppState, Store};
use tenantgate_http::{GuardConfig, GuardLayer};
use tokio_util::sync::CancellationToken;

use super::guarded;
use crate::{
    args::{Global, ServeArgs},
    cli_error::CliError,
    exit, output,
};

pub(crate) async fn run(
    global: &Global,
    args: ServeArgs,
    cancel: &CancellationToken,
) -> Result<u8, CliError> {
    if global.migrations_given {
        return Err(CliError::Usage(
            "serve runs the demo app, whose migrations are built into the binary; it takes no --migrations".into(),
        ));
    }
    let url = global.url();
    let store = guarded::store_for(&url)?;
    let backend = guarded::connect(global, &args.guard).await?;
    if args.migrate_on_start {
        let options = fleet::FleetOptions {
            jobs: usize::from(args.jobs),
            ..Default::default()
        };
        let folder = tenantgate_demo::folder(store);
        let report = fleet::migrate(backend.as_ref(), &folder, &options, &|_| {}, cancel).await?;
        tenantgate_http::metrics::fleet_run(&report);
        let code = exit::for_fleet(&report);
        if code != exit::OK {
            output::fleet_report(global, &report);
            output::notice(
                global,
                tracing::Level::ERROR,
                "error: --migrate-on-start did not bring every tenant to ready; not starting",
            );
            return Ok(code);
        }
    }
    let required = tenantgate_demo::required_set(store);
    guarded::gate(global, &args.guard, backend.as_ref(), &required).await?;
    let config = guarded::config(global, &args.guard);
    let app = app(backend, &url, store, config).await?;
    let (listener, address) = guarded::listen(args.listen).await?;
    println!("listening on http://{address}");
    guarded::serve_until(listener, app, cancel, args.guard.drain_timeout).await?;
    Ok(exit::OK)
}

/// The messages app behind the guard, with the probes, health, metrics and
/// admin routes on the same listener.
pub(crate) async fn app(
    backend: std::sync::Arc<dyn Backend>,
    url: &str,
    store: Store,
    config: GuardConfig,
) -> Result<Router, CliError> {
    let details = config.details.clone();
    let required = tenantgate_demo::required_set(store);
    let (guard, routes) =
        guarded::start(backend, required, config, tenantgate_demo::folder(store)).await?;
    let db = AppDb::connect(url, 16).map_err(CliError::Usage)?;
    Ok(routes
        .merge(tenantgate_demo::router(AppState { db, details }).layer(GuardLayer::new(guard)))
        .route_layer(axum::middleware::from_fn(tenantgate_http::metrics::track)))
}
