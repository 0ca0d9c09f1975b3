//! One module per command; each returns its exit code.

mod migrate;
mod tenants;
mod verify;

use tenantgate::{
    backend::Limits, fleet::FleetOptions, Backend, Error, MigrationFolder, TenantName,
};
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
    let url = global.database_url.as_deref().ok_or_else(|| {
        Error::Config("no database: pass --database-url postgres://… or set DATABASE_URL".into())
    })?;
    tenantgate::connect(url).await
}

/// Loads the migration folder the global options name.
pub(crate) fn folder(global: &Global) -> Result<MigrationFolder, Error> {
    MigrationFolder::load(&global.migrations)
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
