//! `tenantgate proxy`: the guard in front of any web app.

use std::{sync::Arc, time::Duration};

use tenantgate::{readiness::RequiredSet, Backend, Domain, Error};
use tenantgate_http::{
    proxy::{self, ProxyConfig, TenantLocation, Upstream},
    GuardState,
};
use tokio_util::sync::CancellationToken;

use super::guarded;
use crate::{
    args::{Global, ProxyArgs},
    cli_error::CliError,
    exit, output,
};

pub(crate) async fn run(
    global: &Global,
    args: ProxyArgs,
    cancel: &CancellationToken,
) -> Result<u8, CliError> {
    if !matches!(args.upstream.scheme_str(), Some("http")) || args.upstream.authority().is_none() {
        return Err(CliError::Usage(format!(
            "--upstream {} is not an http://host:port URL",
            args.upstream
        )));
    }
    let pass_hosts = args
        .pass_hosts
        .iter()
        .map(|h| Domain::parse(h))
        .collect::<Result<Vec<_>, Error>>()?;
    let folder = super::folder(global)?;
    let required = RequiredSet::from_folder(&folder);
    let backend = guarded::connect(global, &args.guard).await?;
    guarded::gate(global, &args.guard, backend.as_ref(), &required).await?;
    let config = guarded::config(global, &args.guard);
    let (guard, admin_routes) = guarded::start(backend.clone(), required, config, folder).await?;
    if global.ledger.is_foreign() {
        tokio::spawn(poll_ledgers(backend, guard.clone(), args.ledger_poll));
    }
    let location = match tenantgate::backend::sqlite_folder(&global.url()) {
        Some(dir) => TenantLocation::File(std::path::absolute(dir).unwrap_or_else(|_| dir.into())),
        None => TenantLocation::Schema,
    };
    let config = ProxyConfig {
        upstream: args.upstream.clone(),
        upstream_timeout: args.upstream_timeout,
        idle_timeout: args.idle_timeout,
        trust_forwarded: args.trust_forwarded.clone(),
        location,
        ..ProxyConfig::default()
    };
    let (listener, address) = guarded::listen(args.listen).await?;
    let (admin_listener, admin_address) = guarded::listen(args.admin_listen).await?;
    println!("listening on http://{address}");
    println!("admin on http://{admin_address} (/livez, /readyz, /health/migrations, /metrics)");
    tokio::spawn(reload_on_deploy(global.clone(), guard.clone()));
    let admin = guarded::serve_until(
        admin_listener,
        admin_routes,
        cancel,
        args.guard.drain_timeout,
    );
    // Forwarded requests are counted and timed by the proxy's own metrics.
    let service = move || {
        proxy::service(
            guard.clone(),
            Upstream::new(config.clone()),
            pass_hosts.clone(),
        )
    };
    let proxied = serve_on_workers(listener, service, cancel, args.guard.drain_timeout);
    let (admin, proxied) = tokio::join!(admin, proxied);
    admin.and(proxied)?;
    output::notice(global, tracing::Level::INFO, "proxy stopped");
    Ok(exit::OK)
}

/// Serves the proxy on one single-threaded runtime per core, all
/// accepting from one listener, each with its own upstream pool: a request
/// is read, forwarded and answered on one thread, with no hand-off between
/// threads (nginx's worker model).
async fn serve_on_workers(
    listener: tokio::net::TcpListener,
    service: impl Fn() -> proxy::ProxyService,
    cancel: &CancellationToken,
    drain: std::time::Duration,
) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        what: "cannot share the listening socket with the proxy's workers".into(),
        source,
    };
    let shared = listener.into_std().map_err(io)?;
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut threads = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (listener, service, cancel) =
            (shared.try_clone().map_err(io)?, service(), cancel.clone());
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{worker}"))
            .spawn(move || -> Result<(), CliError> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(CliError::Server)?;
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).map_err(CliError::Server)?;
                    proxy::serve(listener, service, cancel.cancelled(), drain).await;
                    Ok(())
                })
            })
            .map_err(CliError::Server)?;
        threads.push(thread);
    }
    tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|t| {
                t.join().unwrap_or_else(|_| {
                    Err(CliError::Server(std::io::Error::other(
                        "a proxy worker panicked",
                    )))
                })
            })
            .collect::<Result<Vec<()>, CliError>>()
            .map(drop)
    })
    .await
    .map_err(|e| CliError::Server(std::io::Error::other(e)))?
}

/// Re-reads the migration folder on SIGHUP and on `tenantgate notify`, so
/// a deploy that adds a migration the app needs is enforced without a
/// restart.
async fn reload_on_deploy(global: Global, guard: Arc<GuardState>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    loop {
        let cause = tokio::select! {
            hangup = hangups.recv() => match hangup {
                Some(()) => "SIGHUP",
                None => return,
            },
            () = guard.reload_requested() => "tenantgate notify (or a resubscription)",
        };
        match super::folder(&global) {
            Ok(folder) => {
                let required = RequiredSet::from_folder(&folder);
                if required.digest() == guard.required().digest() {
                    tracing::debug!("{cause}: the required set is unchanged");
                    continue;
                }
                tracing::warn!(
                    digest = %required.digest(),
                    "{cause}: the required set was re-read from the migration folder"
                );
                guard.set_required(required);
            }
            Err(e) => {
                tracing::error!(error = %e, "{cause}: the migration folder cannot be read; the required set is unchanged")
            }
        }
    }
}

/// Keeps the registry in step with ledgers another tool writes: reads
/// them every `interval` and records what changed, which the watcher then
/// hears like any registry change.
async fn poll_ledgers(backend: Arc<dyn Backend>, guard: Arc<GuardState>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) =
            tenantgate::ledger::refresh(backend.as_ref(), &guard.required().tenant).await
        {
            tracing::warn!(error = %e, "reading the tenants' ledgers failed; retrying");
        }
    }
}
