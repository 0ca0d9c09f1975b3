//! What `serve` and `proxy` share: the store and its watch, the fail-hard
//! startup gate, the guard's configuration, the admin listener's routes and
//! a bounded drain on Ctrl-C or SIGTERM.

use std::{net::SocketAddr, sync::Arc};

use axum::Router;
use tenantgate::{backend::WatchMode, readiness::RequiredSet, Backend, MigrationFolder};
use tenantgate_demo::Store;
use tenantgate_http::{
    admin_router, health_router, startup_gate, watch_registry, AdminState, DetailPolicy,
    GuardConfig, GuardState, RecoveryText, StartupPolicy,
};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{Global, GuardArgs, WatchArg},
    cli_error::CliError,
    output,
    recovery::Invocation,
};

/// The store a server guards, connected with the watch `args` ask for.
pub(crate) async fn connect(
    global: &Global,
    args: &GuardArgs,
) -> Result<Arc<dyn Backend>, CliError> {
    let url = global.url();
    let store = store_for(&url)?;
    let watch = match (&args.watch_url, args.watch) {
        (Some(_), _) | (None, WatchArg::Poll) if store == Store::Sqlite => {
            return Err(CliError::Usage(
                "--watch poll and --watch-url apply to PostgreSQL; the SQLite store always polls its registry".into(),
            ))
        }
        (Some(direct), _) => WatchMode::ListenAt(direct.clone()),
        (None, WatchArg::Poll) => WatchMode::Poll(args.poll_interval),
        (None, WatchArg::Listen) => WatchMode::Listen,
    };
    Ok(
        tenantgate::backend::connect_with(&url, &super::connect_options(global, watch))
            .await?
            .into(),
    )
}

/// The app's store for a URL, or a usage error.
pub(crate) fn store_for(url: &str) -> Result<Store, CliError> {
    Store::for_url(url).ok_or_else(|| {
        CliError::Usage(format!(
            "unsupported database URL {:?}: expected sqlite://DIR or postgres://…",
            tenantgate::backend::redact(url)
        ))
    })
}

/// Runs the startup gate: refuses while a tenant is not served unless
/// `--allow-degraded` (or the bypass); logs each tenant started with.
pub(crate) async fn gate(
    global: &Global,
    args: &GuardArgs,
    backend: &dyn Backend,
    required: &RequiredSet,
) -> Result<(), CliError> {
    // The emergency bypass exists to restore service: it starts degraded too.
    let policy = if args.allow_degraded || args.disable_migration_check {
        StartupPolicy::AllowDegraded
    } else {
        StartupPolicy::FailHard
    };
    let not_served = startup_gate(backend, required, policy)
        .await
        .map_err(CliError::StartupRefused)?;
    for t in &not_served {
        if args.disable_migration_check {
            tracing::error!(tenant = %t.tenant, reason = t.blocked.reason.as_str(), "starting with the migration check disabled: tenant not ready and served anyway");
        } else {
            tracing::error!(tenant = %t.tenant, reason = t.blocked.reason.as_str(), "starting degraded: tenant not ready, the guard blocks it");
        }
    }
    if args.disable_migration_check {
        tracing::error!("DISABLE_MIGRATION_CHECK is on: requests reach tenants whose schema lacks required migrations; every such request is logged and counted");
        output::notice(global, tracing::Level::WARN, "WARNING: the migration check is DISABLED (DISABLE_MIGRATION_CHECK=true); tenants that are not ready are served");
    }
    Ok(())
}

/// The guard's configuration from the options; `TENANTGATE_ADMIN_TOKEN`
/// lets requests that carry it read the store's error text.
pub(crate) fn config(global: &Global, args: &GuardArgs) -> GuardConfig {
    // Store paths go on the page only where details are shown.
    let invocation = if args.show_details {
        Invocation::absolute(global)
    } else {
        Invocation::plain(global)
    };
    GuardConfig {
        refresh_interval: args.refresh_interval,
        staleness_bound: args.staleness_bound,
        heartbeat_interval: args.heartbeat,
        retry_after: args.retry_after,
        details: DetailPolicy {
            show_details: args.show_details,
            token: admin_token(),
        },
        recovery_text: RecoveryText::new(move |recovery| invocation.command(recovery)),
        dangerous_bypass: args.disable_migration_check,
    }
}

fn admin_token() -> Option<String> {
    std::env::var("TENANTGATE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// Starts the guard: its watcher, the metrics recorder, and the admin
/// routes (probes, health, metrics, provisioning from `folder`).
pub(crate) async fn start(
    backend: Arc<dyn Backend>,
    required: RequiredSet,
    config: GuardConfig,
    folder: MigrationFolder,
) -> Result<(Arc<GuardState>, Router), CliError> {
    let metrics = tenantgate_http::metrics::install()
        .map_err(|e| CliError::Server(std::io::Error::other(e)))?;
    let guard = watch_registry(backend.clone(), required, config).await?;
    let admin = AdminState {
        guard: guard.clone(),
        backend,
        folder: Arc::new(folder),
        token: admin_token(),
        metrics: Some(metrics),
    };
    let routes = Router::new()
        .merge(health_router(admin.clone()))
        .merge(admin_router(admin));
    Ok((guard, routes))
}

/// Binds the listening socket; returns it with the address it got.
pub(crate) async fn listen(
    address: SocketAddr,
) -> Result<(tokio::net::TcpListener, SocketAddr), CliError> {
    let io = |source| CliError::Io {
        what: format!("cannot listen on {address}"),
        source,
    };
    let listener = tokio::net::TcpListener::bind(address).await.map_err(io)?;
    let bound = listener.local_addr().map_err(io)?;
    Ok((listener, bound))
}

/// Serves `app` until `cancel` fires, then lets requests in flight finish
/// for up to `drain` before returning.
pub(crate) async fn serve_until(
    listener: tokio::net::TcpListener,
    app: Router,
    cancel: &CancellationToken,
    drain: std::time::Duration,
) -> Result<(), CliError> {
    let shutdown = cancel.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await });
    tokio::select! {
        served = server => served.map_err(CliError::Server),
        () = async {
            cancel.cancelled().await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!("requests still in flight after the drain timeout; stopping");
            Ok(())
        }
    }
}
