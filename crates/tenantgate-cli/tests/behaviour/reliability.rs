//! The reliability suite: long randomized scenarios that try hardest to
//! break the guarantees, each printing one JSON line with its counts and
//! random seed, and failing on any violation.
//!
//! `TENANTGATE_RELIABILITY_SIZE=full` (what `scripts/reliability` sets)
//! runs the sizes RELIABILITY.md reports; without it the suite runs a small
//! size, as part of the ordinary test run. `TENANTGATE_RELIABILITY_SEED`
//! replays a run.

use std::{
    collections::BTreeMap,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::http::{header::HOST, HeaderValue, Request};
use proptest::{
    strategy::{Strategy, ValueTree},
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};
use serde_json::json;
use tenantgate::{Domain, TenantName};

use crate::{
    backend_tests,
    harness::{eventually, Harness},
    http::send,
    only_on,
    pooler::{create_owned_tenants, through_pgbouncer},
    serving::{incident_fleet, Outage},
};

backend_tests!(
    sigkill_during_create_leaves_all_or_nothing,
    sigkill_during_migrate_leaves_each_tenant_as_it_was_or_done,
    concurrent_migrators_apply_once_and_claim_once,
    store_outage_under_load_never_answers_500,
);
only_on!(postgres: mixed_tenant_load_through_pgbouncer_never_crosses_tenants);

#[test]
fn hostile_names_domains_and_hosts_never_panic_and_refuse_clearly() {
    let seed = seed();
    let cases = size(256, 20_000);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed)),
    );
    let strategy = proptest::prop_oneof![
        proptest::string::string_regex("[a-z0-9_]{0,70}").unwrap(),
        proptest::string::string_regex("[a-zA-Z0-9_.:\\-\\[\\]@%/ ]{0,80}").unwrap(),
        proptest::string::string_regex("(0x)?[0-9a-fA-Fx.]{0,20}").unwrap(),
        proptest::string::string_regex("[a-z]{1,10}(\\.[a-z0-9\\-]{1,10}){0,4}(:[0-9]{0,6})?\\.?")
            .unwrap(),
        proptest::arbitrary::any::<String>(),
    ];
    for _ in 0..cases {
        let input = strategy.new_tree(&mut runner).unwrap().current();
        let outcome = catch_unwind(AssertUnwindSafe(|| check_input(&input)));
        match outcome {
            Ok(Ok(kinds)) => {
                for kind in kinds {
                    *counts.entry(kind).or_default() += 1;
                }
            }
            Ok(Err(violation)) => violations.push(violation),
            Err(_) => violations.push(format!("panic on {input:?}")),
        }
    }
    report(
        "hostile_inputs",
        seed,
        json!({ "cases": cases, "outcomes": counts }),
        &violations,
    );
}

/// Parses `input` as a tenant name, a domain and a request's Host; returns
/// what happened to each, or the broken promise.
fn check_input(input: &str) -> Result<Vec<&'static str>, String> {
    let mut kinds = Vec::new();
    match TenantName::parse(input) {
        Ok(name) => {
            let valid = name.as_str().len() <= 63
                && name.as_str().starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(format!("accepted tenant name {input:?}"));
            }
            kinds.push("name_accepted");
        }
        Err(e) if e.to_string().trim().is_empty() => {
            return Err(format!("empty refusal of name {input:?}"))
        }
        Err(_) => kinds.push("name_refused"),
    }
    match Domain::parse(input) {
        Ok(domain) => {
            let again = Domain::parse(domain.as_str())
                .map_err(|e| format!("{input:?} normalised to {domain} which is refused: {e}"))?;
            if again != domain || domain.as_str().bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(format!("{input:?} does not normalise stably: {domain}"));
            }
            kinds.push("domain_accepted");
        }
        Err(e) if e.to_string().trim().is_empty() => {
            return Err(format!("empty refusal of domain {input:?}"))
        }
        Err(_) => kinds.push("domain_refused"),
    }
    if let Ok(value) = HeaderValue::from_str(input) {
        let request = Request::builder()
            .uri("/en/app/messages/")
            .header(HOST, value)
            .body(())
            .unwrap();
        match tenantgate_http::request_host(&request) {
            Ok(_) => kinds.push("host_accepted"),
            Err(tenantgate_http::HostError::Malformed(reason)) if reason.trim().is_empty() => {
                return Err(format!("empty refusal of host {input:?}"))
            }
            Err(_) => kinds.push("host_refused"),
        }
    }
    Ok(kinds)
}

/// SIGKILL at a random moment of `tenants create`: afterwards the tenant
/// either exists whole (registry row, domain, every migration) or not at
/// all, and the name can be created again.
async fn sigkill_during_create_leaves_all_or_nothing(h: Harness) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    write_slow_set(&h, 5);
    let rounds = size(3, 20);
    let (mut complete, mut absent, mut violations) = (0, 0, Vec::new());
    for round in 0..rounds {
        let name = format!("t_{round}");
        let domain = format!("t{round}.localhost");
        let mut child = h.spawn(&["tenants", "create", &name, "--domain", &domain]);
        tokio::time::sleep(Duration::from_millis(rng.u64(0..250))).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        quiesce(&h).await;
        h.run(&["tenants", "list"]).await.expect(0); // recovery on open
        let (rows, domains) = h.registry_rows(&name).await;
        let exists = h.tenant_exists(&name).await;
        if rows == 1 {
            if exists && domains == 1 && h.ledger(&name).await == [1, 2, 3, 4, 5] {
                complete += 1;
            } else {
                violations.push(format!("{name}: a registry row for an incomplete tenant"));
            }
        } else if rows == 0 && domains == 0 && !exists && h.leftovers().is_empty() {
            absent += 1;
            let retry = h
                .run(&["tenants", "create", &name, "--domain", &domain])
                .await;
            if retry.code != 0 {
                violations.push(format!("{name}: cannot be created again: {}", retry.stderr));
            }
        } else {
            violations.push(format!(
                "{name}: partial: rows {rows}, domains {domains}, exists {exists}, leftovers {:?}",
                h.leftovers()
            ));
        }
    }
    report(
        &format!("sigkill_create_{}", h.pick("postgres", "sqlite")),
        seed,
        json!({ "kills": rounds, "complete": complete, "absent": absent }),
        &violations,
    );
}

/// SIGKILL at a random moment of a fleet `migrate`: every tenant holds the
/// new migration's effects exactly when its ledger records it, and a rerun
/// brings everyone there exactly once.
async fn sigkill_during_migrate_leaves_each_tenant_as_it_was_or_done(h: Harness) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let tenants = ["t_a", "t_b", "t_c", "t_d"];
    h.write("0001_marks.sql", "CREATE TABLE marks (round int);");
    h.create(&tenants).await;
    let rounds = size(3, 20);
    let (mut done_at_kill, mut untouched_at_kill, mut violations) = (0, 0, Vec::new());
    for round in 0..rounds {
        let version = round + 2;
        h.write(
            &format!("{version:04}_round_{round}.sql"),
            &format!(
                "CREATE TABLE r{round} (id int); INSERT INTO marks VALUES ({round}); {}",
                h.slow_sql(0.2)
            ),
        );
        let mut child = h.spawn(&["migrate", "--jobs", "2"]);
        tokio::time::sleep(Duration::from_millis(rng.u64(0..450))).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        quiesce(&h).await;
        for tenant in tenants {
            let holds = h.ledger(tenant).await.contains(&(version as i64));
            let marks = marks(&h, tenant, round).await;
            let table = h.has_table(tenant, &format!("r{round}")).await;
            match (holds, marks, table) {
                (true, 1, true) => done_at_kill += 1,
                (false, 0, false) => untouched_at_kill += 1,
                other => violations.push(format!("{tenant} round {round}: {other:?}")),
            }
        }
        h.run(&["migrate"]).await.expect(0);
        for tenant in tenants {
            let marks = marks(&h, tenant, round).await;
            if marks != 1 {
                violations.push(format!("{tenant} round {round}: applied {marks} times"));
            }
        }
    }
    report(
        &format!("sigkill_migrate_{}", h.pick("postgres", "sqlite")),
        seed,
        json!({
            "kills": rounds,
            "tenants": tenants.len(),
            "done_at_kill": done_at_kill,
            "untouched_at_kill": untouched_at_kill,
        }),
        &violations,
    );
}

/// Three `migrate` runs at once, repeatedly: each migration applied once per
/// tenant, and exactly one run claims each tenant as migrated.
async fn concurrent_migrators_apply_once_and_claim_once(h: Harness) {
    let seed = seed();
    let tenants: Vec<String> = (0..8).map(|i| format!("t_{i}")).collect();
    let names: Vec<&str> = tenants.iter().map(String::as_str).collect();
    h.write("0001_marks.sql", "CREATE TABLE marks (round int);");
    h.create(&names).await;
    let rounds = size(1, 5);
    let (mut claims, mut elsewhere, mut violations) = (0, 0, Vec::new());
    for round in 0..rounds {
        h.write(
            &format!("{:04}_round_{round}.sql", round + 2),
            &format!("INSERT INTO marks VALUES ({round}); {}", h.slow_sql(0.01)),
        );
        let args = ["migrate", "--json", "--jobs", "3"];
        let (a, b, c) = tokio::join!(h.run(&args), h.run(&args), h.run(&args));
        let reports: Vec<serde_json::Value> = [a, b, c]
            .iter()
            .map(|run| {
                run.expect(0);
                run.json()
            })
            .collect();
        for tenant in &tenants {
            let claimed = reports
                .iter()
                .flat_map(|r| r["tenants"].as_array().unwrap())
                .filter(|t| t["tenant"] == tenant.as_str())
                .filter(|t| t["outcome"] == "migrated")
                .count();
            elsewhere += reports
                .iter()
                .flat_map(|r| r["tenants"].as_array().unwrap())
                .filter(|t| t["tenant"] == tenant.as_str() && t["outcome"] == "finished_elsewhere")
                .count();
            claims += claimed;
            let marks = marks(&h, tenant, round).await;
            if marks != 1 || claimed != 1 {
                violations.push(format!(
                    "{tenant} round {round}: applied {marks} times, claimed by {claimed} runs"
                ));
            }
        }
    }
    report(
        &format!("concurrent_migrators_{}", h.pick("postgres", "sqlite")),
        seed,
        json!({
            "rounds": rounds,
            "runs_per_round": 3,
            "tenants": tenants.len(),
            "claims": claims,
            "finished_elsewhere": elsewhere,
        }),
        &violations,
    );
}

/// Requests from four clients while the store is cut and restored at random
/// moments: never a 500, never a dropped request.
async fn store_outage_under_load_never_answers_500(h: Harness) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    incident_fleet(&h).await;
    let (outage, url) = Outage::prepare(&h).await;
    let server = h
        .serve_with(&url, &["--allow-degraded", "--heartbeat", "500ms"], &[])
        .await
        .unwrap_or_else(|(code, e)| panic!("{code}: {e}"));
    let duration = Duration::from_secs(size(4, 30));
    let statuses: Arc<Mutex<BTreeMap<u16, usize>>> = Arc::default();
    let deadline = Instant::now() + duration;
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (statuses, address) = (statuses.clone(), server.address);
            let host = ["acme", "globex", "initech", "acme"][client];
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let request = format!(
                        "GET /en/app/messages/ HTTP/1.1\r\nHost: {host}.localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
                    );
                    let status = send(address, request.as_bytes()).await.status;
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    let mut cuts = 0;
    while Instant::now() + Duration::from_millis(900) < deadline {
        tokio::time::sleep(Duration::from_millis(rng.u64(200..800))).await;
        outage.cut();
        cuts += 1;
        tokio::time::sleep(Duration::from_millis(rng.u64(200..800))).await;
        outage.restore();
    }
    for client in clients {
        client.await.unwrap();
    }
    let acme_back = || async {
        server
            .page("acme.localhost", "/en/app/messages/", true)
            .await
            .status
            == 200
    };
    let recovered = eventually(Duration::from_secs(15), acme_back).await;
    let statuses = statuses.lock().unwrap().clone();
    let mut violations: Vec<String> = statuses
        .iter()
        .filter(|(status, _)| !matches!(status, 200 | 503))
        .map(|(status, n)| format!("{n} answers with status {status}"))
        .collect();
    if statuses.get(&503).copied().unwrap_or(0) == 0 {
        violations.push("no 503 at all: the outage was not exercised".into());
    }
    if !recovered {
        violations.push("did not recover after the last restore".into());
    }
    report(
        &format!("store_outage_{}", h.pick("postgres", "sqlite")),
        seed,
        json!({
            "seconds": duration.as_secs(),
            "cuts": cuts,
            "statuses": statuses,
            "count_500": statuses.get(&500).copied().unwrap_or(0),
            "count_503": statuses.get(&503).copied().unwrap_or(0),
        }),
        &violations,
    );
}

/// Many concurrent requests for several tenants through PgBouncer in
/// transaction mode: no page ever shows another tenant's row.
async fn mixed_tenant_load_through_pgbouncer_never_crosses_tenants(h: Harness) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let pooled = through_pgbouncer(&h);
    let tenants: Vec<String> = (0..6).map(|i| format!("shop{i}")).collect();
    let names: Vec<&str> = tenants.iter().map(String::as_str).collect();
    create_owned_tenants(&h, &pooled, &names).await;
    let server = h
        .serve_with(&pooled, &["--watch", "poll"], &[])
        .await
        .unwrap_or_else(|(code, e)| panic!("{code}: {e}"));
    let total = size(120, 3000);
    let concurrency = 16;
    let (mut ok, mut crossed, mut failed) = (0usize, 0usize, 0usize);
    let mut pending = Vec::new();
    for _ in 0..total {
        let tenant = tenants[rng.usize(0..tenants.len())].clone();
        let address = server.address;
        pending.push(tokio::spawn(async move {
            let request = format!(
                "GET /en/app/messages/ HTTP/1.1\r\nHost: {tenant}.localhost\r\nConnection: close\r\n\r\n"
            );
            (tenant, send(address, request.as_bytes()).await)
        }));
        if pending.len() == concurrency {
            for (tenant, response) in futures::future::join_all(pending.drain(..))
                .await
                .into_iter()
                .map(Result::unwrap)
            {
                tally(&tenant, &response, &mut ok, &mut crossed, &mut failed);
            }
        }
    }
    for (tenant, response) in futures::future::join_all(pending)
        .await
        .into_iter()
        .map(Result::unwrap)
    {
        tally(&tenant, &response, &mut ok, &mut crossed, &mut failed);
    }
    let mut violations = Vec::new();
    if crossed > 0 {
        violations.push(format!("{crossed} pages showed another tenant's row"));
    }
    if failed > 0 {
        violations.push(format!("{failed} requests did not answer 200"));
    }
    report(
        "pgbouncer_mixed_load",
        seed,
        json!({
            "requests": total,
            "concurrency": concurrency,
            "tenants": tenants.len(),
            "ok": ok,
            "cross_tenant_rows": crossed,
            "failed": failed,
        }),
        &violations,
    );
}

fn tally(
    tenant: &str,
    response: &crate::http::Response,
    ok: &mut usize,
    crossed: &mut usize,
    failed: &mut usize,
) {
    if response.status != 200 || !response.body.contains(&format!("Owner of {tenant}")) {
        *failed += 1;
    } else if response.body.matches("Owner of ").count() != 1 {
        *crossed += 1;
    } else {
        *ok += 1;
    }
}

/// How many times round `round`'s migration left its mark in `tenant`.
async fn marks(h: &Harness, tenant: &str, round: usize) -> i64 {
    h.scalar_in_tenant(
        tenant,
        &format!("SELECT count(*) FROM marks WHERE round = {round}"),
    )
    .await
}

/// A tenant set of `n` migrations, each a table and a short pause, so a
/// random kill lands inside provisioning as often as around it.
fn write_slow_set(h: &Harness, n: usize) {
    for i in 1..=n {
        h.write(
            &format!("{i:04}_table_{i}.sql"),
            &format!("CREATE TABLE t{i} (id bigint); {}", h.slow_sql(0.03)),
        );
    }
}

/// Waits until no other session works in the store: a killed client's
/// server backend may run its statement to the end before it notices.
async fn quiesce(h: &Harness) {
    if h.is_sqlite() {
        return; // the dead process's file locks went with it
    }
    let idle = || async {
        h.db()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'",
                &[],
            )
            .await
            .map(|row| row.get::<_, i64>(0) == 0)
            .unwrap_or(false)
    };
    assert!(
        eventually(Duration::from_secs(30), idle).await,
        "the killed run's sessions ended"
    );
}

/// Whether this is the full run.
fn full() -> bool {
    std::env::var("TENANTGATE_RELIABILITY_SIZE").is_ok_and(|s| s == "full")
}

/// `small` in the ordinary test run, `full` under `scripts/reliability`.
fn size<T>(small: T, full_size: T) -> T {
    if full() {
        full_size
    } else {
        small
    }
}

/// The run's random seed: `TENANTGATE_RELIABILITY_SEED`, else fresh.
fn seed() -> u64 {
    std::env::var("TENANTGATE_RELIABILITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

fn seed_bytes(seed: u64) -> Vec<u8> {
    seed.to_le_bytes().repeat(4)
}

/// Prints the scenario's JSON line, then fails on any violation.
fn report(scenario: &str, seed: u64, counts: serde_json::Value, violations: &[String]) {
    let line = json!({
        "scenario": scenario,
        "seed": seed.to_string(),
        "size": if full() { "full" } else { "small" },
        "counts": counts,
        "violations": violations.len(),
    });
    println!("RELIABILITY {line}");
    assert!(
        violations.is_empty(),
        "{scenario} (seed {seed}): {violations:#?}"
    );
}
