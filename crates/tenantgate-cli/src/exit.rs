//! Exit codes, decided here and nowhere else.
//!
//! `0` success; `1` an operation failed for a tenant or a check found a
//! tenant not ready; `2` bad usage or configuration; `3` the database cannot
//! be reached; `130` interrupted. When several apply, 3 > 2 > 1.

use tenantgate::{fleet::FleetReport, Error, FailureKind};
use tenantgate_http::StartupRefused;

use crate::cli_error::CliError;

pub(crate) const OK: u8 = 0;
pub(crate) const TENANT_FAILED: u8 = 1;
pub(crate) const USAGE: u8 = 2;
pub(crate) const UNAVAILABLE: u8 = 3;
pub(crate) const INTERRUPTED: u8 = 130;

/// The exit code for a command's failure.
pub(crate) fn for_error(error: &CliError) -> u8 {
    match error {
        CliError::Engine(e) => for_engine_error(e),
        CliError::Usage(_) => USAGE,
        CliError::Io { .. } | CliError::Server(_) | CliError::Demo(_) => TENANT_FAILED,
        CliError::StartupRefused(StartupRefused::NotReady(_)) => TENANT_FAILED,
        CliError::StartupRefused(StartupRefused::Store(e)) => for_engine_error(e),
    }
}

/// The exit code for an engine error: 2 only for usage and configuration.
fn for_engine_error(error: &Error) -> u8 {
    match error {
        Error::InvalidTenantName { .. }
        | Error::InvalidDomain { .. }
        | Error::MigrationFolder { .. }
        | Error::Config(_)
        | Error::ChecksumChanged { .. }
        | Error::TransactionControl { .. }
        | Error::UnreadableSql { .. }
        | Error::MigrationEntry { .. }
        | Error::OutOfOrder { .. }
        | Error::UnknownBackfill { .. }
        | Error::CommandUnstartable { .. }
        | Error::UnknownPlacement { .. }
        | Error::CitusRefuses { .. } => USAGE,
        Error::DatabaseUnavailable { .. } => UNAVAILABLE,
        Error::Interrupted => INTERRUPTED,
        _ => TENANT_FAILED,
    }
}

/// The exit code for a fleet run's report.
pub(crate) fn for_fleet(report: &FleetReport) -> u8 {
    if report.interrupted {
        return INTERRUPTED;
    }
    let mut code = OK;
    if report.database_error.is_some() {
        code = code.max(UNAVAILABLE);
    }
    for failure in report.failures().filter_map(|t| t.error.as_ref()) {
        code = code.max(match failure.kind {
            FailureKind::ChecksumMismatch => USAGE,
            FailureKind::ConnectionLost => UNAVAILABLE,
            _ => TENANT_FAILED,
        });
    }
    code
}

/// The exit code for a verification's report: 3 when a placement could
/// not be read, 1 when anything is not clean.
pub(crate) fn for_verify(report: &tenantgate::verify::VerifyReport) -> u8 {
    if report.any_unreachable() {
        UNAVAILABLE
    } else if report.all_ok() {
        OK
    } else {
        TENANT_FAILED
    }
}

/// The exit code of `lint`: 1 when a finding is an error.
pub(crate) fn for_lint(findings: &[tenantgate::lint::Finding]) -> u8 {
    if findings
        .iter()
        .any(|f| f.severity == tenantgate::lint::Severity::Error)
    {
        TENANT_FAILED
    } else {
        OK
    }
}

/// Combines codes: interrupted first, then the highest of 3 > 2 > 1.
pub(crate) fn worst(a: u8, b: u8) -> u8 {
    if a == INTERRUPTED || b == INTERRUPTED {
        INTERRUPTED
    } else {
        a.max(b)
    }
}
