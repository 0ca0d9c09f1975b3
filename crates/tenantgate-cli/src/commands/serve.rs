//! `tenantgate serve`: the messages demo app behind the guard.

use std::sync::Arc;

use axum::Router;
use tenantgate::{fleet, Backend, Error};
use tenantgate_http::{
    admin_router, health_router, startup_gate, watch_registry, AdminState, GuardConfig, GuardLayer,
    StartupPolicy, StartupRefused,
};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{Global, ServeArgs},
    exit, output,
};

pub(crate) async fn run(
    global: &Global,
    args: ServeArgs,
    cancel: &CancellationToken,
) -> Result<u8, Error> {
    let url = global.database_url.clone().ok_or_else(|| {
        Error::Config("no database: pass --database-url postgres://… or set DATABASE_URL".into())
    })?;
    let backend: Arc<dyn Backend> = super::backend(global).await?.into();
    let folder = tenantgate_demo::folder();
    let required = tenantgate_demo::required_set();
    let metrics = tenantgate_http::metrics::install().map_err(Error::Config)?;

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
            eprintln!(
                "error: --migrate-on-start did not bring every tenant to ready; not starting"
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
    match startup_gate(backend.as_ref(), &required, policy).await {
        Ok(not_served) => {
            for t in &not_served {
                tracing::error!(tenant = %t.tenant, reason = t.blocked.reason.as_str(), "starting degraded: tenant not ready, the guard blocks it");
            }
        }
        Err(StartupRefused::Store(e)) => return Err(e),
        Err(refused) => {
            eprint!("error: {refused}");
            return Ok(exit::TENANT_FAILED);
        }
    }
    if args.disable_migration_check {
        tracing::error!("DISABLE_MIGRATION_CHECK is on: requests reach tenants whose schema lacks required migrations; every such request is logged and counted");
        eprintln!("WARNING: the migration check is DISABLED (DISABLE_MIGRATION_CHECK=true); tenants that are not ready are served");
    }
    let config = GuardConfig {
        refresh_interval: args.refresh_interval,
        staleness_bound: args.staleness_bound,
        heartbeat_interval: args.heartbeat,
        retry_after: args.retry_after,
        show_details: args.show_details,
        dangerous_bypass: args.disable_migration_check,
    };
    let guard = watch_registry(backend.clone(), required, config).await?;
    let pool = tenantgate_demo::pool(&url, 16).map_err(Error::Config)?;
    let admin = AdminState {
        guard: guard.clone(),
        backend,
        folder: Arc::new(folder),
        token: std::env::var("TENANTGATE_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        metrics: Some(metrics),
    };
    let app = Router::new()
        .merge(health_router(admin.clone()))
        .merge(admin_router(admin))
        .merge(
            tenantgate_demo::router(tenantgate_demo::AppState { pool })
                .layer(GuardLayer::new(guard)),
        );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Config(e.to_string()))?;
    println!("listening on http://{address}");
    let shutdown = cancel.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| Error::Config(format!("server error: {e}")))?;
    Ok(exit::OK)
}
