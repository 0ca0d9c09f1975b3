//! Placements: the PostgreSQL servers tenants live on, by name.
//!
//! The registry (on the server of the store's own URL) routes each tenant
//! to its placement. [`DEFAULT_PLACEMENT`] is the registry's own server and
//! always exists; every other placement names a server and database by a
//! URL that carries no password (passwords come from the libpq password
//! file). Each placement keeps its own shared schema, shared ledger and
//! record of the tenants it holds, so a tenant's ledger and that record
//! commit together there; the registry row follows after that commit and
//! is never ahead of the ledger.
//!
//! ```
//! use tenantgate::placement::{check_name, check_url};
//!
//! assert!(check_name("eu-2").is_ok());
//! assert!(check_name("default").is_err());
//! assert!(check_url("postgres://app@db2.example.com/app").is_ok());
//! assert!(check_url("postgres://app:secret@db2.example.com/app").is_err());
//! ```

pub use crate::registry::DEFAULT_PLACEMENT;
use crate::{backend, Error};

/// A placement as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    /// Its name.
    pub name: String,
    /// Where it is, without credentials (the store's own URL, redacted, for
    /// the default placement).
    pub url: String,
    /// How many registered tenants live there.
    pub tenants: usize,
}

/// Whether `name` may name a new placement: 1 to 63 lowercase letters,
/// digits, `-` or `_`, starting with a letter, and not `default`.
pub fn check_name(name: &str) -> Result<(), Error> {
    let valid = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(Error::Config(format!(
            "invalid placement name {name:?}: use 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter"
        )));
    }
    if name == DEFAULT_PLACEMENT {
        return Err(Error::Config(
            "placement `default` is the registry's own server and always exists".into(),
        ));
    }
    Ok(())
}

/// Whether `url` may name a placement: a PostgreSQL URL without a password
/// (the registry is readable by every tenantgate process; passwords belong
/// in the password file).
pub fn check_url(url: &str) -> Result<(), Error> {
    if !backend::is_postgres(url) {
        return Err(Error::Config(format!(
            "a placement is a PostgreSQL database; {:?} is not a postgres:// URL or key=value string",
            backend::redact(url)
        )));
    }
    if backend::redact(url) != url {
        return Err(Error::Config(format!(
            "the placement URL {:?} carries a password; the registry keeps URLs readable, so put the password in the password file (PGPASSFILE, default ~/.pgpass) instead",
            backend::redact(url)
        )));
    }
    Ok(())
}
