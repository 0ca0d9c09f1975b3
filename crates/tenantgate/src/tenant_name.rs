//! Validated tenant names: the only way a tenant's name reaches SQL.
//!
//! ```
//! use tenantgate::TenantName;
//!
//! let acme = TenantName::parse("acme_2024").unwrap();
//! assert_eq!(acme.quoted(), "\"acme_2024\"");
//! for refused in ["Acme", "public", "pg_catalog", "a;drop schema x", ""] {
//!     assert!(TenantName::parse(refused).is_err(), "{refused:?}");
//! }
//! ```

use std::fmt;

use crate::Error;

/// The rule every tenant name must satisfy, quoted verbatim in errors.
pub const TENANT_NAME_RULE: &str = "a tenant name is 1 to 63 bytes of lowercase ASCII letters, \
digits and '_', starts with a letter, and is not 'public', 'information_schema', 'tenantgate' \
or 'pg_*'";

/// A tenant name that satisfies [`TENANT_NAME_RULE`].
///
/// The tenant's schema (or database file) is named after it. Holding a
/// `TenantName` guarantees the value is safe to use as a quoted identifier:
/// it contains no quote, no whitespace and nothing outside `[a-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TenantName(String);

impl PartialEq<str> for TenantName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl TenantName {
    /// Validates `name` against [`TENANT_NAME_RULE`].
    pub fn parse(name: &str) -> Result<Self, Error> {
        let reject = |reason: &str| Error::InvalidTenantName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        if name.is_empty() {
            return Err(reject("it is empty"));
        }
        if name.len() > 63 {
            return Err(reject("it is longer than 63 bytes"));
        }
        if !name.as_bytes()[0].is_ascii_lowercase() {
            return Err(reject("it does not start with a lowercase ASCII letter"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(reject(&format!("it contains {bad:?}")));
        }
        if matches!(name, "public" | "information_schema" | "tenantgate") || name.starts_with("pg_")
        {
            return Err(reject("it is reserved"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a double-quoted SQL identifier.
    pub fn quoted(&self) -> String {
        // The validated alphabet holds no '"', so quoting needs no escaping.
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["acme", "a", "t_1", "globex_2024", &"a".repeat(63)] {
            assert_eq!(TenantName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn rejects_hostile_names_with_the_rule() {
        let long = "a".repeat(64);
        for name in [
            "a;drop schema public",
            "\"x\"",
            "Ab",
            long.as_str(),
            "",
            "ünïcode",
            "pg_temp",
            "public",
            "information_schema",
            "tenantgate",
            "1abc",
            "_abc",
            "a-b",
            "a b",
            "a\0b",
        ] {
            let err = TenantName::parse(name).unwrap_err();
            assert!(err.to_string().contains(TENANT_NAME_RULE), "{err}");
        }
    }

    #[test]
    fn quoted_is_a_double_quoted_identifier() {
        assert_eq!(TenantName::parse("acme").unwrap().quoted(), "\"acme\"");
    }
}
