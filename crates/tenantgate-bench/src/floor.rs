//! The floor: one `psql` session replaying SQL from a script file.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use tenantgate::MigrationFolder;

/// Finds psql: the given path, next to the cluster's server binaries, or PATH.
pub(crate) fn psql(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    if let Ok(bindir) = std::env::var("TENANTGATE_PG_BINDIR") {
        let candidate = Path::new(&bindir).join("psql");
        if candidate.exists() {
            return candidate;
        }
    }
    PathBuf::from("psql")
}

/// Runs `script` in one psql session against `url`; returns the wall time.
pub(crate) async fn replay(psql: &Path, url: &str, script: &str) -> anyhow::Result<Duration> {
    let dir = std::env::temp_dir().join(format!("tenantgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("floor.sql");
    std::fs::write(&file, script)?;
    let started = Instant::now();
    let output = tokio::process::Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-f"])
        .arg(&file)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("run {}", psql.display()))?;
    let elapsed = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    if !output.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(elapsed)
}

/// The floor's provisioning of `schemas`: per schema one transaction that
/// runs `before` (e.g. a setting), creates the schema, sets the search
/// path, runs `setup` (e.g. a ledger table), then each of `folder`'s tenant
/// migrations followed by `after_each(version)`.
pub(crate) fn provision_script(
    schemas: &[impl std::fmt::Display],
    folder: &MigrationFolder,
    before: &str,
    setup: &str,
    after_each: impl Fn(i64) -> String,
) -> String {
    let mut script = String::new();
    for schema in schemas {
        script.push_str(&format!(
            "BEGIN;\n{before}CREATE SCHEMA {schema};\nSET LOCAL search_path TO {schema};\n{setup}"
        ));
        for m in folder.tenant.iter() {
            script.push_str(&m.sql);
            script.push_str("\n;\n");
            script.push_str(&after_each(m.version));
        }
        script.push_str("COMMIT;\n");
    }
    script
}
