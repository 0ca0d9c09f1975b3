//! `tenantgate placements add|list|remove`.

use crate::{
    args::{Global, PlacementsCommand},
    cli_error::CliError,
    exit, output,
};

pub(crate) async fn run(global: &Global, command: PlacementsCommand) -> Result<u8, CliError> {
    let backend = super::backend(global).await?;
    backend.prepare().await?;
    match command {
        PlacementsCommand::Add { name, url } => {
            backend.add_placement(&name, &url).await?;
            output::placement_added(global, &name);
        }
        PlacementsCommand::List => {
            output::placement_list(global, &backend.placements().await?);
        }
        PlacementsCommand::Remove { name } => {
            backend.remove_placement(&name).await?;
            output::placement_removed(global, &name);
        }
    }
    Ok(exit::OK)
}
