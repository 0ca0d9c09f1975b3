//! `tenantgate proxy` in front of an app it does not know: served tenants
//! forwarded with their tenant in headers, the rest answered by the guard
//! and never seen by the app; upstream failures as 502/504, never a hang;
//! bodies streamed with bounded memory; upgrades passed through.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    backend_tests,
    harness::{eventually, Harness},
    http::{send, Response},
    serving::incident_fleet,
    upstream::Upstream,
};

backend_tests!(
    served_tenants_are_forwarded_and_the_rest_never_reach_the_app,
    trusted_peers_extend_forwarded_headers_but_never_name_the_tenant,
    upstream_failures_are_502_or_504_and_nothing_hangs,
    bodies_stream_with_bounded_memory_and_upgrades_pass,
    a_deploy_is_enforced_on_sighup_and_sigterm_drains,
    sigterm_answers_the_request_in_flight_and_closes_idle_connections,
    the_emergency_bypass_forwards_a_behind_tenant_marked_and_counted,
);

/// `GET path` for `host` with extra header lines, on `address`.
async fn get(address: std::net::SocketAddr, host: &str, path: &str, extra: &str) -> Response {
    send(
        address,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
}

/// What the upstream echoed of a `GET` the proxy must forward.
async fn forwarded(
    address: std::net::SocketAddr,
    host: &str,
    path: &str,
    extra: &str,
) -> serde_json::Value {
    let response = get(address, host, path, extra).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

async fn served_tenants_are_forwarded_and_the_rest_never_reach_the_app(h: Harness) {
    incident_fleet(&h).await;
    let app = Upstream::start().await;
    let proxy = h
        .proxy(
            app.address,
            &["--allow-degraded", "--pass-host", "www.localhost"],
        )
        .await;
    let admin = proxy.admin.expect("an admin address");

    // A ready tenant: forwarded as sent, plus the tenant; nothing a client
    // sends can name another tenant or forge its origin.
    let echoed = forwarded(
        proxy.address,
        "acme.localhost",
        "/some/path?x=1",
        "X-Tenantgate-Tenant: globex\r\nX-Tenantgate-Schema: globex\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: globex.localhost\r\nConnection: x-hop, host\r\nX-Hop: 1\r\n",
    )
    .await;
    let headers = &echoed["headers"];
    assert_eq!(echoed["path"], "/some/path");
    assert_eq!(headers["host"], "acme.localhost");
    assert_eq!(headers["x-tenantgate-tenant"], "acme");
    if h.is_sqlite() {
        let file = headers["x-tenantgate-database"].as_str().unwrap();
        assert!(file.ends_with("/tenants/acme.db"), "{file}");
        assert!(
            std::path::Path::new(file).is_file(),
            "the app is told the tenant's own file: {file}"
        );
        assert!(headers.get("x-tenantgate-schema").is_none());
    } else {
        assert_eq!(headers["x-tenantgate-schema"], "acme");
    }
    assert_eq!(
        headers["x-forwarded-for"], "127.0.0.1",
        "replaced, not trusted"
    );
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "acme.localhost");
    assert!(headers.get("x-hop").is_none(), "hop-by-hop headers stay");

    // HTTP/2 cleartext (prior knowledge): the authority names the tenant,
    // and the app still receives a Host header.
    let stream = TcpStream::connect(proxy.address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("an h2c connection");
    tokio::spawn(connection);
    let request = axum::http::Request::builder()
        .uri("http://acme.localhost/over-h2")
        .body(http_body_util::Empty::<axum::body::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed["path"], "/over-h2");
    assert_eq!(echoed["headers"]["host"], "acme.localhost");
    assert_eq!(echoed["headers"]["x-tenantgate-tenant"], "acme");

    // The tenant a migration behind: the guard answers; the app never sees it.
    let blocked = get(
        proxy.address,
        "initech.localhost",
        "/en/app/",
        "Accept: application/json\r\n",
    )
    .await;
    assert_eq!(blocked.status, 503);
    assert_eq!(blocked.json()["tenant"], "initech");
    assert!(blocked.header("retry-after").is_some());
    assert_eq!(
        get(proxy.address, "nobody.localhost", "/", "").await.status,
        404
    );
    let twice = send(
        proxy.address,
        b"GET / HTTP/1.1\r\nHost: acme.localhost\r\nHost: initech.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(twice.status, 400);
    // An absolute-form target names the tenant; a Host header naming
    // another is replaced, so an app routing by Host (django-tenants) sees
    // the tenant the guard checked, never the behind one.
    let smuggled = send(
        proxy.address,
        b"GET http://acme.localhost/absolute HTTP/1.1\r\nHost: initech.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(smuggled.status, 200, "{}", smuggled.body);
    assert_eq!(smuggled.json()["headers"]["host"], "acme.localhost");
    assert_eq!(smuggled.json()["path"], "/absolute");
    let requests = app.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("acme.localhost ")),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.starts_with("initech.")),
        "{requests:?}"
    );

    // A pass-through host reaches the app without a tenant.
    let public = get(proxy.address, "www.localhost", "/", "").await;
    assert_eq!(public.status, 200);
    assert!(public.json()["headers"]
        .get("x-tenantgate-tenant")
        .is_none());

    // tenantgate's own routes live on the admin address; the app keeps its paths.
    assert_eq!(get(admin, "", "/livez", "").await.status, 200);
    assert_eq!(get(admin, "", "/health/migrations", "").await.status, 503);
    let app_health = get(proxy.address, "acme.localhost", "/health/migrations", "").await;
    assert_eq!(
        app_health.json()["path"],
        "/health/migrations",
        "forwarded to the app"
    );
    let metrics = get(admin, "", "/metrics", "").await.body;
    assert!(
        metrics.contains("tenantgate_proxy_forwarded_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenantgate_proxy_upstream_duration_seconds_bucket{le=\"60\"}"),
        "the upstream's latency is a histogram, with buckets up to the default timeout:\n{metrics}"
    );

    // Healed in another process: forwarded without restarting the proxy.
    h.run(&["verify", "--fix"]).await.expect(0);
    let healed = || async {
        get(proxy.address, "initech.localhost", "/", "")
            .await
            .status
            == 200
    };
    assert!(eventually(Duration::from_secs(10), healed).await);
    assert!(app
        .requests()
        .iter()
        .any(|r| r.starts_with("initech.localhost ")));

    // The 503 page through the proxy in a real browser.
    let behind = tenantgate_behind(&h).await;
    let dom = crate::http::render_in_browser(
        &format!("http://{behind}.localhost:{}/", proxy.address.port()),
        "proxy-503.png",
    )
    .await;
    assert!(
        dom.contains(&format!("<dd id=\"tenant\">{behind}</dd>")),
        "{dom}"
    );
}

async fn the_emergency_bypass_forwards_a_behind_tenant_marked_and_counted(h: Harness) {
    incident_fleet(&h).await;
    let app = Upstream::start().await;
    let proxy = h
        .proxy_with_env(
            app.address,
            &["--allow-degraded"],
            &[("DISABLE_MIGRATION_CHECK", "true")],
        )
        .await;
    let admin = proxy.admin.expect("an admin address");
    let marked =
        |response: &Response| response.header("x-tenantgate-migration-check") == Some("disabled");

    let behind = get(proxy.address, "initech.localhost", "/en/app/", "").await;
    assert_eq!(behind.status, 200, "forwarded: {}", behind.body);
    assert!(marked(&behind), "{:?}", behind.headers);
    assert_eq!(behind.json()["headers"]["x-tenantgate-tenant"], "initech");
    assert!(app
        .requests()
        .iter()
        .any(|r| r.starts_with("initech.localhost ")));
    let served = get(proxy.address, "acme.localhost", "/", "").await;
    assert_eq!(served.status, 200);
    assert!(marked(&served), "every answer says the check is off");
    let unknown = get(proxy.address, "nobody.localhost", "/", "").await;
    assert_eq!(unknown.status, 404, "an unknown host is still nobody's");
    assert!(marked(&unknown));

    let metrics = get(admin, "", "/metrics", "").await.body;
    assert!(
        metrics.contains("tenantgate_requests_bypassed_total 1"),
        "only the behind tenant's request is a bypass:\n{metrics}"
    );
    let warned = || async {
        proxy.stderr().contains("migration check bypassed") && proxy.stderr().contains("initech")
    };
    assert!(
        eventually(Duration::from_secs(5), warned).await,
        "{}",
        proxy.stderr()
    );
}

async fn trusted_peers_extend_forwarded_headers_but_never_name_the_tenant(h: Harness) {
    h.use_demo_migrations(None);
    h.run(&["tenants", "create", "acme", "--domain", "acme.localhost"])
        .await
        .expect(0);
    let app = Upstream::start().await;
    let proxy = h
        .proxy(app.address, &["--trust-forwarded", "127.0.0.0/8"])
        .await;
    let echoed = forwarded(
        proxy.address,
        "acme.localhost",
        "/",
        "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.2\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: globex.localhost\r\n",
    )
    .await;
    let headers = &echoed["headers"];
    assert_eq!(
        headers["x-forwarded-for"], "203.0.113.7, 198.51.100.2, 127.0.0.1",
        "a trusted peer's chain, every line of it in order, is extended with the peer"
    );
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "globex.localhost");
    assert_eq!(
        headers["x-tenantgate-tenant"], "acme",
        "the tenant comes from Host, never from X-Forwarded-Host"
    );
    // Without a chain, the peer starts one.
    let first = forwarded(proxy.address, "acme.localhost", "/", "").await;
    assert_eq!(first["headers"]["x-forwarded-for"], "127.0.0.1");
}

/// Leaves a new tenant one migration behind; returns its name.
async fn tenantgate_behind(h: &Harness) -> &'static str {
    h.run(&["tenants", "create", "hooli", "--domain", "hooli.localhost"])
        .await
        .expect(0);
    crate::serving::lose_messages_migration(h, "hooli").await;
    h.run(&["verify"]).await.expect(1);
    "hooli"
}

async fn upstream_failures_are_502_or_504_and_nothing_hangs(h: Harness) {
    incident_fleet(&h).await;
    let app = Upstream::start().await;
    let proxy = h
        .proxy(
            app.address,
            &[
                "--allow-degraded",
                "--upstream-timeout",
                "1s",
                "--idle-timeout",
                "1s",
            ],
        )
        .await;
    let slow = get(proxy.address, "acme.localhost", "/slow", "").await;
    assert_eq!(slow.status, 504);
    let started = Instant::now();
    let stalled = get(proxy.address, "acme.localhost", "/stall", "").await;
    assert_eq!(stalled.status, 200, "the headers were sent");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "a stalled body aborts the connection after the idle timeout"
    );
    // An upstream that closes a keep-alive connection after answering:
    // the next request goes out on a new connection, not the dead one.
    let closing = one_answer_per_connection().await;
    let proxy_to_closing = h.proxy(closing, &["--allow-degraded"]).await;
    for _ in 0..3 {
        let answer = get(proxy_to_closing.address, "acme.localhost", "/", "").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An upstream that is not there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = h.proxy(closed, &["--allow-degraded"]).await;
    let refused = get(
        nowhere.address,
        "acme.localhost",
        "/",
        "Accept: text/html\r\n",
    )
    .await;
    assert_eq!(refused.status, 502);
    assert!(refused.body.contains("not answering"), "{}", refused.body);
}

/// An upstream that answers one request per connection (claiming
/// keep-alive) and then closes it.
async fn one_answer_per_connection() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") {
                    if socket.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    request.push(byte[0]);
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
    });
    address
}

/// The proxy's peak resident memory, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn bodies_stream_with_bounded_memory_and_upgrades_pass(h: Harness) {
    const SIZE: u64 = 1024 * 1024 * 1024;
    incident_fleet(&h).await;
    let app = Upstream::start().await;
    let proxy = h.proxy(app.address, &["--allow-degraded"]).await;

    // Download: counted as it arrives, never held.
    let mut stream = TcpStream::connect(proxy.address).await.unwrap();
    stream
        .write_all(format!("GET /download/{SIZE} HTTP/1.1\r\nHost: acme.localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut received = 0u64;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = stream.read(&mut buffer).await.unwrap();
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    assert!(received > SIZE, "headers and {SIZE} bytes: {received}");

    // Upload: streamed from here, counted by the app.
    let mut stream = TcpStream::connect(proxy.address).await.unwrap();
    stream
        .write_all(
            format!("POST /upload HTTP/1.1\r\nHost: acme.localhost\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let chunk = vec![b'u'; 256 * 1024];
    for _ in 0..SIZE / chunk.len() as u64 {
        stream.write_all(&chunk).await.unwrap();
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.ends_with(&SIZE.to_string()), "{answer}");
    let peak = peak_rss_kib(proxy.pid());
    assert!(
        peak < 64 * 1024,
        "the proxy peaked at {peak} KiB moving 2 × {SIZE} bytes"
    );

    // An upgraded connection (WebSocket) passes through both ways.
    let mut socket = TcpStream::connect(proxy.address).await.unwrap();
    socket
        .write_all(b"GET /ws HTTP/1.1\r\nHost: acme.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let frame = b"\x81\x05hello";
    socket.write_all(frame).await.unwrap();
    let mut echoed = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut echoed))
        .await
        .expect("the echo came back")
        .unwrap();
    assert_eq!(&echoed, frame);
}

async fn a_deploy_is_enforced_on_sighup_and_sigterm_drains(h: Harness) {
    incident_fleet(&h).await;
    let app = Upstream::start().await;
    let mut proxy = h.proxy(app.address, &["--allow-degraded"]).await;
    assert_eq!(
        get(proxy.address, "acme.localhost", "/", "").await.status,
        200
    );
    // The deploy adds a migration the app now needs; SIGHUP re-reads it.
    h.write("0003_pins.sql", "CREATE TABLE pins (id int);");
    std::process::Command::new("kill")
        .args(["-HUP", &proxy.pid().to_string()])
        .status()
        .unwrap();
    let enforced = || async { get(proxy.address, "acme.localhost", "/", "").await.status == 503 };
    assert!(
        eventually(Duration::from_secs(10), enforced).await,
        "{}",
        proxy.stderr()
    );
    h.run(&["migrate"]).await.expect(0);
    let healed = || async { get(proxy.address, "acme.localhost", "/", "").await.status == 200 };
    assert!(eventually(Duration::from_secs(10), healed).await);
    assert_eq!(proxy.terminate().await, Some(0), "{}", proxy.stderr());
}

async fn sigterm_answers_the_request_in_flight_and_closes_idle_connections(h: Harness) {
    incident_fleet(&h).await;
    let app = Upstream::start().await;
    let mut proxy = h.proxy(app.address, &["--allow-degraded"]).await;
    let address = proxy.address;
    // A keep-alive connection left idle after its answer: it stays open
    // until the proxy closes it.
    let idle = tokio::spawn(send(
        address,
        b"GET /idle HTTP/1.1\r\nHost: acme.localhost\r\n\r\n",
    ));
    // A request the upstream answers 5 s after it arrives.
    let slow = tokio::spawn(get(address, "acme.localhost", "/slow", ""));
    let arrived = || async {
        let seen = app.requests();
        ["acme.localhost /idle", "acme.localhost /slow"]
            .iter()
            .all(|r| seen.iter().any(|s| s == r))
    };
    assert!(eventually(Duration::from_secs(10), arrived).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !idle.is_finished(),
        "without a shutdown the idle connection stays open"
    );

    proxy.signal_terminate().expect("SIGTERM sent");
    let idle = tokio::time::timeout(Duration::from_secs(10), idle)
        .await
        .expect("the idle connection is closed")
        .unwrap();
    assert_eq!(idle.status, 200, "its answer came before the close");
    assert!(
        !slow.is_finished(),
        "idle connections close at once, not when the last request ends"
    );
    let slow = tokio::time::timeout(Duration::from_secs(15), slow)
        .await
        .expect("the request in flight is answered")
        .unwrap();
    assert_eq!((slow.status, slow.body.as_str()), (200, "late"));
    assert_eq!(proxy.exit_code().await, Some(0), "{}", proxy.stderr());
}
