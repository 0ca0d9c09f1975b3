//! One module per command; each returns its exit code.

mod adopt;
mod backfill;
mod demo;
mod guarded;
mod migrate;
mod notify;
mod placements;
mod proxy;
mod serve;
mod tenants;
mod verify;

use tenantgate::{
    backend::{ConnectOptions, Limits, WatchMode},
    django::DjangoApp,
    fleet::FleetOptions,
    Backend, Error, FolderLayout, LedgerKind, MigrationFolder, TenantName,
};
use tenantgate_demo::Store;
use tokio_util::sync::CancellationToken;

use crate::{
    args::{Cli, Command, FleetArgs, Global, TenantsCommand},
    cli_error::CliError,
    exit, output,
};

/// Runs a parsed command line; returns the exit code.
pub(crate) async fn run(cli: Cli, cancel: CancellationToken) -> u8 {
    let global = &cli.global;
    let own_ledger_only = match &cli.command {
        Command::Serve(_) => Some("serve"),
        Command::Demo(_) => Some("demo"),
        Command::Backfill(_) => Some("backfill"),
        Command::Tenants(TenantsCommand::Create { .. }) => Some("tenants create"),
        _ => None,
    };
    let result = match own_ledger_only.map(|command| self::own_ledger_only(global, command)) {
        Some(Err(refused)) => Err(refused),
        _ => dispatch(global, cli.command, &cancel).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            output::error(global, &error);
            exit::for_error(&error)
        }
    }
}

async fn dispatch(
    global: &Global,
    command: Command,
    cancel: &CancellationToken,
) -> Result<u8, CliError> {
    let cancel = cancel.clone();
    match command {
        Command::Migrate(args) => migrate::run(global, args, &cancel).await,
        Command::Tenants(command) => tenants::run(global, command, &cancel).await,
        Command::Verify(args) => verify::run(global, args, &cancel).await,
        Command::Backfill(args) => backfill::run(global, args, &cancel).await,
        Command::Serve(args) => serve::run(global, args, &cancel).await,
        Command::Proxy(args) => proxy::run(global, *args, &cancel).await,
        Command::Demo(args) => demo::run(global, args, &cancel).await,
        Command::Adopt(args) => adopt::run(global, args).await,
        Command::Notify => notify::run(global).await,
        Command::Lint => {
            let findings = tenantgate::lint::citus(&folder(global)?);
            output::lint(global, &findings);
            Ok(exit::for_lint(&findings))
        }
        Command::Placements(command) => placements::run(global, command).await,
        Command::Completions { shell } => {
            let mut command = <crate::args::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "tenantgate", &mut std::io::stdout());
            Ok(exit::OK)
        }
    }
}

/// Connects to the store the global options name, reading the ledgers
/// `--ledger` names.
pub(crate) async fn backend(global: &Global) -> Result<Box<dyn Backend>, Error> {
    tenantgate::backend::connect_with(
        &global.url(),
        &connect_options(global, WatchMode::default()),
    )
    .await
}

/// How to open the store: `watch`, and the ledger the global options name.
pub(crate) fn connect_options(global: &Global, watch: WatchMode) -> ConnectOptions {
    ConnectOptions {
        watch,
        ledger: global.ledger,
        django_apps: global
            .django_apps
            .iter()
            .map(|spec| {
                spec.split_once('=')
                    .map_or(spec.as_str(), |(label, _)| label)
                    .to_owned()
            })
            .collect(),
    }
}

/// Refuses a command that works only on tenantgate's own ledger.
pub(crate) fn own_ledger_only(global: &Global, command: &str) -> Result<(), CliError> {
    if global.ledger.is_foreign() {
        return Err(CliError::Usage(format!(
            "`{command}` works only with tenantgate's own ledger; with --ledger {} use migrate, verify, proxy, adopt, notify and tenants list/show",
            global.ledger
        )));
    }
    Ok(())
}

/// Loads the migration folder the global options name. A folder that holds
/// one set per store (`postgres/`, `sqlite/`) instead of `tenant/` is read
/// from the subfolder matching the database URL, and the choice is said.
pub(crate) fn folder(global: &Global) -> Result<MigrationFolder, Error> {
    let root = &global.migrations;
    match (global.ledger, global.django_apps.is_empty()) {
        (LedgerKind::Django, true) => {
            return Err(Error::Config(
                "--ledger django needs --django-apps: the tenant apps whose migrations the code requires".into(),
            ))
        }
        (LedgerKind::Django, false) => {
            let apps = global
                .django_apps
                .iter()
                .map(|spec| DjangoApp::parse(spec, root))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(MigrationFolder {
                root: root.clone(),
                tenant: tenantgate::django::load(&apps)?,
                ..MigrationFolder::default()
            });
        }
        (_, false) => {
            return Err(Error::Config(
                "--django-apps applies to --ledger django".into(),
            ))
        }
        (_, true) => {}
    }
    if !root.join("tenant").is_dir() {
        if let Some(store) = Store::for_url(&global.url()) {
            let per_store = root.join(store.folder_name());
            if per_store.join("tenant").is_dir() {
                output::notice(
                    global,
                    tracing::Level::INFO,
                    &format!(
                        "note: using the {} migration set in {}",
                        match store {
                            Store::Postgres => "PostgreSQL",
                            Store::Sqlite => "SQLite",
                        },
                        per_store.display()
                    ),
                );
                return MigrationFolder::load(per_store);
            }
        }
    }
    let folder = MigrationFolder::load(root)?;
    if folder.layout == FolderLayout::Flat {
        output::notice(
            global,
            tracing::Level::INFO,
            &format!(
                "note: {} is a flat sqlx folder; every migration in it is a tenant migration",
                root.display()
            ),
        );
    }
    Ok(folder)
}

/// Engine fleet options from the command line.
pub(crate) fn fleet_options(args: &FleetArgs) -> Result<FleetOptions, Error> {
    Ok(FleetOptions {
        tenants: args
            .tenants
            .iter()
            .map(|t| TenantName::parse(t))
            .collect::<Result<_, _>>()?,
        jobs: usize::from(args.jobs),
        limits: Limits {
            lock_timeout: args.lock_timeout,
            statement_timeout: (!args.statement_timeout.is_zero())
                .then_some(args.statement_timeout),
        },
        lock_attempts: args.lock_attempts,
        ..FleetOptions::default()
    })
}
