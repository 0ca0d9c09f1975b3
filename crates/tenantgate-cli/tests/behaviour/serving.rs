//! The guard in a real server: the incident end to end, failures on a
//! running server, failing closed, the emergency bypass, hostile hosts,
//! the admin API, and the 503 page in a real browser.

use std::{net::SocketAddr, time::Duration};

use crate::{
    backend_tests,
    harness::{eventually, Harness},
    http::{Proxy, Server},
};

backend_tests!(
    the_incident_is_blocked_reported_and_healed_without_restart,
    a_tenant_failed_on_a_running_server_is_blocked_until_rerun,
    a_store_outage_answers_503_at_once_never_500,
    emergency_bypass_passes_warns_counts_and_marks_even_in_an_outage,
    the_app_answers_503_when_its_schema_fails_and_shows_details_only_when_allowed,
    the_app_refuses_bad_users_with_4xx,
    hostile_hosts_get_400_or_404_never_500,
    admin_api_provisions_behind_a_token,
    the_503_page_renders_in_a_real_browser,
    metrics_pass_promtool_and_count_requests_by_route,
    the_periodic_refresh_skips_an_idle_registry_and_catches_an_unannounced_change,
);

/// Three tenants of the messages app; `initech` then loses the messages
/// migration from its schema and its ledger: the seed incident. Its registry
/// row still claims the migration until the ledgers are read again.
pub(crate) async fn incident_fleet(h: &Harness) {
    h.use_demo_migrations(None);
    for (tenant, domain) in [
        ("acme", "acme.localhost"),
        ("globex", "globex.localhost"),
        ("initech", "initech.localhost"),
    ] {
        h.run(&["tenants", "create", tenant, "--domain", domain])
            .await
            .expect(0);
        h.exec_in_tenant(
            tenant,
            "INSERT INTO users (username, display_name) VALUES ('alice', 'Alice')",
        )
        .await;
    }
    lose_messages_migration(h, "initech").await;
}

/// Takes the messages migration out of `tenant`'s schema and ledger (the
/// incident), behind the registry's back.
pub(crate) async fn lose_messages_migration(h: &Harness, tenant: &str) {
    h.exec_in_tenant(
        tenant,
        "DROP TABLE messages; DROP TABLE participants; DROP TABLE conversations; DROP TABLE user_statuses;
         DELETE FROM _tenantgate_migrations WHERE version = 2",
    )
    .await;
}

/// How many periodic refreshes ended with `outcome`, by `/metrics`.
async fn refreshes(server: &Server, outcome: &str) -> u64 {
    let metrics = server.get("", "/metrics", "").await.body;
    let line = format!("tenantgate_registry_refreshes_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in:\n{metrics}"))
}

async fn the_periodic_refresh_skips_an_idle_registry_and_catches_an_unannounced_change(h: Harness) {
    incident_fleet(&h).await;
    let server = h
        .serve(&["--allow-degraded", "--refresh-interval", "200ms"], &[])
        .await;
    assert!(until_status(&server, "acme.localhost", "/en/app/messages/", 200).await);
    // Nothing changes: refreshes confirm the registry without re-reading it.
    let idle = || async { refreshes(&server, "unchanged").await >= 2 };
    assert!(eventually(Duration::from_secs(10), idle).await);
    let reread_before = refreshes(&server, "reread").await;
    assert!(
        reread_before <= 1,
        "an idle registry is re-read once, then confirmed: {reread_before}"
    );
    // A change written behind tenantgate's back, announced by no
    // notification (on SQLite the watch sees the file change itself).
    h.exec_in_registry(
        "UPDATE tenants SET state = 'drift', last_error = 'changed by hand' WHERE name = 'acme'",
    )
    .await;
    assert!(
        until_status(&server, "acme.localhost", "/en/app/messages/", 503).await,
        "the change reaches the guard without a notification"
    );
    if !h.is_sqlite() {
        assert!(
            refreshes(&server, "reread").await > reread_before,
            "found by a periodic refresh that re-read the changed registry"
        );
    }
}

async fn until_status(server: &Server, host: &str, path: &str, status: u16) -> bool {
    eventually(Duration::from_secs(10), || async {
        server.page(host, path, true).await.status == status
    })
    .await
}

async fn the_incident_is_blocked_reported_and_healed_without_restart(h: Harness) {
    incident_fleet(&h).await;
    let (code, stderr) = h
        .serve_with(&h.url, &[], &[])
        .await
        .err()
        .expect("serve refuses to start");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("initech") && stderr.contains("0002_messages.sql"),
        "{stderr}"
    );

    let server = h
        .serve(
            &[
                "--allow-degraded",
                "--refresh-interval",
                "1h",
                "--show-details",
            ],
            &[],
        )
        .await;
    for host in ["acme.localhost", "globex.localhost:8080"] {
        for path in ["/en/app/messages/", "/fr/app/messages/"] {
            let response = server.page(host, path, false).await;
            assert_eq!(response.status, 200, "{host}{path}: {}", response.body);
            assert!(response.body.contains("Alice"));
        }
    }
    let page = server
        .page("initech.localhost", "/en/app/messages/", false)
        .await;
    assert_eq!(page.status, 503);
    assert!(page.header("retry-after").is_some());
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    for fact in [
        "initech",
        "initech.localhost",
        "0002",
        "messages",
        " migrate --tenant initech",
        "pending",
    ] {
        assert!(
            page.body.contains(fact),
            "the page shows {fact:?}: {}",
            page.body
        );
    }
    let reference = page
        .body
        .split("id=\"reference\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_owned();
    let logged = || async { server.stderr().contains(&reference) };
    assert!(
        eventually(Duration::from_secs(5), logged).await,
        "the log line carries the page's reference {reference}"
    );
    assert!(server.stderr().contains("ERROR"));

    let json = server
        .page("initech.localhost", "/fr/app/messages/", true)
        .await;
    assert_eq!(json.status, 503);
    let body = json.json();
    assert_eq!(body["tenant"], "initech");
    assert_eq!(
        body["stored_in"],
        h.pick("schema \"initech\"", "file tenants/initech.db")
    );
    assert_eq!(body["domain"], "initech.localhost");
    assert_eq!(body["missing"][0]["version"], 2);
    assert_eq!(
        body["recovery"],
        serde_json::json!({ "action": "migrate_tenant", "tenant": "initech" })
    );
    assert!(body["recovery_text"]
        .as_str()
        .unwrap()
        .ends_with(" migrate --tenant initech"));
    assert!(body["reference"].as_str().unwrap().starts_with("tg-"));

    let health = server.get("", "/health/migrations", "").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["not_served"], 1);
    assert!(
        health.json().get("tenants_not_served").is_none(),
        "the list needs the admin token"
    );
    let admin = server
        .get(
            "",
            "/health/migrations",
            "Authorization: Bearer test-admin-token\r\n",
        )
        .await;
    assert_eq!(admin.json()["tenants_not_served"][0]["tenant"], "initech");
    server
        .expect_metric("tenantgate_requests_blocked_total{reason=\"missing\"} 2")
        .await;

    // The page's command runs as shown, from any folder.
    let shown = body["recovery_text"].as_str().unwrap().to_owned();
    let elsewhere = tempfile::tempdir().unwrap();
    let healed = tokio::process::Command::new("sh")
        .args(["-c", &shown])
        .current_dir(elsewhere.path())
        .env("DATABASE_URL", &h.url)
        .env_remove("TENANTGATE_MIGRATIONS")
        .output()
        .await
        .unwrap();
    assert!(
        healed.status.success(),
        "{shown}: {}",
        String::from_utf8_lossy(&healed.stderr)
    );
    assert!(
        until_status(&server, "initech.localhost", "/en/app/messages/", 200).await,
        "healed by the notification alone"
    );
    assert_eq!(server.get("", "/health/migrations", "").await.status, 200);
}

async fn a_tenant_failed_on_a_running_server_is_blocked_until_rerun(h: Harness) {
    incident_fleet(&h).await;
    h.exec_in_tenant("initech", "CREATE TABLE conversations (conflicting text)")
        .await;
    let server = h
        .serve(&["--allow-degraded", "--refresh-interval", "1h"], &[])
        .await;
    h.run(&["migrate"]).await.expect(1);
    let failed = || async {
        let r = server
            .page("initech.localhost", "/en/app/messages/", true)
            .await;
        r.status == 503 && r.json()["reason"] == "failed"
    };
    assert!(eventually(Duration::from_secs(10), failed).await);
    assert_eq!(
        server
            .page("acme.localhost", "/en/app/messages/", true)
            .await
            .status,
        200
    );
    h.exec_in_tenant("initech", "DROP TABLE conversations")
        .await;
    h.run(&["migrate"]).await.expect(0);
    assert!(until_status(&server, "initech.localhost", "/en/app/messages/", 200).await);
}

/// The cluster's address, from the scenario's URL.
fn cluster_address(url: &str) -> SocketAddr {
    let authority = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    authority.parse().unwrap()
}

/// Takes the registry away from a running server and brings it back: on
/// PostgreSQL a proxy between server and cluster is cut; on SQLite the
/// registry file is moved away.
pub(crate) enum Outage {
    Proxy(Proxy),
    Registry(std::path::PathBuf),
}

impl Outage {
    /// Prepares an outage; returns it with the URL the server must use.
    pub(crate) async fn prepare(h: &Harness) -> (Self, String) {
        if h.is_sqlite() {
            let registry = h.data_folder().join("registry.db");
            return (Outage::Registry(registry), h.url.clone());
        }
        let proxy = Proxy::start(cluster_address(&h.url)).await;
        let via_proxy = h.url.replacen(
            &cluster_address(&h.url).port().to_string(),
            &proxy.port.to_string(),
            1,
        );
        (Outage::Proxy(proxy), via_proxy)
    }

    pub(crate) fn cut(&self) {
        match self {
            Outage::Proxy(proxy) => proxy.cut(),
            Outage::Registry(path) => std::fs::rename(path, path.with_extension("away")).unwrap(),
        }
    }

    pub(crate) fn restore(&self) {
        match self {
            Outage::Proxy(proxy) => proxy.restore(),
            Outage::Registry(path) => std::fs::rename(path.with_extension("away"), path).unwrap(),
        }
    }
}

/// Statuses of requests sent every 100 ms for `duration`.
async fn statuses_over(server: &Server, host: &str, duration: Duration) -> Vec<u16> {
    let deadline = std::time::Instant::now() + duration;
    let mut statuses = Vec::new();
    while std::time::Instant::now() < deadline {
        statuses.push(server.page(host, "/en/app/messages/", true).await.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    statuses
}

async fn a_store_outage_answers_503_at_once_never_500(h: Harness) {
    incident_fleet(&h).await;
    let (outage, url) = Outage::prepare(&h).await;
    // The default staleness bound (30 s) is far longer than the outage: the
    // 503s must come from the watcher noticing, not from the bound.
    let server = h
        .serve_with(&url, &["--allow-degraded"], &[])
        .await
        .unwrap_or_else(|(code, e)| panic!("{code}: {e}"));
    let acme = server
        .page("acme.localhost", "/en/app/messages/", true)
        .await;
    assert_eq!(acme.status, 200);
    assert_eq!(server.get("", "/readyz", "").await.status, 200);
    outage.cut();
    let statuses = statuses_over(&server, "acme.localhost", Duration::from_secs(3)).await;
    assert!(
        !statuses.contains(&500),
        "no 500 during the outage: {statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 503).count() >= 5,
        "503s during the outage: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 503)),
        "{statuses:?}"
    );
    let unknown = server
        .page("acme.localhost", "/en/app/messages/", true)
        .await;
    assert_eq!(unknown.status, 503);
    assert_eq!(unknown.json()["reason"], "migration state unknown");
    assert!(unknown.header("retry-after").is_some());
    let html = server
        .page("acme.localhost", "/en/app/messages/", false)
        .await;
    assert!(
        html.body.contains("Migration state unknown"),
        "{}",
        html.body
    );
    let health = server.get("", "/health/migrations", "").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "unknown");
    assert_eq!(server.get("", "/readyz", "").await.status, 503);
    assert_eq!(
        server.get("", "/livez", "").await.status,
        200,
        "alive all along"
    );

    outage.restore();
    assert!(
        until_status(&server, "acme.localhost", "/en/app/messages/", 200).await,
        "recovers when the store is back"
    );
    assert_eq!(server.get("", "/readyz", "").await.status, 200);
    let health = server.get("", "/health/migrations", "").await;
    assert_eq!(
        health.json()["status"],
        "degraded",
        "initech is still behind"
    );
}

async fn emergency_bypass_passes_warns_counts_and_marks_even_in_an_outage(h: Harness) {
    incident_fleet(&h).await;
    h.exec_in_tenant("initech", "DELETE FROM users").await; // the page then needs no messages table
    let (outage, url) = Outage::prepare(&h).await;
    let server = h
        .serve_with(&url, &[], &[("DISABLE_MIGRATION_CHECK", "true")])
        .await
        .unwrap_or_else(|(code, e)| panic!("{code}: {e}"));
    let banner = || async { server.stderr().contains("DISABLED") };
    assert!(
        eventually(Duration::from_secs(5), banner).await,
        "a banner at startup: {}",
        server.stderr()
    );
    let stderr = server.stderr();
    assert!(
        !stderr.contains("the guard blocks it"),
        "no claim that the guard blocks anything: {stderr}"
    );
    let response = server
        .page("initech.localhost", "/en/app/messages/", false)
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    for path in ["/health/migrations", "/metrics", "/livez", "/readyz"] {
        let response = server.get("", path, "").await;
        assert_eq!(
            response.header("x-tenantgate-migration-check"),
            Some("disabled"),
            "{path}"
        );
    }
    let health = server.get("", "/health/migrations", "").await;
    assert_eq!(health.json()["migration_check"], "disabled");
    let warned = || async {
        server.stderr().contains("migration check bypassed") && server.stderr().contains("initech")
    };
    assert!(
        eventually(Duration::from_secs(5), warned).await,
        "{}",
        server.stderr()
    );
    server
        .expect_metric("tenantgate_requests_bypassed_total 1")
        .await;

    // While the store is out, the guard cannot check anything: every request
    // it lets through is a bypass, counted, logged and marked.
    outage.cut();
    let unknown = || async { server.get("", "/readyz", "").await.status == 503 };
    assert!(eventually(Duration::from_secs(10), unknown).await);
    for _ in 0..5 {
        let response = server
            .page("acme.localhost", "/en/app/messages/", true)
            .await;
        assert!(matches!(response.status, 200 | 503), "{}", response.status);
        assert_eq!(
            response.header("x-tenantgate-migration-check"),
            Some("disabled")
        );
    }
    let metrics = server.get("", "/metrics", "").await.body;
    let bypassed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tenantgate_requests_bypassed_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(bypassed >= 6, "{metrics}");
    let logged = || async {
        server.stderr().lines().any(|l| {
            l.contains("migration check bypassed")
                && l.contains("acme")
                && l.contains("state_unknown")
        })
    };
    assert!(
        eventually(Duration::from_secs(5), logged).await,
        "{}",
        server.stderr()
    );
    outage.restore();
}

async fn the_app_answers_503_when_its_schema_fails_and_shows_details_only_when_allowed(h: Harness) {
    incident_fleet(&h).await;
    let server = h.serve(&["--allow-degraded"], &[]).await;
    // acme's schema loses a table behind the guard's back (no ledger change):
    // the app's own query fails; it must answer 503, not 500.
    h.exec_in_tenant("acme", "DROP TABLE user_statuses").await;
    let page = server
        .page("acme.localhost", "/en/app/messages/", false)
        .await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.header("retry-after").is_some());
    assert!(page.body.contains("acme"), "{}", page.body);
    assert!(
        !page.body.contains("user_statuses") && !page.body.contains("detail"),
        "no store error text without --show-details: {}",
        page.body
    );
    let reference = page
        .body
        .lines()
        .find_map(|l| l.strip_prefix("reference: "))
        .unwrap_or_else(|| panic!("a reference in {}", page.body))
        .to_owned();
    let logged = || async {
        server
            .stderr()
            .lines()
            .any(|l| l.contains(&reference) && l.contains("user_statuses"))
    };
    assert!(
        eventually(Duration::from_secs(5), logged).await,
        "the log line with {reference} holds the error: {}",
        server.stderr()
    );
    let admin = server
        .get(
            "acme.localhost",
            "/en/app/messages/",
            "Accept: application/json\r\nAuthorization: Bearer test-admin-token\r\n",
        )
        .await;
    assert_eq!(admin.status, 503);
    assert!(admin.body.contains("user_statuses"), "{}", admin.body);
    drop(server);
    let detailed = h.serve(&["--allow-degraded", "--show-details"], &[]).await;
    let page = detailed
        .page("acme.localhost", "/en/app/messages/", false)
        .await;
    assert_eq!(page.status, 503);
    assert!(page.body.contains("user_statuses"), "{}", page.body);
}

async fn the_app_refuses_bad_users_with_4xx(h: Harness) {
    incident_fleet(&h).await;
    let server = h.serve(&["--allow-degraded"], &[]).await;
    let post = |form: String| {
        let request = format!(
            "POST /en/app/users HTTP/1.1\r\nHost: acme.localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        );
        let address = server.address;
        async move { crate::http::send(address, request.as_bytes()).await }
    };
    let created = post("username=bob&display_name=Bob".into()).await;
    assert_eq!(created.status, 303, "{}", created.body);
    let cases = [
        ("username=bob&display_name=Bob+again".to_owned(), 409),
        (
            format!("username={}&display_name=Long", "x".repeat(151)),
            400,
        ),
        ("username=nul%00byte&display_name=Nul".to_owned(), 400),
        ("username=carol&display_name=%00".to_owned(), 400),
        ("username=&display_name=Empty".to_owned(), 400),
        (
            format!("username=dave&display_name={}", "y".repeat(201)),
            400,
        ),
    ];
    for (form, status) in cases {
        let response = post(form.clone()).await;
        assert_eq!(response.status, status, "{form}: {}", response.body);
        assert!(!response.body.is_empty(), "{form}: a message");
    }
    assert_eq!(
        h.scalar_in_tenant("acme", "SELECT count(*) FROM users")
            .await,
        2,
        "alice and bob only"
    );
}

async fn hostile_hosts_get_400_or_404_never_500(h: Harness) {
    incident_fleet(&h).await;
    let server = h.serve(&["--allow-degraded"], &[]).await;
    let long = "a".repeat(5000);
    let hosts = [
        "a b",
        "evil.com/../acme.localhost",
        long.as_str(),
        "acme.localhost:abc",
        "acme.localhost:1:2",
        "[::1]",
        "127.0.0.1",
        "user@acme.localhost",
        "%61cme.localhost",
        "acme..localhost",
        "аcme.localhost",
        "-acme.localhost",
        "acme.localhost;x",
        "*.localhost",
        ".",
        "xn--zz.localhost",
    ];
    for host in hosts {
        let response = server.get(host, "/en/app/messages/", "").await;
        assert!(
            matches!(response.status, 400 | 404),
            "{host:?} answered {}: {}",
            response.status,
            response.body
        );
    }
    assert_eq!(
        server.get("", "/en/app/messages/", "").await.status,
        400,
        "no Host header at all"
    );
    let nul = server
        .raw(
            "GET /en/app/messages/ HTTP/1.1\r\nHost: acme.localhost\0\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert!(matches!(nul.status, 400 | 404), "NUL: {}", nul.status);
    for hosts in [
        "Host: acme.localhost\r\nHost: initech.localhost",
        "Host: acme.localhost\r\nHost: acme.localhost",
    ] {
        let twice = server
            .raw(&format!(
                "GET /en/app/messages/ HTTP/1.1\r\n{hosts}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(twice.status, 400, "two Host headers: {}", twice.body);
    }
    for target in [
        "ftp://acme.localhost/en/app/messages/",
        "ws://acme.localhost/en/app/messages/",
        "file://acme.localhost/en/app/messages/",
    ] {
        let other = server
            .raw(&format!(
                "GET {target} HTTP/1.1\r\nHost: acme.localhost\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(other.status, 400, "{target}: {}", other.body);
    }
    // Normalised exactly as on insert.
    assert_eq!(
        server
            .get("ACME.LOCALHOST.:1234", "/en/app/messages/", "")
            .await
            .status,
        200
    );
    // The URI authority wins over the Host header (absolute-form).
    let absolute = server.raw("GET http://initech.localhost/en/app/messages/ HTTP/1.1\r\nHost: acme.localhost\r\nConnection: close\r\n\r\n").await;
    assert_eq!(absolute.status, 503);
    assert_eq!(
        server
            .get("acme.localhost", "/en/app/messages/", "")
            .await
            .status,
        200,
        "still serving"
    );
}

async fn admin_api_provisions_behind_a_token(h: Harness) {
    incident_fleet(&h).await;
    let server = h.serve(&["--allow-degraded"], &[]).await;
    let post = |auth: &'static str, body: &'static str| {
        let request = format!(
            "POST /admin/tenants HTTP/1.1\r\nHost: admin\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let address = server.address;
        async move { crate::http::send(address, request.as_bytes()).await }
    };
    assert_eq!(post("", r#"{"name":"hooli"}"#).await.status, 401);
    assert_eq!(
        post("Authorization: Bearer wrong\r\n", r#"{"name":"hooli"}"#)
            .await
            .status,
        401
    );
    let bad = post(
        "Authorization: Bearer test-admin-token\r\n",
        r#"{"name":"Hooli;drop"}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("lowercase ASCII letters"));
    let created = post(
        "Authorization: Bearer test-admin-token\r\n",
        r#"{"name":"hooli","domains":["hooli.localhost"]}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["applied"], serde_json::json!([1, 2]));
    let taken = post(
        "Authorization: Bearer test-admin-token\r\n",
        r#"{"name":"hooli2","domains":["hooli.localhost"]}"#,
    )
    .await;
    assert_eq!(taken.status, 409);
    assert!(until_status(&server, "hooli.localhost", "/en/app/messages/", 200).await);
    server
        .expect_metric("tenantgate_provisioning_succeeded_total 1")
        .await;
    server
        .expect_metric("tenantgate_provisioning_duration_seconds_count 1")
        .await;
    drop(server);
    let off = h
        .serve(&["--allow-degraded"], &[("TENANTGATE_ADMIN_TOKEN", "")])
        .await;
    let request = "POST /admin/tenants HTTP/1.1\r\nHost: admin\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    assert_eq!(
        off.raw(request).await.status,
        404,
        "admin routes are off without a token"
    );
}

async fn the_503_page_renders_in_a_real_browser(h: Harness) {
    incident_fleet(&h).await;
    let server = h.serve(&["--allow-degraded"], &[]).await;
    let url = format!(
        "http://initech.localhost:{}/en/app/messages/",
        server.address.port()
    );
    let dom = crate::http::render_in_browser(&url, "guard-503.png").await;
    assert!(
        dom.contains("<dd id=\"tenant\">initech</dd>"),
        "rendered DOM: {dom}"
    );
    assert!(
        dom.contains("tenantgate migrate --tenant initech"),
        "rendered DOM: {dom}"
    );
}

async fn metrics_pass_promtool_and_count_requests_by_route(h: Harness) {
    incident_fleet(&h).await;
    let server = h.serve(&["--allow-degraded"], &[]).await;
    for host in ["acme.localhost", "initech.localhost", "nobody.localhost"] {
        server.page(host, "/en/app/messages/", false).await;
    }
    let scrape = server.get("", "/metrics", "").await.body;
    for (name, _) in tenantgate_http::metrics::DESCRIPTIONS {
        assert!(
            scrape.contains(&format!("# HELP {name} ")),
            "{name} is described:\n{scrape}"
        );
    }
    for line in [
        "tenantgate_http_requests_total{route=\"/{lang}/app/messages/\",status=\"2xx\"} 1",
        "tenantgate_http_requests_total{route=\"/{lang}/app/messages/\",status=\"5xx\"} 1",
        "tenantgate_http_requests_total{route=\"/{lang}/app/messages/\",status=\"4xx\"} 1",
        "tenantgate_build_info{version=",
        "tenantgate_provisioning_duration_seconds_count 0",
    ] {
        assert!(scrape.contains(line), "{line} in:\n{scrape}");
    }
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/test");
    use tokio::io::AsyncWriteExt;
    let mut stdin = promtool.stdin.take().unwrap();
    stdin.write_all(scrape.as_bytes()).await.unwrap();
    drop(stdin);
    let checked = promtool.wait_with_output().await.unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
