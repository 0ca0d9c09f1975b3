//! Behaviour tests: the `tenantgate` binary against a real store.
//!
//! Every scenario is written once against [`harness::Harness`] and run for
//! each backend by `backend_tests!`, so a new backend runs the same suite.

mod harness;
mod http;

mod adoption;
mod backfills;
mod checksums;
mod citus;
mod cli_errors;
mod conventions;
mod demo;
mod django;
mod files;
mod fleet;
mod placements;
mod pooler;
mod provisioning;
mod proxy;
mod reliability;
mod serving;
mod upstream;
mod verification;
