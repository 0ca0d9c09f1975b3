//! Moving a tenant between placements with nothing lost.
//!
//! While a tenant moves, the registry marks it (`moving_to`) and the guard
//! answers 503 "being moved". The copy runs in two transactions: on the
//! source, one that locks every table of the tenant against writes (any
//! writer, not only HTTP requests, waits and then fails once the source is
//! dropped); on the target, one that rebuilds the schema from the tenant's
//! applied migrations and streams each table in with `COPY`. The copy is
//! checked (rows per table, and the catalog line by line against the
//! source) before the target commits; then the source is dropped in its
//! locking transaction, and only then does the registry switch.
//!
//! A process killed at any point leaves the tenant whole in exactly one
//! place, which the registry's mark and the two servers' catalogs tell:
//! source present → the move is undone (the target's copy, if committed, is
//! dropped: the source may have been written once its locks were gone);
//! source gone → the copy was complete, and the registry switches to it.
//! The next `tenants move` of that tenant, or `verify`, does this.

use std::time::Duration;

use crate::{backend::Limits, Backend, Error, MigrationFolder, TenantName};

/// How to move.
#[derive(Debug, Clone, Copy, Default)]
pub struct MoveOptions {
    /// Keep the source schema, renamed (`<name>_moved_<unix time>`),
    /// instead of dropping it.
    pub keep_source: bool,
}

/// What a finished move did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MoveReport {
    /// The tenant.
    pub tenant: TenantName,
    /// The placement it left.
    pub from: String,
    /// The placement it now lives on.
    pub to: String,
    /// Tables copied.
    pub tables: usize,
    /// Rows copied.
    pub rows: u64,
    /// Bytes streamed (PostgreSQL's binary `COPY` format).
    pub bytes: u64,
    /// The source schema's new name, when kept.
    pub kept_source: Option<String>,
    /// How long the move took, the tenant unserved all along.
    #[serde(rename = "duration_ms", serialize_with = "crate::fleet::millis")]
    pub duration: Duration,
}

/// What became of a move that an earlier run left unfinished.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Settled {
    /// The source was whole: the target's copy is gone and the tenant
    /// stays where it was.
    Undone {
        /// The tenant.
        tenant: TenantName,
        /// Where it was being moved.
        to: String,
    },
    /// The source was already dropped after a complete copy: the registry
    /// now routes to the target.
    Finished {
        /// The tenant.
        tenant: TenantName,
        /// Where it lives now.
        to: String,
    },
    /// Another process is moving it right now.
    InProgress {
        /// The tenant.
        tenant: TenantName,
        /// Where it is being moved.
        to: String,
    },
    /// It cannot be settled now (a placement does not answer); it stays
    /// unserved.
    Stuck {
        /// The tenant.
        tenant: TenantName,
        /// Where it was being moved.
        to: String,
        /// Why.
        reason: String,
    },
}

impl Settled {
    /// True when the tenant is settled (served from one placement again).
    pub fn is_settled(&self) -> bool {
        matches!(self, Settled::Undone { .. } | Settled::Finished { .. })
    }
}

/// Moves `tenant` to placement `to`; see the module docs. Fails with
/// [`Error::MoveFailed`] (the tenant served from where it was) when the
/// copy cannot be made or does not check out.
pub async fn move_tenant(
    backend: &dyn Backend,
    folder: &MigrationFolder,
    tenant: &TenantName,
    to: &str,
    options: MoveOptions,
    limits: &Limits,
) -> Result<MoveReport, Error> {
    backend.prepare().await?;
    backend
        .move_tenant(tenant, to, &folder.tenant, options, limits)
        .await
}
