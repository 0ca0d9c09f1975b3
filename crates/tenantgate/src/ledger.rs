//! Which ledger a tenant schema holds: tenantgate's own, or one another tool
//! wrote (sqlx's `_sqlx_migrations`, Django's `django_migrations`).
//!
//! The ledger in each tenant schema is the truth about what it holds. A
//! fleet built by sqlx or django-tenants already keeps one; tenantgate reads
//! it where it is instead of asking for a second one.
//!
//! ```
//! use tenantgate::ledger::LedgerKind;
//!
//! let kind: LedgerKind = "django".parse().unwrap();
//! assert_eq!(kind.table(), "django_migrations");
//! assert!(kind.is_foreign() && !kind.applies_migrations());
//! assert!(LedgerKind::Sqlx.applies_migrations());
//! assert!("flyway".parse::<LedgerKind>().is_err());
//! ```

use std::{fmt, str::FromStr};

/// The kind of ledger each tenant schema holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// `_tenantgate_migrations`, written by tenantgate in the transaction
    /// that applies the migrations it records.
    #[default]
    Tenantgate,
    /// `_sqlx_migrations`, as sqlx writes it (the same six columns); keyed
    /// by version, with sqlx's SHA-384 checksums.
    Sqlx,
    /// `django_migrations (app, name)`, as Django writes it; keyed by
    /// `app.name`, without checksums.
    Django,
}

impl LedgerKind {
    /// Every kind, in the order help texts list them.
    pub const ALL: [LedgerKind; 3] = [LedgerKind::Tenantgate, LedgerKind::Sqlx, LedgerKind::Django];

    /// The kind's name, as on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Tenantgate => "tenantgate",
            LedgerKind::Sqlx => "sqlx",
            LedgerKind::Django => "django",
        }
    }

    /// The ledger table's name in each tenant schema.
    pub fn table(self) -> &'static str {
        match self {
            LedgerKind::Tenantgate => "_tenantgate_migrations",
            LedgerKind::Sqlx => "_sqlx_migrations",
            LedgerKind::Django => "django_migrations",
        }
    }

    /// True when another tool writes the ledger, so the registry's copy of
    /// it is kept by reading the ledgers (not by the migrating transaction).
    pub fn is_foreign(self) -> bool {
        self != LedgerKind::Tenantgate
    }

    /// True when tenantgate applies the migrations itself, writing the
    /// ledger rows as the ledger's own tool would; Django's migrations run
    /// only through Django (`migrate --exec`).
    pub fn applies_migrations(self) -> bool {
        self != LedgerKind::Django
    }
}

impl fmt::Display for LedgerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LedgerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown ledger kind {s:?}; expected tenantgate, sqlx or django")
            })
    }
}
