//! Verification: every tenant's ledger against the migration files, and
//! (deep) every tenant's live catalog against what its ledger promises.
//!
//! A deep verification records `drift` in the registry for tenants whose
//! catalog differs, so the request guard blocks them, and clears it for
//! tenants found clean again. `fix` applies missing migrations the way
//! `migrate` does; what it cannot repair is reported with recovery steps.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! # let (migrations, data) = (dir.path().join("migrations"), dir.path().join("data"));
//! # std::fs::create_dir_all(migrations.join("tenant")).unwrap();
//! # std::fs::write(migrations.join("tenant/0001_users.sql"), "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);").unwrap();
//! # let url = format!("sqlite://{}", data.display());
//! use tenantgate::{connect, provision, verify, MigrationFolder, Recovery, TenantName};
//! use tokio_util::sync::CancellationToken;
//!
//! let backend = connect(&url).await?;
//! let v1 = MigrationFolder::load(&migrations)?;
//! let acme = TenantName::parse("acme")?;
//! provision::create_tenant(backend.as_ref(), &v1, &acme, &[], &Default::default()).await?;
//! std::fs::write(migrations.join("tenant/0002_notes.sql"), "CREATE TABLE notes (body TEXT);").unwrap();
//! let v2 = MigrationFolder::load(&migrations)?;
//! let report = verify::verify(backend.as_ref(), &v2, &Default::default(), &|_| {}, &CancellationToken::new()).await?;
//! assert!(!report.all_ok());
//! assert_eq!(report.tenants[0].recovery, [Recovery::MigrateTenant { tenant: acme }]);
//! # Ok::<(), tenantgate::Error>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio_util::sync::CancellationToken;

use crate::{
    backend::{ChangeTracking, StateChange},
    fleet::{self, FleetOptions, FleetReport},
    migrations::MigrationRef,
    moves::Settled,
    peers::{self, Outlier, PeerReport},
    placement::DEFAULT_PLACEMENT,
    progress::ProgressSink,
    AppliedMigration, Backend, Error, LedgerKind, MigrationFolder, MigrationSet, Recovery, Tenant,
    TenantName, TenantState,
};

/// How to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Also compare each tenant's live catalog with its ledger's promise.
    pub deep: bool,
    /// Apply missing migrations, then verify again.
    pub fix: bool,
    /// Also compare tenants holding the same applied set with each other
    /// (see [`crate::peers`]); what `deep` does for Django ledgers, whose
    /// migrations cannot be replayed.
    pub peers: bool,
    /// Fleet settings used by `fix`; its `tenants` also limits verification.
    pub fleet: FleetOptions,
}

/// What verification found for one tenant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantCheck {
    /// The tenant.
    pub tenant: TenantName,
    /// Its registry state after verification.
    pub state: TenantState,
    /// True when nothing is wrong.
    pub ok: bool,
    /// Migrations of the folder its ledger lacks.
    pub missing: Vec<MigrationRef>,
    /// Applied migrations whose file changed since.
    pub changed: Vec<MigrationRef>,
    /// Applied versions that have no file in the folder.
    pub unknown: Vec<i64>,
    /// True when its schema or ledger table does not exist.
    pub ledger_missing: bool,
    /// Differences between the live catalog and the ledger's promise (deep only).
    pub drift: Vec<String>,
    /// How its catalog differs from the majority of its peers (`peers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier: Option<Outlier>,
    /// The error of its last failed attempt, while it is `failed`.
    pub last_error: Option<String>,
    /// Why its placement could not be read: nothing else about it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// What heals each problem.
    pub recovery: Vec<Recovery>,
}

/// Shared-schema findings.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SharedCheck {
    /// Shared migrations not applied.
    pub missing: Vec<MigrationRef>,
    /// Applied shared migrations whose file changed.
    pub changed: Vec<MigrationRef>,
    /// Applied shared versions without a file.
    pub unknown: Vec<i64>,
}

/// The result of a verification.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Whether the catalog was compared too.
    pub deep: bool,
    /// The shared schema.
    pub shared: SharedCheck,
    /// Per tenant, ordered by name.
    pub tenants: Vec<TenantCheck>,
    /// What `fix` did, when asked.
    pub fixed: Option<FleetReport>,
    /// What comparing peers found, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeerReport>,
    /// How much of the catalogs a deep verification read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalogs: Option<CatalogScan>,
    /// Tenants a placement holds that the registry does not know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unregistered: Vec<Unregistered>,
    /// Moves an earlier run left unfinished, and what became of each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<Settled>,
}

/// A tenant a placement holds and the registry does not know: a
/// provisioning that stopped between the placement's commit and the
/// registry's. It is never served.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unregistered {
    /// The tenant (its schema's name).
    pub tenant: TenantName,
    /// The placement holding it.
    pub placement: String,
    /// What registers it.
    pub recovery: Recovery,
}

/// How much of the tenants' catalogs a deep verification read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CatalogScan {
    /// Catalogs read and compared with what their ledgers promise.
    pub scanned: usize,
    /// Catalogs known unchanged since a deep verification found them clean
    /// with the same migrations, and not read again.
    pub unchanged: usize,
    /// Why every catalog was read, when changes are not tracked.
    pub full_scan: Option<String>,
}

impl VerifyReport {
    /// True when the shared schema and every tenant verified clean.
    pub fn all_ok(&self) -> bool {
        self.shared.missing.is_empty()
            && self.shared.changed.is_empty()
            && self.shared.unknown.is_empty()
            && self.tenants.iter().all(|t| t.ok)
            && self.unregistered.is_empty()
            && self.moves.iter().all(Settled::is_settled)
    }

    /// True when a placement could not be read for some tenant.
    pub fn any_unreachable(&self) -> bool {
        self.tenants.iter().any(|t| t.unreachable.is_some())
    }
}

/// Verifies the shared schema and the tenants; see the module docs.
pub async fn verify(
    backend: &dyn Backend,
    folder: &MigrationFolder,
    options: &VerifyOptions,
    progress: ProgressSink<'_>,
    cancel: &CancellationToken,
) -> Result<VerifyReport, Error> {
    backend.prepare().await?;
    let mut report = check(backend, folder, options).await?;
    if options.fix {
        let fixable: Vec<TenantName> = report
            .tenants
            .iter()
            .filter(|t| {
                t.changed.is_empty()
                    && !t.ledger_missing
                    && (!t.missing.is_empty() || t.state == TenantState::Failed)
            })
            .map(|t| t.tenant.clone())
            .collect();
        let shared_fixable = !report.shared.missing.is_empty() && report.shared.changed.is_empty();
        if !fixable.is_empty() || shared_fixable {
            let fleet_options = FleetOptions {
                tenants: fixable.clone(),
                dry_run: false,
                ..options.fleet.clone()
            };
            let fixed = if fixable.is_empty() {
                folder.refuse_transaction_control(backend.dialect())?;
                backend
                    .apply_shared(&folder.shared, &fleet_options.limits)
                    .await?;
                FleetReport::default()
            } else {
                fleet::migrate(backend, folder, &fleet_options, progress, cancel).await?
            };
            let fixed_report = check(backend, folder, options).await?;
            report = VerifyReport {
                fixed: Some(fixed),
                ..fixed_report
            };
        }
    }
    Ok(report)
}

/// One verification pass: ledgers, then (deep) catalogs and registry states.
async fn check(
    backend: &dyn Backend,
    folder: &MigrationFolder,
    options: &VerifyOptions,
) -> Result<VerifyReport, Error> {
    // Interrupted moves first: each tenant is then read where it lives.
    let moves = backend.settle_moves().await?;
    let shared_ledger = backend.shared_ledger().await?;
    let (missing, changed, unknown) = compare(&folder.shared, &shared_ledger);
    let shared = SharedCheck {
        missing,
        changed,
        unknown,
    };

    let tenants = fleet::select_tenants(backend.tenants().await?, &options.fleet.tenants)?;
    let names: Vec<TenantName> = tenants.iter().map(|t| t.name.clone()).collect();
    let started = std::time::Instant::now();
    let everyone: Vec<&Tenant> = tenants.iter().collect();
    let (ledgers, mut cut_off) = fleet::read_ledgers_by_placement(backend, &everyone).await?;
    tracing::debug!(
        tenants = names.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "ledgers read"
    );
    let tenants = crate::ledger::bring_in_step(backend, &folder.tenant, tenants, &ledgers).await?;
    let mut checks: Vec<TenantCheck> = tenants
        .iter()
        .map(|t| match cut_off.get(&t.name) {
            Some(reason) => unreachable_check(t, reason),
            None => check_ledger(
                t,
                &folder.tenant,
                ledgers.get(&t.name).and_then(Option::as_ref),
            ),
        })
        .collect();

    let by_peers = options.peers || (options.deep && backend.ledger_kind() == LedgerKind::Django);
    let peers = if by_peers {
        let report = peers::compare(backend, &ledgers).await?;
        for outlier in &report.outliers {
            if let Some(check) = checks.iter_mut().find(|c| c.tenant == outlier.tenant) {
                check.recovery.push(Recovery::RepairDrift {
                    tenant: outlier.tenant.clone(),
                });
                check.outlier = Some(outlier.clone());
            }
        }
        Some(report)
    } else {
        None
    };
    let mut catalogs = None;
    if options.deep && backend.ledger_kind() != LedgerKind::Django {
        let comparable: Vec<(TenantName, Vec<i64>)> = checks
            .iter()
            .zip(&names)
            .filter(|(c, _)| {
                !c.ledger_missing
                    && c.unreachable.is_none()
                    && c.changed.is_empty()
                    && c.unknown.is_empty()
            })
            .map(|(c, name)| {
                let applied = ledgers[&c.tenant]
                    .iter()
                    .flatten()
                    .map(|a| a.version)
                    .collect();
                (name.clone(), applied)
            })
            .collect();
        // Only a clean verdict is reused; a tenant marked drift is read again.
        let drifted: HashSet<&TenantName> = tenants
            .iter()
            .filter(|t| t.state == TenantState::Drift)
            .map(|t| &t.name)
            .collect();
        let placement_of: HashMap<&TenantName, &str> = tenants
            .iter()
            .map(|t| (&t.name, t.placement.as_str()))
            .collect();
        let mut by_placement: BTreeMap<&str, Vec<(TenantName, Vec<i64>)>> = BTreeMap::new();
        for entry in &comparable {
            by_placement
                .entry(placement_of[&entry.0])
                .or_default()
                .push(entry.clone());
        }
        let scans =
            futures::future::join_all(by_placement.into_iter().map(|(placement, share)| {
                let drifted = &drifted;
                async move {
                    let scan = scan_catalogs(backend, &folder.tenant, &share, drifted).await;
                    (placement, share, scan)
                }
            }))
            .await;
        let mut drift = HashMap::new();
        let mut scan_total = CatalogScan {
            scanned: 0,
            unchanged: 0,
            full_scan: None,
        };
        for (placement, share, scan) in scans {
            match scan {
                Ok((found, scan)) => {
                    drift.extend(found);
                    scan_total.scanned += scan.scanned;
                    scan_total.unchanged += scan.unchanged;
                    scan_total.full_scan = scan_total.full_scan.or(scan.full_scan);
                }
                Err(e) if e.is_unavailable() && placement != DEFAULT_PLACEMENT => {
                    cut_off.extend(share.iter().map(|(t, _)| (t.clone(), e.to_string())));
                    for check in checks.iter_mut() {
                        if share.iter().any(|(t, _)| *t == check.tenant) {
                            *check = unreachable_check_from(check, &e.to_string());
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        catalogs = Some(scan_total);
        let comparable: Vec<(TenantName, Vec<i64>)> = comparable
            .into_iter()
            .filter(|(t, _)| !cut_off.contains_key(t))
            .collect();
        let mut changes = Vec::new();
        for ((check, tenant), name) in checks.iter_mut().zip(&tenants).zip(&names) {
            if let Some(differences) = drift.get(&check.tenant) {
                check.drift = differences.clone();
                check.state = TenantState::Drift;
                check.recovery.push(Recovery::RepairDrift {
                    tenant: name.clone(),
                });
                changes.push(StateChange {
                    tenant: name.clone(),
                    state: TenantState::Drift,
                    detail: Some(drift_summary(differences)),
                });
            } else if tenant.state == TenantState::Drift
                && comparable.iter().any(|(t, _)| t == name)
            {
                check.state = if check.missing.is_empty() {
                    TenantState::Ready
                } else {
                    TenantState::Pending
                };
                changes.push(StateChange {
                    tenant: name.clone(),
                    state: check.state,
                    detail: None,
                });
            }
        }
        backend.record_states(&changes).await?;
    }
    for check in &mut checks {
        check.ok = check.missing.is_empty()
            && check.changed.is_empty()
            && check.unknown.is_empty()
            && !check.ledger_missing
            && check.drift.is_empty()
            && check.outlier.is_none()
            && check.unreachable.is_none()
            && !matches!(check.state, TenantState::Failed | TenantState::Drift);
    }
    let unregistered = backend
        .unregistered()
        .await?
        .into_iter()
        .map(|(placement, tenant)| Unregistered {
            recovery: Recovery::FinishCreate {
                tenant: tenant.clone(),
                placement: placement.clone(),
            },
            tenant,
            placement,
        })
        .collect();
    Ok(VerifyReport {
        deep: options.deep,
        shared,
        tenants: checks,
        fixed: None,
        peers,
        catalogs,
        unregistered,
        moves,
    })
}

/// Compares the catalogs of `share` (tenants of one placement, with their
/// applied versions) with what their ledgers promise, skipping those known
/// unchanged since a clean verdict, and keeps the new verdicts.
async fn scan_catalogs(
    backend: &dyn Backend,
    set: &MigrationSet,
    share: &[(TenantName, Vec<i64>)],
    drifted: &HashSet<&TenantName>,
) -> Result<(HashMap<TenantName, Vec<String>>, CatalogScan), Error> {
    let tracking = backend.catalog_tracking(share).await?;
    let (unchanged, to_scan): (Vec<_>, Vec<_>) =
        share.iter().cloned().partition(|(t, _)| match &tracking {
            ChangeTracking::Tracked { unchanged, .. } => {
                unchanged.contains(t) && !drifted.contains(t)
            }
            ChangeTracking::Unavailable(_) => false,
        });
    let started = std::time::Instant::now();
    let drift = backend.catalog_drift(set, &to_scan).await?;
    tracing::debug!(
        tenants = to_scan.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "catalog compared"
    );
    let verdicts: Vec<(TenantName, Vec<i64>, bool)> = to_scan
        .iter()
        .map(|(t, applied)| (t.clone(), applied.clone(), !drift.contains_key(t)))
        .collect();
    backend.record_verdicts(&verdicts, &tracking).await?;
    let scan = CatalogScan {
        scanned: to_scan.len(),
        unchanged: unchanged.len(),
        full_scan: match tracking {
            ChangeTracking::Unavailable(reason) => Some(reason),
            ChangeTracking::Tracked { .. } => None,
        },
    };
    Ok((drift, scan))
}

/// The check of a tenant whose placement could not be read.
fn unreachable_check(tenant: &Tenant, reason: &str) -> TenantCheck {
    TenantCheck {
        tenant: tenant.name.clone(),
        state: tenant.state,
        ok: false,
        missing: Vec::new(),
        changed: Vec::new(),
        unknown: Vec::new(),
        ledger_missing: false,
        drift: Vec::new(),
        outlier: None,
        last_error: None,
        unreachable: Some(reason.to_owned()),
        recovery: vec![Recovery::RetryWhenReachable {
            tenant: tenant.name.clone(),
        }],
    }
}

/// `check` once its placement stopped answering part-way.
fn unreachable_check_from(check: &TenantCheck, reason: &str) -> TenantCheck {
    TenantCheck {
        unreachable: Some(reason.to_owned()),
        recovery: vec![Recovery::RetryWhenReachable {
            tenant: check.tenant.clone(),
        }],
        ..check.clone()
    }
}

/// A one-line summary of drift for the registry: whole relations first.
fn drift_summary(differences: &[String]) -> String {
    let mut sorted: Vec<&String> = differences.iter().collect();
    let whole_relation = |d: &str| {
        d.split_once(' ').is_some_and(|(_, object)| {
            [
                "table ",
                "partitioned table ",
                "view ",
                "materialized view ",
                "foreign table ",
                "sequence ",
            ]
            .iter()
            .any(|kind| object.starts_with(kind))
        })
    };
    let is_table = |d: &str| {
        d.split_once(' ')
            .is_some_and(|(_, object)| object.starts_with("table "))
    };
    sorted.sort_by_key(|d| (!is_table(d), !whole_relation(d)));
    match sorted.as_slice() {
        [] => "drift".into(),
        [only] => format!("drift: {only}"),
        [first, rest @ ..] => format!("drift: {first} (and {} more difference(s))", rest.len()),
    }
}

/// Missing, changed and unknown migrations of a ledger against a set.
fn compare(
    set: &MigrationSet,
    ledger: &[AppliedMigration],
) -> (Vec<MigrationRef>, Vec<MigrationRef>, Vec<i64>) {
    let diff = set.compare(ledger);
    let refs =
        |ms: Vec<&crate::Migration>| ms.into_iter().map(crate::Migration::reference).collect();
    (refs(diff.missing), refs(diff.changed), diff.unknown)
}

fn check_ledger(
    tenant: &Tenant,
    set: &MigrationSet,
    ledger: Option<&Vec<AppliedMigration>>,
) -> TenantCheck {
    let name = &tenant.name;
    let mut check = TenantCheck {
        tenant: name.clone(),
        state: tenant.effective_state(set),
        ok: false,
        missing: Vec::new(),
        changed: Vec::new(),
        unknown: Vec::new(),
        ledger_missing: ledger.is_none(),
        drift: Vec::new(),
        outlier: None,
        unreachable: None,
        last_error: (tenant.state != TenantState::Ready)
            .then(|| tenant.last_error.clone())
            .flatten(),
        recovery: Vec::new(),
    };
    let Some(ledger) = ledger else {
        check.recovery.push(Recovery::RestoreOrRecreate {
            tenant: name.clone(),
        });
        return check;
    };
    (check.missing, check.changed, check.unknown) = compare(set, ledger);
    if !check.missing.is_empty() {
        check.state = match check.state {
            TenantState::Ready => TenantState::Pending,
            other => other,
        };
    }
    if !check.missing.is_empty() || check.state == TenantState::Failed {
        check.recovery.push(Recovery::MigrateTenant {
            tenant: name.clone(),
        });
    }
    for m in &check.changed {
        check.recovery.push(Recovery::RestoreFile {
            file: m.file.clone(),
        });
    }
    for v in &check.unknown {
        check
            .recovery
            .push(Recovery::DeployMissingFile { version: *v });
    }
    check
}
