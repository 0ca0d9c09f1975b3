//! One module per command; each returns its exit code.

mod backfill;
mod demo;
mod guarded;
mod migrate;
mod proxy;
mod serve;
mod tenants;
mod verify;

use tenantgate::{
    backend::Limits, fleet::FleetOptions, Backend, Error, FolderLayout, MigrationFolder, TenantName,
};
use tenantgate_demo::Store;
use tokio_util::sync::CancellationToken;

use crate::{
    args::{Cli, Command, FleetArgs, Global},
    exit, output,
};

/// Runs a parsed command line; returns the exit code.
pub(crate) async fn run(cli: Cli, cancel: CancellationToken) -> u8 {
    let global = &cli.global;
    let result = match cli.command {
        Command::Migrate(args) => migrate::run(global, args, &cancel).await,
        Command::Tenants(command) => tenants::run(global, command, &cancel).await,
        Command::Verify(args) => verify::run(global, args, &cancel).await,
        Command::Backfill(args) => backfill::run(global, args, &cancel).await,
        Command::Serve(args) => serve::run(global, args, &cancel).await,
        Command::Proxy(args) => proxy::run(global, args, &cancel).await,
        Command::Demo(args) => demo::run(global, args, &cancel).await,
        Command::Completions { shell } => {
            let mut command = <crate::args::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "tenantgate", &mut std::io::stdout());
            Ok(exit::OK)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            output::error(global, &error);
            exit::for_error(&error)
        }
    }
}

/// Connects to the store the global options name.
pub(crate) async fn backend(global: &Global) -> Result<Box<dyn Backend>, Error> {
    tenantgate::connect(&global.url()).await
}

/// Loads the migration folder the global options name. A folder that holds
/// one set per store (`postgres/`, `sqlite/`) instead of `tenant/` is read
/// from the subfolder matching the database URL, and the choice is said.
pub(crate) fn folder(global: &Global) -> Result<MigrationFolder, Error> {
    let root = &global.migrations;
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
