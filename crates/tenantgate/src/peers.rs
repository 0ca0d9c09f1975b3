//! Drift found by comparing tenants with each other, for ledgers whose
//! migrations tenantgate cannot replay (Django's Python migrations).
//!
//! Tenants that hold the same applied set should have the same catalog.
//! Within such a group of at least three, a schema whose catalog digest
//! differs from a strict majority is an outlier, reported with the objects
//! that differ from one majority member. Smaller groups and groups without
//! a strict majority are undecided. A vote proves less than a replay, so
//! outliers are reported, never marked `drift`: the guard does not block
//! on a vote.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::{backend::Ledgers, Backend, Error, TenantName};

/// The smallest group whose majority is worth a vote.
pub const MIN_GROUP: usize = 3;

/// A tenant whose catalog differs from the majority of its peers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outlier {
    /// The tenant.
    pub tenant: TenantName,
    /// The majority member it was compared with.
    pub compared_with: TenantName,
    /// How many tenants of its group (itself included) hold its applied set.
    pub group: usize,
    /// `missing …` (the majority has it) and `unexpected …` (only it has) lines.
    pub differences: Vec<String>,
}

/// Tenants whose group cannot decide.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Undecided {
    /// The tenants of the group.
    pub tenants: Vec<TenantName>,
    /// Why: `fewer_than_three` or `no_majority`.
    pub reason: &'static str,
}

/// What comparing peers found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PeerReport {
    /// Tenants that differ from a strict majority of their group.
    pub outliers: Vec<Outlier>,
    /// Groups too small to vote, or split without a strict majority.
    pub undecided: Vec<Undecided>,
}

/// Compares the catalogs of tenants that hold the same applied set (as
/// `ledgers` read them); tenants without a ledger are left out.
pub async fn compare(backend: &dyn Backend, ledgers: &Ledgers) -> Result<PeerReport, Error> {
    let mut groups: BTreeMap<Vec<i64>, Vec<TenantName>> = BTreeMap::new();
    for (tenant, ledger) in ledgers {
        if let Some(ledger) = ledger {
            let applied = ledger.iter().map(|a| a.version).collect();
            groups.entry(applied).or_default().push(tenant.clone());
        }
    }
    let names: Vec<TenantName> = groups.values().flatten().cloned().collect();
    let digests = backend.catalog_digests(&names).await?;
    let mut report = PeerReport::default();
    for mut group in groups.into_values() {
        group.sort();
        if group.len() < MIN_GROUP {
            if group.len() > 1 {
                report.undecided.push(Undecided {
                    tenants: group,
                    reason: "fewer_than_three",
                });
            }
            continue;
        }
        let mut votes: HashMap<Option<&String>, Vec<&TenantName>> = HashMap::new();
        for tenant in &group {
            votes.entry(digests.get(tenant)).or_default().push(tenant);
        }
        let Some((majority, members)) = votes
            .iter()
            .find(|(_, members)| members.len() * 2 > group.len())
        else {
            if votes.len() > 1 {
                report.undecided.push(Undecided {
                    tenants: group,
                    reason: "no_majority",
                });
            }
            continue;
        };
        let outliers: Vec<TenantName> = group
            .iter()
            .filter(|t| digests.get(*t) != *majority)
            .cloned()
            .collect();
        if outliers.is_empty() {
            continue;
        }
        let reference = members[0].clone();
        let mut read: Vec<TenantName> = outliers.clone();
        read.push(reference.clone());
        let mut lines = backend.catalog_lines(&read).await?;
        let expected = lines.remove(&reference).unwrap_or_default();
        for tenant in outliers {
            let actual = lines.remove(&tenant).unwrap_or_default();
            report.outliers.push(Outlier {
                differences: differences(&expected, &actual),
                tenant,
                compared_with: reference.clone(),
                group: group.len(),
            });
        }
    }
    report.outliers.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    Ok(report)
}

/// What `actual` lacks of `expected` and holds beyond it, line by line.
pub(crate) fn differences(expected: &BTreeSet<String>, actual: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = expected
        .difference(actual)
        .map(|l| format!("missing {l}"))
        .collect();
    out.extend(
        actual
            .difference(expected)
            .map(|l| format!("unexpected {l}")),
    );
    out
}
