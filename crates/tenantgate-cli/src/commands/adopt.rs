//! `tenantgate adopt`: register schemas that already exist.

use tenantgate::adopt::{self, AdoptOptions, AdoptSource};

use crate::{
    args::{AdoptArgs, Global},
    cli_error::CliError,
    exit, output,
};

pub(crate) async fn run(global: &Global, args: AdoptArgs) -> Result<u8, CliError> {
    let source = match (args.from_sql, args.schemas) {
        (Some(sql), None) => AdoptSource::Sql(sql),
        (None, Some(pattern)) => AdoptSource::Schemas(pattern),
        _ => {
            return Err(CliError::Usage(
                "adopt takes one of --from-sql or --schemas".into(),
            ))
        }
    };
    let folder = super::folder(global)?;
    let backend = super::backend(global).await?;
    let options = AdoptOptions {
        apply: args.apply,
        baseline: args.baseline,
    };
    let report = adopt::adopt(backend.as_ref(), &folder.tenant, &source, &options).await?;
    output::adopt_report(global, &report);
    Ok(if report.refused.is_empty() {
        exit::OK
    } else {
        exit::TENANT_FAILED
    })
}
