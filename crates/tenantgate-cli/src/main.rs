//! The `tenantgate` command: a thin shell over the engine. It parses
//! arguments, draws progress, prints results and decides exit codes.

mod args;
mod cli_error;
mod commands;
mod exit;
mod output;
mod recovery;

use std::process::ExitCode;

/// mimalloc: the proxy allocates per request (header maps, bodies'
/// buffers), and glibc's allocator measured slower there (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, FromArgMatches};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let parsed = args::Cli::command().try_get_matches().and_then(|matches| {
        let mut cli = args::Cli::from_arg_matches(&matches)?;
        cli.global.migrations_given = matches!(
            matches
                .subcommand()
                .and_then(|(_, sub)| sub.value_source("migrations"))
                .or_else(|| matches.value_source("migrations")),
            Some(clap::parser::ValueSource::CommandLine)
        );
        Ok(cli)
    });
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && std::env::args().any(|a| a == "--json") => {
            // A usage error is JSON too when JSON was asked for.
            println!(
                "{}",
                serde_json::json!({ "error": { "kind": "usage", "message": e.to_string().trim() } })
            );
            return ExitCode::from(exit::USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    init_logging(&cli.global);
    let mut runtime = if cli.command.serves_http() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let cancel = CancellationToken::new();
    runtime.spawn(cancel_on_signal(cancel.clone(), cli.global.clone()));
    let code = runtime.block_on(commands::run(cli, cancel));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code)
}

/// Cancels on Ctrl-C or SIGTERM, so in-flight tenants are rolled back and
/// the partial summary is printed.
async fn cancel_on_signal(cancel: CancellationToken, global: args::Global) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    output::notice(
        &global,
        tracing::Level::WARN,
        "interrupted: stopping (tenants in flight are rolled back)…",
    );
    cancel.cancel();
}

fn init_logging(global: &args::Global) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if global.log_json {
        builder.json().init();
    } else {
        use std::io::IsTerminal;
        builder
            .without_time()
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal() && !no_color())
            .init();
    }
}

/// Whether colour is switched off (<https://no-color.org>: `NO_COLOR` set
/// to anything but the empty string).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}
