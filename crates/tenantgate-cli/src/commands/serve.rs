//! `tenantgate serve`: the messages demo app behind the guard.

use std::sync::Arc;

use axum::Router;
use tenantgate::{
    backend::{ConnectOptions, WatchMode},
    fleet, Backend,
};
use tenantgate_demo::{AppDb, AppState, Store};
use tenantgate_http::{
    admin_router, health_router, startup_gate, watch_registry, AdminState, DetailPolicy,
    GuardConfig, GuardLayer, RecoveryText, StartupPolicy,
};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{Global, ServeArgs, WatchArg},
    cli_error::CliError,
    exit, output,
    recovery::Invocation,
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
    let backend: Arc<dyn Backend> =
        tenantgate::backend::connect_with(&url, &ConnectOptions { watch })
            .await?
            .into();
    let folder = tenantgate_demo::folder(store);

    if args.migrate_on_start {
        let options = fleet::FleetOptions {
            jobs: usize::from(args.jobs),
            ..Default::default()
        };
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
    // The emergency bypass exists to restore service: it starts degraded too.
    let policy = if args.allow_degraded || args.disable_migration_check {
        StartupPolicy::AllowDegraded
    } else {
        StartupPolicy::FailHard
    };
    match startup_gate(
        backend.as_ref(),
        &tenantgate_demo::required_set(store),
        policy,
    )
    .await
    {
        Ok(not_served) => {
            for t in &not_served {
                if args.disable_migration_check {
                    tracing::error!(tenant = %t.tenant, reason = t.blocked.reason.as_str(), "starting with the migration check disabled: tenant not ready and served anyway");
                } else {
                    tracing::error!(tenant = %t.tenant, reason = t.blocked.reason.as_str(), "starting degraded: tenant not ready, the guard blocks it");
                }
            }
        }
        Err(refused) => return Err(CliError::StartupRefused(refused)),
    }
    if args.disable_migration_check {
        tracing::error!("DISABLE_MIGRATION_CHECK is on: requests reach tenants whose schema lacks required migrations; every such request is logged and counted");
        output::notice(global, tracing::Level::WARN, "WARNING: the migration check is DISABLED (DISABLE_MIGRATION_CHECK=true); tenants that are not ready are served");
    }
    let config = GuardConfig {
        refresh_interval: args.refresh_interval,
        staleness_bound: args.staleness_bound,
        heartbeat_interval: args.heartbeat,
        retry_after: args.retry_after,
        details: DetailPolicy {
            show_details: args.show_details,
            token: None,
        },
        // Store paths go on the page only where details are shown.
        recovery_text: recovery_text(if args.show_details {
            Invocation::absolute(global)
        } else {
            Invocation::plain(global)
        }),
        dangerous_bypass: args.disable_migration_check,
    };
    let app = app(backend, &url, store, config).await?;
    let (listener, address) = listen(args.listen).await?;
    println!("listening on http://{address}");
    serve_until(listener, app, cancel).await?;
    Ok(exit::OK)
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

/// The 503 page's recovery: the command `invocation` runs.
pub(crate) fn recovery_text(invocation: Invocation) -> RecoveryText {
    RecoveryText::new(move |recovery| invocation.command(recovery))
}

/// The messages app behind the guard, with the probes, health, metrics and
/// admin routes. `TENANTGATE_ADMIN_TOKEN` opens the admin routes and lets
/// requests that carry it read the store's error text.
pub(crate) async fn app(
    backend: Arc<dyn Backend>,
    url: &str,
    store: Store,
    mut config: GuardConfig,
) -> Result<Router, CliError> {
    let metrics = tenantgate_http::metrics::install()
        .map_err(|e| CliError::Server(std::io::Error::other(e)))?;
    let token = std::env::var("TENANTGATE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    config.details.token.clone_from(&token);
    let details = config.details.clone();
    let required = tenantgate_demo::required_set(store);
    let guard = watch_registry(backend.clone(), required, config).await?;
    let db = AppDb::connect(url, 16).map_err(CliError::Usage)?;
    let admin = AdminState {
        guard: guard.clone(),
        backend,
        folder: Arc::new(tenantgate_demo::folder(store)),
        token,
        metrics: Some(metrics),
    };
    Ok(Router::new()
        .merge(health_router(admin.clone()))
        .merge(admin_router(admin))
        .merge(tenantgate_demo::router(AppState { db, details }).layer(GuardLayer::new(guard)))
        .route_layer(axum::middleware::from_fn(tenantgate_http::metrics::track)))
}

/// Binds the listening socket; returns it with the address it got.
pub(crate) async fn listen(
    address: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), CliError> {
    let io = |source| CliError::Io {
        what: format!("cannot listen on {address}"),
        source,
    };
    let listener = tokio::net::TcpListener::bind(address).await.map_err(io)?;
    let bound = listener.local_addr().map_err(io)?;
    Ok((listener, bound))
}

/// Serves `app` until `cancel` fires, then drains in-flight requests.
pub(crate) async fn serve_until(
    listener: tokio::net::TcpListener,
    app: Router,
    cancel: &CancellationToken,
) -> Result<(), CliError> {
    let shutdown = cancel.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(CliError::Server)
}
