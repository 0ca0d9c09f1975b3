//! Everything a command can fail with: the engine's errors and the
//! binary's own. Exit codes and output are decided from it in one place
//! each (`exit`, `output`).

use tenantgate_http::StartupRefused;

/// A command's failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] tenantgate::Error),
    /// The command line asks for something this command cannot do.
    #[error("{0}")]
    Usage(String),
    /// A file or folder the command needs could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What the command was doing.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("the server failed: {0}")]
    Server(std::io::Error),
    /// The demo's scenario could not be built.
    #[error("building the demo failed: {0}")]
    Demo(String),
    /// `serve` refused to start.
    #[error("{0}")]
    StartupRefused(StartupRefused),
}

impl CliError {
    /// A stable snake_case name for the kind of failure, for `--json`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            CliError::Engine(e) => e.kind(),
            CliError::Usage(_) => "usage",
            CliError::Io { .. } => "io",
            CliError::Server(_) => "server",
            CliError::Demo(_) => "demo",
            CliError::StartupRefused(StartupRefused::NotReady(_)) => "tenants_not_ready",
            CliError::StartupRefused(StartupRefused::Store(e)) => e.kind(),
        }
    }
}
