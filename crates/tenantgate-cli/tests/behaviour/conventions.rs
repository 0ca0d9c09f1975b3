//! The CLI behaves like the tools people use every day: `NO_COLOR`, shell
//! completions, `--help` that says what each command does, JSON for every
//! outcome under `--json`, aligned tables, bounded lists, JSON log lines
//! under `--log-json`, and the exit codes service managers expect.

use std::time::Duration;

use crate::{
    backend_tests,
    harness::{eventually, Harness},
    only_on,
};

backend_tests!(
    json_means_json_for_failures_too,
    tables_align_and_long_lists_are_counted,
    serve_drains_and_exits_0_on_sigterm,
);
// The options and help do not depend on the store.
only_on!(sqlite: no_color_completions_and_help);

async fn json_means_json_for_failures_too(h: Harness) {
    h.write_tables(1);
    let created = h.run(&["tenants", "create", "acme", "--json"]).await;
    created.expect(0);
    assert!(
        created.json()["duration_ms"].is_number(),
        "{}",
        created.stdout
    );
    for (args, code, kind) in [
        (vec!["--json", "migrate", "--jobs", "0"], 2, "usage"),
        (
            vec!["--json", "tenants", "show", "nobody"],
            1,
            "unknown_tenant",
        ),
        (
            vec!["--json", "tenants", "create", "Bad Name"],
            2,
            "invalid_tenant_name",
        ),
        (vec!["--json", "tenants", "drop", "acme"], 2, "usage"),
        (vec!["--json", "backfill", "nothing"], 2, "unknown_backfill"),
    ] {
        let run = h.run(&args).await;
        run.expect(code);
        let error = &run.json()["error"];
        assert_eq!(error["kind"], kind, "{args:?}: {}", run.stdout);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // `serve` refusing to start, as JSON.
    h.write("0002_more.sql", "CREATE TABLE more (id int);");
    let mut refused = h.spawn(&["--json", "serve", "--listen", "127.0.0.1:0"]);
    let status = tokio::time::timeout(Duration::from_secs(30), refused.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let out = refused.wait_with_output().await.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["error"]["kind"], "tenants_not_ready");
    // An explicit --migrations is refused by serve, which would ignore it.
    let run = h
        .run(&["serve", "--migrations", "/nonexistent", "--allow-degraded"])
        .await;
    run.expect(2);
    assert!(run.stderr.contains("--migrations"), "{}", run.stderr);
}

async fn tables_align_and_long_lists_are_counted(h: Harness) {
    h.write_tables(1);
    let names: Vec<String> = (0..14).map(|i| format!("t_{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    h.create(&refs).await;
    h.exec_in_tenant("t_00", "DELETE FROM _tenantgate_migrations")
        .await;
    h.run(&["verify"]).await; // t_00 becomes pending, the others stay ready
    let list = h.run(&["tenants", "list"]).await;
    list.expect(0);
    // `{:<24} {:<8} {:>8}`: the version column is the same bytes on every
    // row only when the state column is padded.
    let versions: Vec<&str> = list
        .stdout
        .lines()
        .filter(|l| l.starts_with("t_"))
        .map(|l| l.get(34..42).unwrap_or("").trim())
        .collect();
    assert_eq!(versions.len(), 14, "{}", list.stdout);
    assert!(
        versions.iter().all(|v| *v == "1" || *v == "-"),
        "{versions:?}:\n{}",
        list.stdout
    );

    // An interrupted run over many tenants names a few and counts the rest;
    // with --log-json every stderr line is JSON, the interruption included.
    h.write(
        "0002_slow.sql",
        &format!("CREATE TABLE slow (id int); {}", h.slow_sql(3.0)),
    );
    let child = h.spawn(&["migrate", "--jobs", "1", "--log-json"]);
    let pid = child.id().unwrap();
    let busy = || async { h.busy_tenants().await > 0 };
    assert!(eventually(Duration::from_secs(10), busy).await);
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    let not_started = stdout
        .lines()
        .find(|l| l.starts_with("not started: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let count: usize = not_started["not started: ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{not_started}"));
    assert!(count > 10, "{not_started}");
    assert!(
        not_started.contains(&format!(", … and {} more;", count - 10)),
        "ten named, the rest counted: {not_started}"
    );
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("a JSON log line ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{line}");
    }
    assert!(stderr.contains("interrupted"), "{stderr}");
    let idle = || async { !busy().await };
    assert!(eventually(Duration::from_secs(15), idle).await);
}

async fn serve_drains_and_exits_0_on_sigterm(h: Harness) {
    h.use_demo_migrations(None);
    h.create(&["acme"]).await;
    let mut server = h.serve(&[], &[]).await;
    assert_eq!(server.get("", "/livez", "").await.status, 200);
    let code = server.terminate().await;
    assert_eq!(code, Some(0), "a clean drain exits 0: {}", server.stderr());
}

async fn no_color_completions_and_help(h: Harness) {
    // Under a pseudo-terminal colour is on, unless NO_COLOR says otherwise.
    h.write_tables(1);
    h.create(&["acme"]).await;
    let binary = env!("CARGO_BIN_EXE_tenantgate");
    let in_terminal = |no_color: bool| {
        let mut command = std::process::Command::new("script");
        command
            .args([
                "-qec",
                &format!("{binary} verify --tenant acme"),
                "/dev/null",
            ])
            .env("DATABASE_URL", &h.url)
            .env("TENANTGATE_MIGRATIONS", h.migrations())
            .env("RUST_LOG", "debug")
            .env_remove("NO_COLOR");
        if no_color {
            command.env("NO_COLOR", "1");
        }
        let out = command
            .output()
            .expect("script(1) is installed by scripts/test");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = in_terminal(false);
    assert!(has_colour(&coloured), "colour in a terminal: {coloured:?}");
    let plain = in_terminal(true);
    assert!(plain.contains("verified ok"), "{plain}");
    assert!(!has_colour(&plain), "NO_COLOR: {plain:?}");

    for shell in ["bash", "zsh", "fish"] {
        let run = h.run(&["completions", shell]).await;
        run.expect(0);
        assert!(run.stdout.contains("tenantgate"), "{shell}: {}", run.stdout);
    }
    let help = h.run(&["verify", "--help"]).await;
    help.expect(0);
    assert!(help.stdout.contains("Global options:"), "{}", help.stdout);
    assert!(
        !help.stdout.contains("migrated in parallel"),
        "{}",
        help.stdout
    );
}

/// Whether `text` holds an SGR colour sequence (`ESC [ … m`); cursor
/// movements such as a progress bar's line clearing are not colour.
fn has_colour(text: &str) -> bool {
    text.split('\u{1b}').skip(1).any(|rest| {
        rest.strip_prefix('[').is_some_and(|params| {
            let end = params.find(|c: char| !(c.is_ascii_digit() || c == ';'));
            end.is_some_and(|at| params[at..].starts_with('m'))
        })
    })
}
