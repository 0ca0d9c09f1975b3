//! Whether a tenant may be served: the rule the request guard and the
//! startup gate share.
//!
//! A tenant is served when its ledger (as its registry row records it) holds
//! every migration of the application's required set with a matching
//! checksum, the shared ledger holds every required shared migration, and
//! it is not marked `drift`. A failed attempt at a migration outside the
//! required set does not block: its transaction rolled back, and the schema
//! still has what the code needs.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! # let (migrations, data) = (dir.path().join("migrations"), dir.path().join("data"));
//! # std::fs::create_dir_all(migrations.join("tenant")).unwrap();
//! # std::fs::write(migrations.join("tenant/0001_users.sql"), "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);").unwrap();
//! # let url = format!("sqlite://{}", data.display());
//! use tenantgate::{connect, provision, readiness::RequiredSet, MigrationFolder, TenantName};
//!
//! let backend = connect(&url).await?;
//! let v1 = MigrationFolder::load(&migrations)?;
//! provision::create_tenant(backend.as_ref(), &v1, &TenantName::parse("acme")?, &[], &Default::default()).await?;
//! // The next release needs a migration acme does not hold yet.
//! std::fs::write(migrations.join("tenant/0002_notes.sql"), "CREATE TABLE notes (body TEXT);").unwrap();
//! let required = RequiredSet::from_folder(&MigrationFolder::load(&migrations)?);
//! let acme = &backend.tenants().await?[0];
//! let blocked = required.assess(acme, &[]).expect("acme lacks 0002");
//! assert_eq!(blocked.missing[0].version, 2);
//! # Ok::<(), tenantgate::Error>(())
//! # }).unwrap();
//! ```

use sha2::{Digest, Sha384};

use crate::{
    migrations::MigrationRef, AppliedMigration, MigrationFolder, MigrationSet, Recovery, Tenant,
    TenantState,
};

/// The migrations a running application needs.
#[derive(Debug, Clone, Default)]
pub struct RequiredSet {
    /// Required tenant migrations.
    pub tenant: MigrationSet,
    /// Required shared migrations.
    pub shared: MigrationSet,
}

impl RequiredSet {
    /// Everything a migration folder holds is required.
    pub fn from_folder(folder: &MigrationFolder) -> Self {
        Self {
            tenant: folder.tenant.clone(),
            shared: folder.shared.clone(),
        }
    }

    /// A short digest of the required versions and checksums, to tell
    /// deployments apart.
    pub fn digest(&self) -> String {
        let mut hasher = Sha384::new();
        for (scope, set) in [("shared", &self.shared), ("tenant", &self.tenant)] {
            for m in set.iter() {
                hasher.update(format!("{scope}:{}:", m.version));
                hasher.update(&m.checksum);
            }
        }
        hex::encode(&hasher.finalize()[..12])
    }

    /// Required shared migrations the shared ledger lacks (or holds with
    /// another checksum).
    pub fn shared_missing(&self, shared_ledger: &[AppliedMigration]) -> Vec<MigrationRef> {
        self.shared
            .iter()
            .filter(|m| {
                !shared_ledger
                    .iter()
                    .any(|a| a.version == m.version && a.checksum == m.checksum)
            })
            .map(|m| m.reference())
            .collect()
    }

    /// Why `tenant` may not be served, or `None` when it may.
    pub fn assess(&self, tenant: &Tenant, shared_missing: &[MigrationRef]) -> Option<Blocked> {
        let name = tenant.name.clone();
        let mut missing = Vec::new();
        let mut changed = Vec::new();
        for m in self.tenant.iter() {
            match tenant.applied_versions.iter().position(|v| *v == m.version) {
                None if !self
                    .tenant
                    .holds(m, |v| tenant.applied_versions.contains(&v)) =>
                {
                    missing.push(m.reference())
                }
                Some(i) if tenant.applied_checksums.get(i) != Some(&m.checksum) => {
                    changed.push(m.reference())
                }
                _ => {}
            }
        }
        if let Some(to) = &tenant.moving_to {
            return Some(Blocked {
                reason: BlockReason::BeingMoved,
                missing,
                changed,
                error: None,
                recovery: Recovery::FinishMove {
                    tenant: name,
                    to: to.clone(),
                },
            });
        }
        let reason = if tenant.state == TenantState::Drift {
            BlockReason::Drift
        } else if !changed.is_empty() {
            BlockReason::ChecksumChanged
        } else if !missing.is_empty() && tenant.state == TenantState::Failed {
            BlockReason::Failed
        } else if !missing.is_empty() {
            BlockReason::Missing
        } else if !shared_missing.is_empty() {
            missing = shared_missing.to_vec();
            BlockReason::SharedMissing
        } else {
            return None;
        };
        let recovery = match reason {
            BlockReason::Drift => Recovery::VerifyDeep { tenant: name },
            BlockReason::ChecksumChanged => Recovery::RestoreFile {
                file: changed[0].file.clone(),
            },
            BlockReason::SharedMissing => Recovery::MigrateShared,
            BlockReason::Missing | BlockReason::Failed => Recovery::MigrateTenant { tenant: name },
            BlockReason::StateUnknown | BlockReason::BeingMoved => {
                Recovery::RetryWhenReachable { tenant: name }
            }
        };
        Some(Blocked {
            reason,
            missing,
            changed,
            error: tenant
                .last_error
                .clone()
                .filter(|_| tenant.state != TenantState::Ready),
            recovery,
        })
    }
}

/// Why a tenant is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockReason {
    /// Required migrations are missing from its ledger.
    Missing,
    /// Required migrations are missing and the last attempt to apply them failed.
    Failed,
    /// Its catalog differs from what its ledger promises.
    Drift,
    /// A required migration was applied from a different file.
    ChecksumChanged,
    /// The shared schema lacks required shared migrations.
    SharedMissing,
    /// The server of its placement does not answer: whether it is ready
    /// is unknown.
    StateUnknown,
    /// It is being moved to another placement.
    BeingMoved,
}

impl BlockReason {
    /// The reason's name, as in metrics labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::Missing => "missing",
            BlockReason::Failed => "failed",
            BlockReason::Drift => "drift",
            BlockReason::ChecksumChanged => "checksum_changed",
            BlockReason::SharedMissing => "shared_missing",
            BlockReason::StateUnknown => "state_unknown",
            BlockReason::BeingMoved => "being_moved",
        }
    }
}

/// The facts behind a block, for the 503 page, logs and the startup gate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Blocked {
    /// Why.
    pub reason: BlockReason,
    /// Required migrations it lacks.
    pub missing: Vec<MigrationRef>,
    /// Required migrations applied from different files.
    pub changed: Vec<MigrationRef>,
    /// The last error or drift the registry keeps (operator detail).
    pub error: Option<String>,
    /// The step that heals it.
    pub recovery: Recovery,
}

impl Blocked {
    /// The block of a tenant whose server does not answer (`why`: its
    /// placement, or on Citus its worker).
    pub fn unreachable(tenant: &Tenant, why: &str) -> Self {
        Blocked {
            reason: BlockReason::StateUnknown,
            missing: Vec::new(),
            changed: Vec::new(),
            error: Some(why.to_owned()),
            recovery: Recovery::RetryWhenReachable {
                tenant: tenant.name.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(state: TenantState, applied: &MigrationSet) -> Tenant {
        Tenant {
            name: crate::TenantName::parse("acme").unwrap(),
            placement: "default".into(),
            moving_to: None,
            state,
            applied_versions: applied.iter().map(|m| m.version).collect(),
            applied_checksums: applied.iter().map(|m| m.checksum.clone()).collect(),
            domains: Vec::new(),
            last_error: Some("boom".into()),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn served_only_with_every_required_migration_and_no_drift() {
        let required = RequiredSet {
            tenant: MigrationSet::from_files([("1_a.sql", "a"), ("2_b.sql", "b")]).unwrap(),
            shared: MigrationSet::default(),
        };
        let all = required.tenant.clone();
        assert_eq!(
            required.assess(&tenant(TenantState::Ready, &all), &[]),
            None
        );
        // A failure outside the required set does not block.
        assert_eq!(
            required.assess(&tenant(TenantState::Failed, &all), &[]),
            None
        );
        let first = required.tenant.up_to(1);
        assert_eq!(
            required
                .assess(&tenant(TenantState::Pending, &first), &[])
                .unwrap()
                .reason,
            BlockReason::Missing
        );
        assert_eq!(
            required
                .assess(&tenant(TenantState::Failed, &first), &[])
                .unwrap()
                .reason,
            BlockReason::Failed
        );
        assert_eq!(
            required
                .assess(&tenant(TenantState::Drift, &all), &[])
                .unwrap()
                .reason,
            BlockReason::Drift
        );
        let edited = MigrationSet::from_files([("1_a.sql", "a"), ("2_b.sql", "edited")]).unwrap();
        assert_eq!(
            required
                .assess(&tenant(TenantState::Ready, &edited), &[])
                .unwrap()
                .reason,
            BlockReason::ChecksumChanged
        );
    }
}
