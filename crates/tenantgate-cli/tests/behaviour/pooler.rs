//! Behind PgBouncer in transaction pooling mode (PostgreSQL only: SQLite
//! has no server to pool). A pooled server connection serves many clients'
//! transactions, so nothing may rely on session state: tenantgate enters a
//! tenant with `SET LOCAL` and transaction-scoped locks, sends no named
//! prepared statements, and learns of registry changes by polling
//! (`--watch poll`), since `LISTEN` does not survive the transaction.

use std::time::Duration;

use crate::{
    harness::{eventually, with_database, Harness},
    only_on,
    serving::lose_messages_migration,
};

only_on!(postgres: serving_and_migrating_through_pgbouncer_never_mixes_tenants);

/// The scenario's database through the test PgBouncer, set by `scripts/test`.
pub(crate) fn through_pgbouncer(h: &Harness) -> String {
    let pooler = std::env::var("TENANTGATE_TEST_PGBOUNCER_URL").expect(
        "TENANTGATE_TEST_PGBOUNCER_URL is not set: run the suite with ./scripts/test, which starts PgBouncer",
    );
    let db = h.url.rsplit('/').next().unwrap().split('?').next().unwrap();
    with_database(&pooler, db)
}

const TENANTS: [&str; 4] = ["acme", "globex", "initech", "hooli"];

/// Provisions the messages app's tenants through `url`, each with a user
/// whose display name says whose it is ("Owner of acme").
pub(crate) async fn create_owned_tenants(h: &Harness, url: &str, tenants: &[&str]) {
    h.use_demo_migrations(None);
    for tenant in tenants {
        let domain = format!("{tenant}.localhost");
        h.run_with_url(url, &["tenants", "create", tenant, "--domain", &domain])
            .await
            .expect(0);
        h.exec_in_tenant(
            tenant,
            &format!(
                "INSERT INTO users (username, display_name) VALUES ('owner', 'Owner of {tenant}')"
            ),
        )
        .await;
    }
}

async fn serving_and_migrating_through_pgbouncer_never_mixes_tenants(h: Harness) {
    let pooled = through_pgbouncer(&h);
    create_owned_tenants(&h, &pooled, &TENANTS).await;
    // initech misses the messages migration (the incident).
    lose_messages_migration(&h, "initech").await;
    h.run_with_url(&pooled, &["verify"]).await.expect(1);

    let server = h
        .serve_with(
            &pooled,
            &[
                "--allow-degraded",
                "--watch",
                "poll",
                "--poll-interval",
                "200ms",
            ],
            &[],
        )
        .await
        .unwrap_or_else(|(code, e)| panic!("{code}: {e}"));
    let initech = server
        .page("initech.localhost", "/en/app/messages/", true)
        .await;
    assert_eq!(initech.status, 503, "{}", initech.body);

    // Concurrent requests for several tenants over the pooled connections:
    // each page shows its own tenant's user and no other's.
    let served = ["acme", "globex", "hooli"];
    let mut requests = Vec::new();
    for round in 0..60 {
        let tenant = served[round % served.len()];
        let address = server.address;
        requests.push(tokio::spawn(async move {
            let request = format!(
                "GET /en/app/messages/ HTTP/1.1\r\nHost: {tenant}.localhost\r\nConnection: close\r\n\r\n"
            );
            (tenant, crate::http::send(address, request.as_bytes()).await)
        }));
    }
    for request in requests {
        let (tenant, response) = request.await.unwrap();
        assert_eq!(response.status, 200, "{tenant}: {}", response.body);
        assert!(
            response.body.contains(&format!("Owner of {tenant}")),
            "{tenant}: {}",
            response.body
        );
        for other in TENANTS.iter().filter(|o| **o != tenant) {
            assert!(
                !response.body.contains(&format!("Owner of {other}")),
                "{tenant} saw {other}'s row"
            );
        }
    }

    // A fleet migration through the pooler heals initech; the server learns
    // of it by polling, with no notification.
    let run = h.run_with_url(&pooled, &["migrate", "--json"]).await;
    run.expect(0);
    assert_eq!(h.ledger("initech").await, [1, 2]);
    let healed = || async {
        server
            .page("initech.localhost", "/en/app/messages/", true)
            .await
            .status
            == 200
    };
    assert!(
        eventually(Duration::from_secs(10), healed).await,
        "the change is seen through PgBouncer by polling: {}",
        server.stderr()
    );
    h.run_with_url(&pooled, &["verify", "--deep"])
        .await
        .expect(0);

    // Or the watcher LISTENs on a direct connection while everything else
    // goes through the pooler: a tenant created through the pooler is
    // announced (NOTIFY is sent at commit) and served at once.
    let direct = h.url.clone();
    let listening = h
        .serve_with(&pooled, &["--watch-url", &direct], &[])
        .await
        .unwrap_or_else(|(code, e)| panic!("{code}: {e}"));
    h.run_with_url(
        &pooled,
        &[
            "tenants",
            "create",
            "umbrella",
            "--domain",
            "umbrella.localhost",
        ],
    )
    .await
    .expect(0);
    let announced = || async {
        listening
            .page("umbrella.localhost", "/en/app/messages/", true)
            .await
            .status
            == 200
    };
    assert!(eventually(Duration::from_secs(10), announced).await);
}
