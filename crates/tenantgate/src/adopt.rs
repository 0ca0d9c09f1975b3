//! Adopting a fleet that already exists: registering schemas another tool
//! built, with their domains and the state their own ledger says, without
//! moving their data.
//!
//! Every candidate either becomes a registry row or is reported with the
//! reason it cannot ([`Refusal`]); none is dropped silently. The rows of one
//! adoption commit together. A dry run reports the same without writing.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{
    migrations::MigrationRef, AppliedMigration, Backend, Domain, Error, LedgerKind, MigrationSet,
    TenantName, TenantState,
};

/// Where the schemas to adopt come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdoptSource {
    /// A query returning the schema name and, optionally, a domain per row
    /// (several rows for several domains), run in a read-only transaction.
    Sql(String),
    /// Every schema whose name matches this `LIKE` pattern.
    Schemas(String),
}

/// A schema named by the source, with the domains rows gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The schema's name as the source gave it.
    pub schema: String,
    /// Its domains as the source gave them.
    pub domains: Vec<String>,
}

/// How to adopt.
#[derive(Debug, Clone, Default)]
pub struct AdoptOptions {
    /// Write the registry rows; otherwise report what would be written.
    pub apply: bool,
    /// With tenantgate's own ledger: record the migrations up to this
    /// version as applied, once the live catalog matches what they build.
    pub baseline: Option<i64>,
}

/// A schema that becomes (or would become) a tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Adoptee {
    /// The tenant.
    pub tenant: TenantName,
    /// Its domains.
    pub domains: Vec<Domain>,
    /// The state its ledger gives it.
    pub state: TenantState,
    /// Required migrations its ledger lacks.
    pub missing: Vec<MigrationRef>,
    /// Its ledger's rows (for a baseline, the rows written).
    #[serde(skip)]
    pub ledger: Vec<AppliedMigration>,
    /// Why it is not ready, kept in the registry.
    pub note: Option<String>,
}

/// Why a candidate cannot be adopted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RefusalReason {
    /// Its name is not a valid tenant name.
    #[error("not a tenant name tenantgate accepts: {detail}")]
    InvalidName {
        /// Why.
        detail: String,
    },
    /// No schema of that name exists.
    #[error("no schema of that name exists")]
    NoSuchSchema,
    /// It is registered already.
    #[error("it is registered already")]
    AlreadyRegistered,
    /// One of its domains is not a host name.
    #[error("domain {domain:?} is not a host name: {detail}")]
    InvalidDomain {
        /// The domain as given.
        domain: String,
        /// Why.
        detail: String,
    },
    /// One of its domains routes to another tenant (or another candidate).
    #[error("domain {domain} already routes to {owner}")]
    DomainTaken {
        /// The domain.
        domain: String,
        /// Who holds it.
        owner: String,
    },
    /// A baseline was asked for, but its catalog differs from what the
    /// migrations up to the baseline build.
    #[error("its catalog differs from what the migrations up to the baseline build: {}", differences.join("; "))]
    CatalogDiffers {
        /// The differences, first ones first.
        differences: Vec<String>,
    },
    /// A baseline was asked for, but it already holds tenantgate's ledger.
    #[error("it already holds a tenantgate ledger; a baseline is only for schemas without one")]
    HasLedger,
}

/// A candidate that cannot be adopted, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// The schema as the source named it.
    pub schema: String,
    /// Why.
    #[serde(flatten)]
    pub reason: RefusalReason,
}

/// What an adoption did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AdoptReport {
    /// True when the rows were written.
    pub applied: bool,
    /// Which ledger was read.
    pub ledger: LedgerKind,
    /// Candidates that became (or would become) tenants.
    pub adopted: Vec<Adoptee>,
    /// Candidates that cannot be adopted.
    pub refused: Vec<Refusal>,
}

/// Adopts the schemas `source` names; see the module docs.
pub async fn adopt(
    backend: &dyn Backend,
    set: &MigrationSet,
    source: &AdoptSource,
    options: &AdoptOptions,
) -> Result<AdoptReport, Error> {
    if options.baseline.is_some() && backend.ledger_kind() != LedgerKind::Tenantgate {
        return Err(Error::Config(
            "--baseline writes tenantgate's own ledger; with a sqlx or Django ledger the existing one is read as it is".into(),
        ));
    }
    backend.prepare().await?;
    let candidates = merge(backend.adoption_candidates(source).await?);
    let mut report = AdoptReport {
        applied: options.apply,
        ledger: backend.ledger_kind(),
        ..AdoptReport::default()
    };
    let registered: HashSet<TenantName> = backend
        .tenants()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut owners = backend.domain_owners().await?;
    let names: Vec<String> = candidates.iter().map(|c| c.schema.clone()).collect();
    let existing = backend.existing_schemas(&names).await?;
    let mut accepted = Vec::new();
    for candidate in candidates {
        match accept(candidate.clone(), &registered, &existing, &mut owners) {
            Ok(accepted_one) => accepted.push(accepted_one),
            Err(reason) => report.refused.push(Refusal {
                schema: candidate.schema,
                reason,
            }),
        }
    }
    let tenants: Vec<TenantName> = accepted.iter().map(|(t, _)| t.clone()).collect();
    let ledgers = backend.read_ledgers(&tenants).await?;
    let baseline = options.baseline.map(|version| set.up_to(version));
    let drift = match &baseline {
        Some(baseline) => {
            let versions: Vec<i64> = baseline.iter().map(|m| m.version).collect();
            let comparable: Vec<(TenantName, Vec<i64>)> = tenants
                .iter()
                .filter(|t| matches!(ledgers.get(*t), Some(None)))
                .map(|t| (t.clone(), versions.clone()))
                .collect();
            backend.catalog_drift(baseline, &comparable).await?
        }
        None => HashMap::new(),
    };
    for (tenant, domains) in accepted {
        let ledger = ledgers.get(&tenant).cloned().flatten();
        let refused = match (&baseline, &ledger) {
            (Some(_), Some(_)) => Some(RefusalReason::HasLedger),
            (Some(_), None) => {
                drift
                    .get(&tenant)
                    .map(|differences| RefusalReason::CatalogDiffers {
                        differences: differences.clone(),
                    })
            }
            (None, _) => None,
        };
        if let Some(reason) = refused {
            report.refused.push(Refusal {
                schema: tenant.to_string(),
                reason,
            });
            continue;
        }
        let ledger = match &baseline {
            Some(baseline) => baseline
                .iter()
                .map(|m| AppliedMigration {
                    version: m.version,
                    description: m.description.clone(),
                    checksum: m.checksum.clone(),
                })
                .collect(),
            None => ledger.unwrap_or_default(),
        };
        report
            .adopted
            .push(assess(backend, set, tenant, domains, ledger, &ledgers));
    }
    if options.apply && !report.adopted.is_empty() {
        backend
            .register_existing(&report.adopted, baseline.as_ref())
            .await?;
    }
    Ok(report)
}

/// A tenant's state from its ledger against `set`.
fn assess(
    backend: &dyn Backend,
    set: &MigrationSet,
    tenant: TenantName,
    domains: Vec<Domain>,
    ledger: Vec<AppliedMigration>,
    read: &crate::backend::Ledgers,
) -> Adoptee {
    let has_ledger = matches!(read.get(&tenant), Some(Some(_))) || !ledger.is_empty();
    let missing: Vec<MigrationRef> = set
        .compare(&ledger)
        .missing
        .iter()
        .map(|m| m.reference())
        .collect();
    let (state, note) = match (has_ledger, missing.is_empty()) {
        (_, true) => (TenantState::Ready, None),
        (true, false) => (TenantState::Pending, None),
        (false, false) => (
            TenantState::Pending,
            Some(format!(
                "{} holds no {} table yet",
                backend.container(&tenant),
                backend.ledger_kind().table()
            )),
        ),
    };
    Adoptee {
        tenant,
        domains,
        state,
        missing,
        ledger,
        note,
    }
}

/// Merges rows naming the same schema, keeping the source's order.
fn merge(rows: Vec<Candidate>) -> Vec<Candidate> {
    let mut order = Vec::new();
    let mut by_schema: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        let domains = by_schema.entry(row.schema.clone()).or_insert_with(|| {
            order.push(row.schema.clone());
            Vec::new()
        });
        for domain in row.domains {
            if !domains.contains(&domain) {
                domains.push(domain);
            }
        }
    }
    order
        .into_iter()
        .map(|schema| Candidate {
            domains: by_schema.remove(&schema).unwrap_or_default(),
            schema,
        })
        .collect()
}

/// Checks one candidate's name, schema and domains; claims its domains.
fn accept(
    candidate: Candidate,
    registered: &HashSet<TenantName>,
    existing: &HashSet<String>,
    owners: &mut HashMap<String, String>,
) -> Result<(TenantName, Vec<Domain>), RefusalReason> {
    let tenant = TenantName::parse(&candidate.schema).map_err(|e| RefusalReason::InvalidName {
        detail: match e {
            Error::InvalidTenantName { reason, .. } => reason,
            other => other.to_string(),
        },
    })?;
    if registered.contains(&tenant) {
        return Err(RefusalReason::AlreadyRegistered);
    }
    if !existing.contains(tenant.as_str()) {
        return Err(RefusalReason::NoSuchSchema);
    }
    let mut domains = Vec::new();
    for given in &candidate.domains {
        let domain = Domain::parse(given).map_err(|e| RefusalReason::InvalidDomain {
            domain: given.clone(),
            detail: match e {
                Error::InvalidDomain { reason, .. } => reason,
                other => other.to_string(),
            },
        })?;
        if let Some(owner) = owners.get(domain.as_str()) {
            return Err(RefusalReason::DomainTaken {
                domain: domain.to_string(),
                owner: owner.clone(),
            });
        }
        domains.push(domain);
    }
    for domain in &domains {
        owners.insert(domain.to_string(), tenant.to_string());
    }
    Ok((tenant, domains))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_one_schema_merge_into_one_candidate_with_its_domains() {
        let row = |schema: &str, domain: &str| Candidate {
            schema: schema.into(),
            domains: vec![domain.into()],
        };
        let merged = merge(vec![
            row("acme", "acme.example.com"),
            row("globex", "globex.example.com"),
            row("acme", "www.acme.example.com"),
            row("acme", "acme.example.com"),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].schema, "acme");
        assert_eq!(
            merged[0].domains,
            ["acme.example.com", "www.acme.example.com"]
        );
    }

    #[test]
    fn a_domain_claimed_once_refuses_the_second_claimant() {
        let existing: HashSet<String> = ["acme".into(), "globex".into(), "Bad".into()].into();
        let mut owners = HashMap::new();
        let candidate = |schema: &str, domain: &str| Candidate {
            schema: schema.into(),
            domains: vec![domain.into()],
        };
        let registered = HashSet::new();
        assert!(accept(
            candidate("acme", "shop.example.com"),
            &registered,
            &existing,
            &mut owners
        )
        .is_ok());
        assert_eq!(
            accept(
                candidate("globex", "shop.example.com"),
                &registered,
                &existing,
                &mut owners
            ),
            Err(RefusalReason::DomainTaken {
                domain: "shop.example.com".into(),
                owner: "acme".into()
            })
        );
        assert!(matches!(
            accept(
                candidate("Bad", "b.example.com"),
                &registered,
                &existing,
                &mut owners
            ),
            Err(RefusalReason::InvalidName { .. })
        ));
        assert_eq!(
            accept(
                candidate("initech", "i.example.com"),
                &registered,
                &existing,
                &mut owners
            ),
            Err(RefusalReason::NoSuchSchema)
        );
    }
}
