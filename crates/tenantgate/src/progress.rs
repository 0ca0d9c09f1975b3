//! Progress events the engine emits during long work.
//!
//! The CLI draws them as progress bars; a server counts them as metrics.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use tenantgate::{progress::ProgressSink, Progress};
//!
//! let finished = AtomicUsize::new(0);
//! let count = |event: Progress| {
//!     if let Progress::TenantFinished(_) = event {
//!         finished.fetch_add(1, Ordering::Relaxed);
//!     }
//! };
//! let sink: ProgressSink<'_> = &count;
//! sink(Progress::Planned { total: 2, to_migrate: 0 });
//! assert_eq!(finished.load(Ordering::Relaxed), 0);
//! ```

use crate::fleet::TenantReport;

/// Something that happened during a fleet operation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    /// Shared migrations were applied.
    SharedApplied {
        /// The versions applied.
        versions: Vec<i64>,
    },
    /// The plan is known: how many tenants will be worked on.
    Planned {
        /// Tenants considered.
        total: usize,
        /// Tenants that need work.
        to_migrate: usize,
    },
    /// Work on a tenant started.
    TenantStarted {
        /// The tenant.
        tenant: crate::TenantName,
    },
    /// A tenant was retried after waiting on locks.
    TenantRetrying {
        /// The tenant.
        tenant: crate::TenantName,
        /// Which attempt comes next (2 for the first retry).
        attempt: u32,
    },
    /// Work on a tenant finished, successfully or not.
    TenantFinished(Box<TenantReport>),
}

/// A receiver of progress events; must be cheap, it runs on the engine's tasks.
pub type ProgressSink<'a> = &'a (dyn Fn(Progress) + Send + Sync);
