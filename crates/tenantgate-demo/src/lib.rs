//! The messages app: the reference tenant application that shows
//! tenantgate at work.
//!
//! It ships its own migrations (embedded at build time, so the running code
//! and its required set cannot disagree) and shows the three defensive
//! patterns from the incident: creating a user creates its status row in the
//! same transaction; the messages view reads the status with an upsert, so a
//! missing row is created rather than a 500; and the `user-statuses`
//! backfill creates the rows that older code never wrote.
//!
//! ```
//! use tenantgate_demo::{required_set, Store};
//!
//! let store = Store::for_url("sqlite://./tenantgate-data").unwrap();
//! assert_eq!(store, Store::Sqlite);
//! // The app's own migrations are built in: the code and its required set agree.
//! assert_eq!(required_set(store).tenant.len(), 2);
//! ```

mod embedded;
mod store;
mod views;

pub use embedded::{folder, required_set, Store};
pub use store::{run_in_tenant_file, AppDb, AppDbError, Dashboard};
pub use views::{router, AppState};
