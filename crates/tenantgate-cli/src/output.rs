//! Everything the binary prints: text or JSON on stdout, progress bars and
//! errors on stderr.

use std::{io::Write, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tenantgate::{
    adopt::AdoptReport,
    fleet::{FleetReport, Outcome},
    moves::Settled,
    provision::Provisioned,
    verify::VerifyReport,
    Error, Progress, Recovery, Tenant, TenantFailure, TenantName,
};
use tenantgate_http::StartupRefused;

use crate::{args::Global, cli_error::CliError, recovery::Invocation};

/// Tenants listed one by one in text summaries before counting the rest.
const LISTED: usize = 50;

/// Progress of a fleet run as a bar on stderr (drawn only on a terminal).
pub(crate) struct FleetProgress {
    bar: ProgressBar,
}

impl FleetProgress {
    pub(crate) fn new(global: &Global) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        if global.json {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} tenants {per_sec} eta {eta} {wide_msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }

    pub(crate) fn on(&self, progress: Progress) {
        match progress {
            Progress::Planned { to_migrate, .. } => self.bar.set_length(to_migrate as u64),
            Progress::SharedApplied { versions } => {
                self.bar.println(format!("shared: applied {versions:?}"))
            }
            Progress::TenantStarted { tenant } => self.bar.set_message(tenant.to_string()),
            Progress::TenantRetrying { tenant, attempt } => self
                .bar
                .println(format!("{tenant}: locked, attempt {attempt}")),
            Progress::TenantFinished(report) => {
                if report.outcome == Outcome::Failed {
                    self.bar.println(format!("{}: failed", report.tenant));
                }
                self.bar.inc(1);
            }
            _ => {}
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn json<T: Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// A line for the operator on stderr: plain text, or with `--log-json` a
/// JSON log line like every other.
pub(crate) fn notice(global: &Global, level: tracing::Level, text: &str) {
    if !global.log_json {
        return eprintln!("{text}");
    }
    match level {
        tracing::Level::ERROR => tracing::error!("{text}"),
        tracing::Level::WARN => tracing::warn!("{text}"),
        _ => tracing::info!("{text}"),
    }
}

/// Prints a command's failure: on stderr with what heals it, or with
/// `--json` as `{"error": {"kind", "message", "recovery"}}` on stdout.
pub(crate) fn error(global: &Global, error: &CliError) {
    let failure = match error {
        CliError::Engine(e) => e.failure(),
        _ => None,
    };
    if global.json {
        return json(&serde_json::json!({
            "error": {
                "kind": error.kind(),
                "message": error.to_string(),
                "recovery": failure.map(|f| &f.recovery),
            }
        }));
    }
    let invocation = Invocation::as_given(global);
    let mut lines = Vec::new();
    match error {
        CliError::StartupRefused(StartupRefused::NotReady(tenants)) => {
            lines.push(format!("error: refusing to start: {} tenant(s) not ready (start with --migrate-on-start to migrate first, or --allow-degraded to serve the others):", tenants.len()));
            for t in tenants {
                lines.push(format!("  {}", t.summary()));
                lines.push(format!(
                    "    to recover: {}",
                    invocation.command(&t.blocked.recovery)
                ));
            }
        }
        _ => lines.push(format!("error: {error}")),
    }
    if let Some(failure) = failure {
        lines.push(format!(
            "to recover: {}",
            invocation.command(&failure.recovery)
        ));
    }
    match error {
        CliError::Engine(Error::UnknownTenant { .. }) => {
            lines.push("hint: `tenantgate tenants list` shows the registered tenants".into())
        }
        CliError::Engine(Error::OutOfOrder { .. }) => {
            lines.push("hint: pass --allow-out-of-order to apply them anyway".into())
        }
        _ => {}
    }
    notice(global, tracing::Level::ERROR, &lines.join("\n"));
}

/// A tenant's failure, indented under its report line.
fn print_failure(invocation: &Invocation, failure: &TenantFailure) {
    match &failure.migration {
        Some(m) => println!("    migration {} ({}): {}", m.key, m.file, failure.message),
        None => println!("    {}", failure.message),
    }
    println!("    to recover: {}", invocation.command(&failure.recovery));
}

/// Names listed before a long list is counted instead.
const NAMED: usize = 10;

/// `a, b, c` or `a, b, c, … and 990 more`.
fn first_few<T: std::fmt::Display>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(NAMED).map(T::to_string).collect();
    match items.len().saturating_sub(NAMED) {
        0 => shown.join(", "),
        more => format!("{}, … and {more} more", shown.join(", ")),
    }
}

pub(crate) fn fleet_report(global: &Global, report: &FleetReport) {
    if global.json {
        let mut value = serde_json::to_value(report).expect("a report serialises");
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for t in &report.tenants {
            let key = serde_json::to_value(t.outcome).expect("an outcome serialises");
            *counts
                .entry(key.as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        value["counts"] = serde_json::json!(counts);
        return json(&value);
    }
    if !report.shared_applied.is_empty() {
        let verb = if report.dry_run {
            "would apply"
        } else {
            "applied"
        };
        println!("shared: {verb} {:?}", report.shared_applied);
    }
    let invocation = Invocation::as_given(global);
    let count = |o: Outcome| report.tenants.iter().filter(|t| t.outcome == o).count();
    let worked: Vec<_> = report
        .tenants
        .iter()
        .filter(|t| t.outcome != Outcome::UpToDate)
        .collect();
    for t in worked.iter().take(LISTED) {
        let versions = match &t.command {
            Some(run) if !run.recorded.is_empty() => format!(" {}", run.recorded.join(", ")),
            _ if t.applied.is_empty() => String::new(),
            _ => format!(" {:?}", t.applied),
        };
        let verb = match (t.outcome, t.rows_changed) {
            (Outcome::Migrated, _) if t.command.is_some() => "migrated by the command:".to_owned(),
            (Outcome::Migrated, _) if t.applied.is_empty() => "registry brought in step".to_owned(),
            (Outcome::Migrated, _) => "applied".to_owned(),
            (Outcome::FinishedElsewhere, _) => "finished by another run meanwhile".to_owned(),
            (Outcome::Planned, Some(rows)) => format!("would change {rows} row(s)"),
            (Outcome::Planned, None) => "would apply".to_owned(),
            (Outcome::Backfilled, rows) => {
                format!("backfilled, {} row(s) changed", rows.unwrap_or(0))
            }
            (Outcome::Failed, _) => "FAILED".to_owned(),
            (Outcome::Interrupted, _) => "interrupted".to_owned(),
            (Outcome::UpToDate, _) => "up to date".to_owned(),
        };
        println!(
            "{:<24} {:<8} {verb}{versions} ({})",
            t.tenant,
            t.state,
            seconds(t.duration)
        );
        if let Some(error) = &t.error {
            print_failure(&invocation, error);
            if let Some(run) = &t.command {
                println!(
                    "    command: {}",
                    shlex::try_join(run.argv.iter().map(String::as_str))
                        .unwrap_or_else(|_| run.argv.join(" "))
                );
                for line in &run.stderr_tail {
                    println!("    | {line}");
                }
            }
        }
    }
    if worked.len() > LISTED {
        println!("… and {} more", worked.len() - LISTED);
    }
    if report.dry_run {
        println!(
            "dry run: {} tenant(s) would be migrated, {} up to date; nothing was changed",
            count(Outcome::Planned),
            count(Outcome::UpToDate)
        );
        return;
    }
    println!(
        "{} migrated, {} finished by another run, {} backfilled, {} up to date, {} failed, {} interrupted, {} not started in {}",
        count(Outcome::Migrated),
        count(Outcome::FinishedElsewhere),
        count(Outcome::Backfilled),
        count(Outcome::UpToDate),
        count(Outcome::Failed),
        count(Outcome::Interrupted),
        report.not_started.len(),
        seconds(report.duration)
    );
    let placements: std::collections::BTreeSet<&str> = report
        .tenants
        .iter()
        .map(|t| t.placement.as_str())
        .collect();
    if placements.len() > 1 {
        for placement in placements {
            let here = |o: Outcome| {
                report
                    .tenants
                    .iter()
                    .filter(|t| t.placement == placement && t.outcome == o)
                    .count()
            };
            println!(
                "  placement {placement}: {} migrated, {} backfilled, {} up to date, {} failed",
                here(Outcome::Migrated) + here(Outcome::FinishedElsewhere),
                here(Outcome::Backfilled),
                here(Outcome::UpToDate),
                here(Outcome::Failed)
            );
        }
    }
    if let Some(e) = &report.database_error {
        println!("database unavailable: {e}");
    }
    if !report.not_started.is_empty() {
        println!(
            "not started: {} tenant(s): {}; to continue, run: {}",
            report.not_started.len(),
            first_few(&report.not_started),
            invocation.command(&Recovery::MigrateShared)
        );
    }
}

pub(crate) fn verify_report(global: &Global, report: &VerifyReport) {
    if global.json {
        return json(report);
    }
    if let Some(fixed) = &report.fixed {
        println!("fix:");
        fleet_report(global, fixed);
        println!("after fixing:");
    }
    let invocation = Invocation::as_given(global);
    let shared = &report.shared;
    for m in &shared.missing {
        println!(
            "shared: missing {} ({}); to recover: {}",
            m.key,
            m.file,
            invocation.command(&Recovery::MigrateShared)
        );
    }
    for m in &shared.changed {
        println!(
            "shared: {} ({}) changed since it was applied; restore the file",
            m.key, m.file
        );
    }
    for v in &shared.unknown {
        println!("shared: applied migration {v} has no file");
    }
    let bad: Vec<_> = report.tenants.iter().filter(|t| !t.ok).collect();
    for t in &bad {
        println!("{:<24} {}", t.tenant, t.state);
        let versions = |ms: &[tenantgate::migrations::MigrationRef]| {
            ms.iter()
                .map(|m| format!("{} ({})", m.key, m.file))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if t.ledger_missing {
            println!("    schema (or file) or its ledger is missing");
        }
        if !t.missing.is_empty() {
            println!("    missing: {}", versions(&t.missing));
        }
        if !t.changed.is_empty() {
            println!("    changed since applied: {}", versions(&t.changed));
        }
        if !t.unknown.is_empty() {
            println!("    applied without a file: {:?}", t.unknown);
        }
        for d in &t.drift {
            println!("    drift: {d}");
        }
        if let Some(outlier) = &t.outlier {
            println!(
                "    differs from the majority of the {} tenants holding its migrations (compared with {}):",
                outlier.group, outlier.compared_with
            );
            for d in outlier.differences.iter().take(LISTED) {
                println!("      {d}");
            }
        }
        if let Some(e) = &t.last_error {
            println!("    last error: {e}");
        }
        if let Some(why) = &t.unreachable {
            println!("    could not be read: {why}");
        }
        for r in &t.recovery {
            println!("    to recover: {}", invocation.command(r));
        }
    }
    for settled in &report.moves {
        match settled {
            Settled::Undone { tenant, to } => println!(
                "{tenant:<24} interrupted move to placement {to} undone: served from where it was"
            ),
            Settled::Finished { tenant, to } => println!(
                "{tenant:<24} interrupted move to placement {to} finished: served from {to}"
            ),
            Settled::InProgress { tenant, to } => {
                println!("{tenant:<24} being moved to placement {to} by another process")
            }
            Settled::Stuck { tenant, to, reason } => {
                println!(
                    "{tenant:<24} interrupted move to placement {to} cannot be settled: {reason}"
                );
                println!(
                    "    to recover: {}",
                    invocation.command(&Recovery::FinishMove {
                        tenant: tenant.clone(),
                        to: to.clone()
                    })
                );
            }
        }
    }
    for u in &report.unregistered {
        println!(
            "{:<24} unregistered: placement {} holds it, the registry does not (never served)",
            u.tenant, u.placement
        );
        println!("    to recover: {}", invocation.command(&u.recovery));
    }
    if let Some(catalogs) = &report.catalogs {
        match &catalogs.full_scan {
            Some(reason) => println!("catalogs: {} read; {reason}", catalogs.scanned),
            None => println!(
                "catalogs: {} read, {} unchanged since verified clean (not read again)",
                catalogs.scanned, catalogs.unchanged
            ),
        }
    }
    for group in report.peers.iter().flat_map(|p| &p.undecided) {
        println!(
            "undecided ({}): {}",
            match group.reason {
                "fewer_than_three" => "fewer than three tenants hold these migrations",
                _ => "no strict majority among their catalogs",
            },
            first_few(&group.tenants)
        );
    }
    println!(
        "{} of {} tenant(s) verified ok{}",
        report.tenants.len() - bad.len(),
        report.tenants.len(),
        match (report.deep, &report.peers) {
            (_, Some(_)) if !report.deep => " (ledgers, catalogs against peers)",
            (true, Some(_)) => " (deep: ledgers, catalogs against peers)",
            (true, None) => " (deep: ledgers and catalogs)",
            (false, _) => " (ledgers)",
        }
    );
}

pub(crate) fn provisioned(global: &Global, created: &Provisioned, container: &str) {
    if global.json {
        return json(created);
    }
    let domains: Vec<&str> = created.domains.iter().map(|d| d.as_str()).collect();
    let placed = if created.placement == tenantgate::placement::DEFAULT_PLACEMENT {
        String::new()
    } else {
        format!(" on placement {}", created.placement)
    };
    println!(
        "created tenant {} ({container}{placed}) with {} migration(s) in {}{}",
        created.tenant,
        created.applied.len(),
        seconds(created.duration),
        if domains.is_empty() {
            String::new()
        } else {
            format!("; domains: {}", domains.join(", "))
        }
    );
}

/// How a tenant's applied versions are named: by the migration folder's
/// keys (`app.name` for Django) where it knows them.
pub(crate) type KeyOf<'a> = &'a dyn Fn(i64) -> String;

/// A tenant as JSON, with its applied migrations named by key.
fn tenant_json(t: &Tenant, key: KeyOf<'_>) -> serde_json::Value {
    let mut value = serde_json::to_value(t).expect("a tenant serialises");
    value["applied_keys"] = t.applied_versions.iter().map(|v| key(*v)).collect();
    value
}

pub(crate) fn tenant_list(
    global: &Global,
    tenants: &[Tenant],
    nodes: &std::collections::HashMap<TenantName, String>,
    key: KeyOf<'_>,
) {
    if global.json {
        let list: Vec<serde_json::Value> = tenants
            .iter()
            .map(|t| {
                let mut value = tenant_json(t, key);
                if let Some(node) = nodes.get(&t.name) {
                    value["node"] = serde_json::json!(node);
                }
                value
            })
            .collect();
        return json(&list);
    }
    let versions: Vec<String> = tenants
        .iter()
        .map(|t| {
            t.applied_versions
                .last()
                .map_or("-".to_owned(), |v| key(*v))
        })
        .collect();
    let width = versions.iter().map(String::len).max().unwrap_or(0).max(8);
    // The placement column appears once a tenant lives off the registry's
    // server, the node column on Citus.
    let placed = tenants
        .iter()
        .any(|t| t.placement != tenantgate::placement::DEFAULT_PLACEMENT);
    let placement = |name: &str, node: Option<&str>| {
        let mut columns = String::new();
        if placed {
            columns.push_str(&format!("{name:<12} "));
        }
        if let Some(node) = node.filter(|_| !nodes.is_empty()) {
            columns.push_str(&format!("{node:<21} "));
        }
        columns
    };
    println!(
        "{:<24} {:<8} {}{:>width$}  {:<30} last error",
        "tenant",
        "state",
        placement("placement", Some("node")),
        "version",
        "domains"
    );
    for (t, version) in tenants.iter().zip(&versions) {
        let domains: Vec<&str> = t.domains.iter().map(|d| d.as_str()).collect();
        let error = t.last_error.as_deref().unwrap_or("");
        println!(
            "{:<24} {:<8} {}{version:>width$}  {:<30} {error}",
            t.name,
            t.state,
            placement(
                &t.placement,
                Some(nodes.get(&t.name).map_or("-", String::as_str))
            ),
            domains.join(",")
        );
    }
    println!("{} tenant(s)", tenants.len());
}

pub(crate) fn tenant_detail(global: &Global, t: &Tenant, container: &str, key: KeyOf<'_>) {
    if global.json {
        return json(&tenant_json(t, key));
    }
    let domains: Vec<&str> = t.domains.iter().map(|d| d.as_str()).collect();
    println!("tenant:     {}", t.name);
    println!("stored in:  {container}");
    println!("state:      {}", t.state);
    println!("placement:  {}", t.placement);
    let applied: Vec<String> = t.applied_versions.iter().map(|v| key(*v)).collect();
    println!("applied:    {}", applied.join(", "));
    println!("domains:    {}", domains.join(", "));
    println!("created:    {}", t.created_at);
    println!("updated:    {}", t.updated_at);
    if let Some(e) = &t.last_error {
        println!("last error: {e}");
    }
}

pub(crate) fn moved(global: &Global, moved: &tenantgate::moves::MoveReport) {
    if global.json {
        return json(moved);
    }
    let megabytes = moved.bytes as f64 / 1e6;
    println!(
        "moved tenant {} from placement {} to {}: {} table(s), {} row(s), {megabytes:.1} MB in {} ({:.1} MB/s){}",
        moved.tenant,
        moved.from,
        moved.to,
        moved.tables,
        moved.rows,
        seconds(moved.duration),
        megabytes / moved.duration.as_secs_f64().max(1e-6),
        moved
            .kept_source
            .as_ref()
            .map(|kept| format!("; the source is kept as schema {kept}"))
            .unwrap_or_default()
    );
}

pub(crate) fn moved_to_node(
    global: &Global,
    tenant: &TenantName,
    node: &str,
    took: std::time::Duration,
) {
    if global.json {
        return json(
            &serde_json::json!({ "tenant": tenant, "node": node, "duration_ms": took.as_millis() }),
        );
    }
    println!(
        "moved tenant {tenant} to Citus worker {node} in {} (it kept serving)",
        seconds(took)
    );
}

pub(crate) fn lint(global: &Global, findings: &[tenantgate::lint::Finding]) {
    if global.json {
        return json(&serde_json::json!({ "findings": findings }));
    }
    for f in findings {
        let severity = match f.severity {
            tenantgate::lint::Severity::Error => "error",
            tenantgate::lint::Severity::Warning => "warning",
        };
        println!(
            "{}:{}: {severity}[{}]: {}",
            f.file, f.line, f.rule, f.message
        );
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == tenantgate::lint::Severity::Error)
        .count();
    println!(
        "{errors} error(s), {} warning(s) for Citus distributed schemas",
        findings.len() - errors
    );
}

pub(crate) fn placement_added(global: &Global, name: &str) {
    if global.json {
        return json(&serde_json::json!({ "added": name }));
    }
    println!("added placement {name}: it answers and holds tenantgate's record of its tenants");
}

pub(crate) fn placement_removed(global: &Global, name: &str) {
    if global.json {
        return json(&serde_json::json!({ "removed": name }));
    }
    println!("removed placement {name}");
}

pub(crate) fn placement_list(global: &Global, placements: &[tenantgate::placement::Placement]) {
    if global.json {
        return json(&placements);
    }
    println!("{:<16} {:>8}  url", "placement", "tenants");
    for p in placements {
        println!("{:<16} {:>8}  {}", p.name, p.tenants, p.url);
    }
}

pub(crate) fn dropped(global: &Global, tenant: &TenantName, container: &str) {
    if global.json {
        return json(&serde_json::json!({ "dropped": tenant }));
    }
    println!("dropped tenant {tenant}: {container}, ledger, registry row and domains");
}

pub(crate) fn adopt_report(global: &Global, report: &AdoptReport) {
    if global.json {
        return json(report);
    }
    let verb = if report.applied {
        "adopted"
    } else {
        "would adopt"
    };
    for a in report.adopted.iter().take(LISTED) {
        let domains: Vec<&str> = a.domains.iter().map(|d| d.as_str()).collect();
        let missing: Vec<&str> = a.missing.iter().map(|m| m.key.as_str()).collect();
        println!(
            "{:<24} {:<8} {verb}{}{}{}",
            a.tenant,
            a.state,
            if domains.is_empty() {
                String::new()
            } else {
                format!("; domains: {}", domains.join(", "))
            },
            if missing.is_empty() {
                String::new()
            } else {
                format!("; lacks {}", first_few(&missing))
            },
            a.note
                .as_deref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        );
    }
    if report.adopted.len() > LISTED {
        println!("… and {} more", report.adopted.len() - LISTED);
    }
    for r in &report.refused {
        println!("{:<24} REFUSED  {}", r.schema, r.reason);
    }
    println!(
        "{} schema(s) {verb} ({} ledger), {} refused{}",
        report.adopted.len(),
        report.ledger,
        report.refused.len(),
        if report.applied || report.adopted.is_empty() {
            String::new()
        } else {
            "; nothing was written (dry run): run again with --apply".into()
        }
    );
}

pub(crate) fn notified(global: &Global, refreshed: Option<&[Tenant]>) {
    let ready = refreshed.map(|tenants| {
        tenants
            .iter()
            .filter(|t| t.state == tenantgate::TenantState::Ready)
            .count()
    });
    if global.json {
        return json(&serde_json::json!({
            "notified": true,
            "tenants": refreshed.map(<[Tenant]>::len),
            "ready": ready,
        }));
    }
    if let (Some(tenants), Some(ready)) = (refreshed, ready) {
        println!(
            "registry brought in step with the ledgers: {ready} of {} tenant(s) ready",
            tenants.len()
        );
    }
    println!("notified: running proxies re-read their migration folder and the registry");
}
