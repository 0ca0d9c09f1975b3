//! `tenantgate demo`: the incident reproduced on the embedded store, the
//! broken tenant blocked with 503 while the others serve, and healed by the
//! command the demo prints, without a restart.

use std::{net::SocketAddr, path::Path, time::Duration};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{harness::eventually, http::send};

fn demo(data: &Path, extra: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"));
    command
        .arg("demo")
        .arg("--data")
        .arg(data)
        .args(extra)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    command
}

/// The line of the result table for `tenant`, split into columns.
fn row<'a>(stdout: &'a str, tenant: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(tenant))
        .unwrap_or_else(|| panic!("a row for {tenant} in:\n{stdout}"))
        .split_whitespace()
        .collect()
}

/// The printed heal command: the line that ends in ` migrate`.
fn heal_line(stdout: &str) -> String {
    stdout
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with(" migrate") && l.contains(" --data "))
        .unwrap_or_else(|| panic!("a heal command in:\n{stdout}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_without_serving_prints_the_incident() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let out = demo(&data, &["--no-serve"]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        row(&stdout, "acme"),
        ["acme", "acme.localhost", "ready", "1,2", "-"]
    );
    assert_eq!(
        row(&stdout, "globex"),
        ["globex", "globex.localhost", "ready", "1,2", "-"]
    );
    assert_eq!(
        row(&stdout, "initech"),
        [
            "initech",
            "initech.localhost",
            "pending",
            "1",
            "0002_messages.sql"
        ]
    );
    assert!(data.join("tenants/initech.db").is_file());
    let heal = heal_line(&stdout);
    assert!(heal.starts_with('/'), "an absolute program: {heal}");
    assert!(heal.contains(" --migrations "), "{heal}");

    // Given the same folder again, the demo reuses it.
    let again = demo(&data, &["--no-serve"]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert_eq!(again.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("release 1: provisioned"), "{stdout}");
    assert_eq!(row(&stdout, "initech")[2], "pending");

    let json = demo(&data, &["--no-serve", "--json"])
        .output()
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["behind"], "initech");
    let initech = &report["tenants"][2];
    assert_eq!(initech["tenant"], "initech");
    assert_eq!(initech["state"], "pending");
    assert_eq!(initech["missing"], serde_json::json!(["0002_messages.sql"]));
    assert!(report["heal"].as_str().unwrap().ends_with(" migrate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_demo_blocks_the_broken_tenant_until_the_printed_heal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = demo(&data, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let read_all = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            if line.contains("curl -H 'Host: initech.localhost'") {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all)
        .await
        .unwrap_or_else(|_| panic!("the demo printed its URLs:\n{stdout}"));
    let address: SocketAddr = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Serving on http://"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let port = address.port();
    for url in [
        format!("http://acme.localhost:{port}/en/app/messages/"),
        format!("http://initech.localhost:{port}/en/app/messages/"),
        format!("http://{}:{port}/health/migrations", address.ip()),
        format!("http://{}:{port}/metrics", address.ip()),
    ] {
        assert!(stdout.contains(&url), "{url} in:\n{stdout}");
    }
    let get = |host: &'static str, path: &'static str| async move {
        send(
            address,
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
    };
    let healthy = get("acme.localhost", "/en/app/messages/").await;
    assert_eq!(healthy.status, 200, "{}", healthy.body);
    assert!(healthy.body.contains("Launch plan"), "{}", healthy.body);
    let broken = get("initech.localhost", "/en/app/messages/").await;
    assert_eq!(broken.status, 503, "{}", broken.body);
    assert!(broken.body.contains("0002_messages.sql"), "{}", broken.body);
    assert!(
        broken.body.contains("file tenants/initech.db"),
        "{}",
        broken.body
    );
    let health = get("127.0.0.1", "/health/migrations").await;
    assert_eq!(health.status, 503);
    assert!(health.body.contains("\"not_served\":1"), "{}", health.body);
    assert_eq!(get("127.0.0.1", "/metrics").await.status, 200);

    // As printed, from another folder.
    let elsewhere = tempfile::tempdir().unwrap();
    let heal = tokio::process::Command::new("sh")
        .args(["-c", &heal_line(&stdout)])
        .current_dir(elsewhere.path())
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(
        heal.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&heal.stderr)
    );
    let healed = || async { get("initech.localhost", "/en/app/messages/").await.status == 200 };
    assert!(
        eventually(Duration::from_secs(10), healed).await,
        "the running server learned of the heal"
    );
    child.start_kill().unwrap();
}
