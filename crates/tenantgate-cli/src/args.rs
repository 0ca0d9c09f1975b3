//! Command-line arguments.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use tenantgate::LedgerKind;

/// Schema-per-tenant migrations that never leave a half-built tenant.
#[derive(Debug, Parser)]
#[command(name = "tenantgate", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// Database URL: sqlite://DIR (a data folder) or postgres://user@host/db?sslmode=require
    /// [default: sqlite://./tenantgate-data]
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// Data folder of the embedded SQLite store; shorthand for --database-url sqlite://DIR
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) data: Option<PathBuf>,
    /// Migration folder holding tenant/ and optionally shared/ (or a flat sqlx folder;
    /// with --ledger django, the Django project holding the apps)
    #[arg(
        long,
        env = "TENANTGATE_MIGRATIONS",
        default_value = "migrations",
        global = true
    )]
    pub(crate) migrations: PathBuf,
    /// Which ledger each tenant schema holds: tenantgate (its own), sqlx
    /// (_sqlx_migrations) or django (django_migrations)
    #[arg(
        long,
        env = "TENANTGATE_LEDGER",
        default_value_t = LedgerKind::Tenantgate,
        global = true
    )]
    pub(crate) ledger: LedgerKind,
    /// With --ledger django: the tenant apps whose migrations are required, each LABEL
    /// (its files in --migrations/LABEL/migrations) or LABEL=DIR; comma-separated or repeated
    #[arg(
        long = "django-apps",
        env = "TENANTGATE_DJANGO_APPS",
        value_delimiter = ',',
        value_name = "LABEL[=DIR]",
        global = true
    )]
    pub(crate) django_apps: Vec<String>,
    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Write logs to stderr as JSON lines
    #[arg(long, env = "TENANTGATE_LOG_JSON", global = true)]
    pub(crate) log_json: bool,
    /// True when `--migrations` was given on the command line (not only
    /// through the environment).
    #[arg(skip)]
    pub(crate) migrations_given: bool,
}

impl Global {
    /// The store's URL: `--data`, else `--database-url`/`DATABASE_URL`, else
    /// the embedded default.
    pub(crate) fn url(&self) -> String {
        match (&self.data, &self.database_url) {
            (Some(dir), _) => format!("sqlite://{}", dir.display()),
            (None, Some(url)) => url.clone(),
            (None, None) => tenantgate::backend::DEFAULT_URL.to_owned(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Apply pending shared migrations, then bring every tenant to the full tenant set
    Migrate(MigrateArgs),
    /// Create, list, show and drop tenants
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Check every tenant's ledger (and with --deep its catalog) against the migration files
    Verify(VerifyArgs),
    /// Run a named, idempotent data fix (backfills/NAME.sql) across the fleet
    Backfill(BackfillArgs),
    /// Serve the messages demo app behind the migration guard, with /health/migrations and /metrics
    Serve(ServeArgs),
    /// Put the guard in front of any web app: a reverse proxy that forwards only served tenants
    Proxy(Box<ProxyArgs>),
    /// See it work: three demo tenants, one a migration behind, served behind the guard.
    /// Without --data it starts fresh in ./tenantgate-data; --data DIR builds in, or reuses, DIR
    Demo(DemoArgs),
    /// Register schemas that already exist (built by django-tenants, sqlx or scripts) as tenants;
    /// a dry run unless --apply
    Adopt(AdoptArgs),
    /// After a deploy: bring the registry in step with the ledgers and have every running
    /// proxy re-read its migration folder
    Notify,
    /// Check the migration folder for statements Citus refuses in distributed schemas
    /// (file, line and rule; exit 1 on any error), without touching a database
    Lint,
    /// Add, list and remove placements: the PostgreSQL servers tenants live on
    #[command(subcommand)]
    Placements(PlacementsCommand),
    /// Print a shell completion script (e.g. `tenantgate completions bash > /etc/bash_completion.d/tenantgate`)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// Whether the command answers HTTP requests, which a runtime with a
    /// worker per core serves in parallel. Every other command is a client
    /// of its store and runs on one thread: its tasks wait on the database,
    /// and waking a task on another thread cost half the client's CPU in a
    /// fleet migration (futex wake-ups and context switches).
    pub(crate) fn serves_http(&self) -> bool {
        matches!(self, Self::Serve(_) | Self::Proxy(_) | Self::Demo(_))
    }
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Address to serve on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) listen: std::net::SocketAddr,
    /// Run the scenario, print the result table (or with --json a JSON document) and exit
    #[arg(long)]
    pub(crate) no_serve: bool,
}

/// How a server guards requests and learns of changes (`serve`, `proxy`).
#[derive(Debug, Args)]
pub(crate) struct GuardArgs {
    /// Start even when tenants are not ready; the guard blocks them
    #[arg(long)]
    pub(crate) allow_degraded: bool,
    /// How often the whole registry is re-read besides notifications
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) refresh_interval: Duration,
    /// How long the registry may go unconfirmed before requests get 503 "migration state unknown"
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) staleness_bound: Duration,
    /// How often the registry connection is checked
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) heartbeat: Duration,
    /// Retry-After of 503 answers
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) retry_after: Duration,
    /// Show the database's own error text on 503 pages
    #[arg(long, env = "TENANTGATE_SHOW_DETAILS")]
    pub(crate) show_details: bool,
    /// Emergency bypass: serve tenants that are not ready (each request logged and counted)
    #[arg(
        long = "dangerous-disable-migration-check",
        env = "DISABLE_MIGRATION_CHECK"
    )]
    pub(crate) disable_migration_check: bool,
    /// How the server learns of registry changes on PostgreSQL: `listen`
    /// (LISTEN/NOTIFY, within milliseconds) or `poll` (a registry digest
    /// every --poll-interval; works through transaction-pooling PgBouncer)
    #[arg(long, env = "TENANTGATE_WATCH", value_enum, default_value_t = WatchArg::Listen)]
    pub(crate) watch: WatchArg,
    /// LISTEN on a direct connection to this URL instead of DATABASE_URL
    /// (when DATABASE_URL goes through a transaction-pooling proxy)
    #[arg(
        long,
        env = "TENANTGATE_WATCH_URL",
        hide_env_values = true,
        conflicts_with = "watch"
    )]
    pub(crate) watch_url: Option<String>,
    /// How often `--watch poll` reads the registry's digest
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) poll_interval: Duration,
    /// How long requests in flight may take to finish after Ctrl-C or SIGTERM
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) drain_timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed)
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// Migrate the fleet before starting; start only if that succeeds
    #[arg(long, conflicts_with = "allow_degraded")]
    pub(crate) migrate_on_start: bool,
    /// Tenants migrated in parallel by --migrate-on-start
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) jobs: u16,
    #[command(flatten)]
    pub(crate) guard: GuardArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// The app to forward to: http://host:port
    #[arg(long, env = "TENANTGATE_UPSTREAM")]
    pub(crate) upstream: axum::http::Uri,
    /// Address to listen on for the app's traffic (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// Address of tenantgate's own routes: /livez, /readyz, /health/migrations, /metrics, /admin
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub(crate) admin_listen: std::net::SocketAddr,
    /// A host forwarded without a tenant (the app's public site); repeatable
    #[arg(long = "pass-host", value_name = "HOST")]
    pub(crate) pass_hosts: Vec<String>,
    /// Peers (CIDR) whose X-Forwarded-* headers are extended rather than replaced; repeatable
    #[arg(long = "trust-forwarded", value_name = "CIDR")]
    pub(crate) trust_forwarded: Vec<ipnet::IpNet>,
    /// With a sqlx or Django ledger: how often the tenants' ledgers are read into the registry
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) ledger_poll: Duration,
    /// How long the app may take to send response headers (then 504, within a tenth more, at most 1 s)
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) upstream_timeout: Duration,
    /// How long a response body may stall before the client connection is aborted
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) idle_timeout: Duration,
    #[command(flatten)]
    pub(crate) guard: GuardArgs,
}

/// How `serve` learns of registry changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum WatchArg {
    /// LISTEN/NOTIFY on a dedicated connection.
    Listen,
    /// Poll a digest of the registry.
    Poll,
}

#[derive(Debug, Args)]
pub(crate) struct BackfillArgs {
    /// The backfill's name: the file stem in the migration folder's backfills/
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
    /// Run again in tenants whose backfill ledger says it already ran
    #[arg(long)]
    pub(crate) force: bool,
    /// Count the rows it would change in each tenant, then roll back
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Stop scheduling tenants after the first failure
    #[arg(long)]
    pub(crate) fail_fast: bool,
}

/// How a fleet run is carried out.
#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    /// Only this tenant (repeatable)
    #[arg(long = "tenant", value_name = "NAME")]
    pub(crate) tenants: Vec<String>,
    /// Tenants worked on at once, each on its own connection
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) jobs: u16,
    /// How long a tenant's statements wait for locks before the attempt fails (e.g. 500ms, 5s)
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) lock_timeout: Duration,
    /// How long one statement may run (0 for no limit)
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub(crate) statement_timeout: Duration,
    /// Attempts per tenant when it stays locked past the lock timeout
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(crate) lock_attempts: u32,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
    /// Stop scheduling tenants after the first failure
    #[arg(long)]
    pub(crate) fail_fast: bool,
    /// Print the plan per tenant and change nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Apply a migration a tenant lacks even when it holds a higher version
    #[arg(long)]
    pub(crate) allow_out_of_order: bool,
    /// Heal through the framework's own command, run once per tenant that is behind
    /// ({tenant} and {schema} are replaced), e.g. 'python manage.py migrate_schemas --schema={schema}'
    #[arg(long, env = "TENANTGATE_EXEC", value_name = "COMMAND", conflicts_with_all = ["dry_run", "allow_out_of_order"])]
    pub(crate) exec: Option<String>,
    /// Run --exec's command through `sh -c` instead of splitting it into words
    #[arg(long, requires = "exec")]
    pub(crate) shell: bool,
    /// How long one tenant's --exec command may run before its process group is killed
    #[arg(long, default_value = "30m", value_parser = parse_duration, requires = "exec")]
    pub(crate) exec_timeout: Duration,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from_sql", "schemas"])))]
pub(crate) struct AdoptArgs {
    /// A query returning the schema and optionally a domain per row (several rows for
    /// several domains); it runs read-only, e.g. django-tenants' tenant and domain tables
    #[arg(long, value_name = "SQL")]
    pub(crate) from_sql: Option<String>,
    /// Every schema whose name matches this LIKE pattern (e.g. 'tenant\_%')
    #[arg(long, value_name = "PATTERN")]
    pub(crate) schemas: Option<String>,
    /// Write the registry rows (one transaction); without it, only report
    #[arg(long)]
    pub(crate) apply: bool,
    /// With --ledger tenantgate: record the migrations up to VERSION as applied in each schema,
    /// only where the live catalog matches what they build
    #[arg(long, value_name = "VERSION")]
    pub(crate) baseline: Option<i64>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
    /// Also compare each tenant's live catalog with what its ledger promises
    /// (with --ledger django: with its peers', as --peers does)
    #[arg(long)]
    pub(crate) deep: bool,
    /// Also compare the catalogs of tenants holding the same migrations with each other:
    /// one differing from a strict majority of at least three is reported
    #[arg(long)]
    pub(crate) peers: bool,
    /// Apply missing migrations, then verify again
    #[arg(long)]
    pub(crate) fix: bool,
    /// With --fix: apply a migration a tenant lacks even when it holds a higher version
    #[arg(long, requires = "fix")]
    pub(crate) allow_out_of_order: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TenantsCommand {
    /// Provision a tenant atomically: schema (or file), migrations, ledger, registry and domains, or nothing
    Create {
        /// The tenant's name, which also names its schema (or file)
        name: String,
        /// A domain that routes to it (repeatable)
        #[arg(long = "domain", value_name = "HOST")]
        domains: Vec<String>,
        /// The placement to create it on [default: the one holding the fewest tenants]
        #[arg(long, value_name = "NAME")]
        placement: Option<String>,
    },
    /// Move a tenant to another placement: unserved (503 "being moved") and its tables locked
    /// against writes while it is copied, checked, and switched; nothing lost if interrupted
    Move {
        /// The tenant's name
        name: String,
        /// The placement to move it to
        #[arg(
            long,
            value_name = "PLACEMENT",
            required_unless_present = "to_node",
            conflicts_with = "to_node"
        )]
        to: Option<String>,
        /// On a Citus placement: the worker to move its distributed schema to, online
        /// (citus_schema_move; the tenant keeps serving)
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_node, conflicts_with = "keep_source")]
        to_node: Option<(String, u16)>,
        /// Keep the source schema, renamed <name>_moved_<unix time>, instead of dropping it
        #[arg(long)]
        keep_source: bool,
    },
    /// List tenants with their state, applied version and domains
    List,
    /// Show one tenant
    Show {
        /// The tenant's name
        name: String,
    },
    /// Remove a tenant's schema (or file), ledger, registry and domain rows
    Drop {
        /// The tenant's name
        name: String,
        /// Confirm: the tenant's data is deleted
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PlacementsCommand {
    /// Add a placement: a PostgreSQL server and database, by a URL without a password
    /// (passwords come from the password file, PGPASSFILE or ~/.pgpass)
    Add {
        /// Its name: lowercase letters, digits, '-' or '_'
        name: String,
        /// postgres://USER@HOST:PORT/DB or host=… dbname=… (no password)
        url: String,
    },
    /// List placements with the tenants each holds
    List,
    /// Remove a placement that holds no tenants
    Remove {
        /// Its name
        name: String,
    },
}

/// Parses a Citus worker as `HOST:PORT`.
fn parse_node(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| format!("{port:?} in {text:?} is not a port number"))?;
    if host.is_empty() {
        return Err(format!("{text:?} names no host"));
    }
    Ok((host.to_owned(), port))
}

/// Parses a duration as humantime spells it (`250ms`, `5s`, `2m`, `1h 30m`),
/// or a bare number of seconds (`0` for "no limit" where an option says so).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 500ms, 5s or 2m: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
