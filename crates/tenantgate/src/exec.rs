//! Healing through the framework's own migration command: run it once per
//! tenant that is behind, and decide from the tenant's ledger, not from the
//! command's exit status, whether it is ready now.
//!
//! A fleet whose ledgers another tool writes (Django, sqlx) is migrated by
//! that tool. What it lacks is the choice of tenants: `migrate_schemas`
//! visits every schema. [`heal`] runs the command only where a ledger lacks
//! something, in parallel up to `jobs`, each child in its own process group
//! (killed as a whole on timeout or interruption), and reads the ledger
//! again after each.
//!
//! ```
//! use tenantgate::{exec::ExecCommand, TenantName};
//!
//! let command = ExecCommand::parse("python manage.py migrate_schemas --schema={schema}", false)?;
//! let acme = TenantName::parse("acme")?;
//! assert_eq!(command.argv(&acme), ["python", "manage.py", "migrate_schemas", "--schema=acme"]);
//! assert!(ExecCommand::parse("run 'unclosed", false).is_err());
//! # Ok::<(), tenantgate::Error>(())
//! ```

use std::{
    collections::VecDeque,
    path::Path,
    process::Stdio,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::{
    fleet::{quick_report, select_tenants, FleetReport, Outcome, TenantReport},
    ledger::bring_in_step,
    progress::ProgressSink,
    AppliedMigration, Backend, Error, FailureKind, MigrationSet, Progress, Recovery, Tenant,
    TenantFailure, TenantName, TenantState,
};

/// Lines of a command's stderr kept for its report.
const STDERR_TAIL: usize = 20;

/// A command line with `{tenant}` and `{schema}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    words: Vec<String>,
    shell: bool,
}

impl ExecCommand {
    /// Splits `template` into words as a POSIX shell would (quotes,
    /// backslashes), to run without a shell; with `shell`, the whole
    /// template is run by `sh -c` instead. Placeholders are replaced after
    /// splitting, so a tenant name is always one word.
    pub fn parse(template: &str, shell: bool) -> Result<Self, Error> {
        let words = if shell {
            vec![template.to_owned()]
        } else {
            shlex::split(template).ok_or_else(|| {
                Error::Config(format!(
                    "--exec {template:?}: unbalanced quotes or a trailing backslash"
                ))
            })?
        };
        if words.first().is_none_or(|w| w.trim().is_empty()) {
            return Err(Error::Config("--exec: the command is empty".into()));
        }
        Ok(Self { words, shell })
    }

    /// The program and arguments for `tenant`.
    pub fn argv(&self, tenant: &TenantName) -> Vec<String> {
        let words = self.words.iter().map(|w| {
            w.replace("{tenant}", tenant.as_str())
                .replace("{schema}", tenant.as_str())
        });
        if self.shell {
            ["sh".to_owned(), "-c".to_owned()]
                .into_iter()
                .chain(words)
                .collect()
        } else {
            words.collect()
        }
    }

    /// The program that runs.
    fn program(&self) -> &str {
        if self.shell {
            "sh"
        } else {
            &self.words[0]
        }
    }
}

/// How [`heal`] runs.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Only these tenants; empty means every registered tenant.
    pub tenants: Vec<TenantName>,
    /// Commands running at once.
    pub jobs: usize,
    /// How long one tenant's command may run before its process group is killed.
    pub timeout: Duration,
    /// Start no further command after the first tenant that is not ready.
    pub fail_fast: bool,
}

/// What one tenant's command did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommandRun {
    /// The program and arguments that ran.
    pub argv: Vec<String>,
    /// Its exit status, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// True when it ran past the timeout and was killed.
    pub timed_out: bool,
    /// The last lines it wrote to stderr.
    pub stderr_tail: Vec<String>,
    /// Migrations its ledger records now that it did not before, by key.
    pub recorded: Vec<String>,
}

/// Runs `command` for every tenant whose ledger lacks a migration of `set`
/// (or has no ledger yet), then decides each one's state from its ledger.
/// The report has one entry per tenant considered; the registry records
/// the outcome (`ready`, or `failed` with the command's last stderr line).
pub async fn heal(
    backend: &dyn Backend,
    set: &MigrationSet,
    command: &ExecCommand,
    options: &ExecOptions,
    progress: ProgressSink<'_>,
    cancel: &CancellationToken,
) -> Result<FleetReport, Error> {
    let started = Instant::now();
    check_startable(command.program())?;
    backend.prepare().await?;
    let tenants = select_tenants(backend.tenants().await?, &options.tenants)?;
    let names: Vec<TenantName> = tenants.iter().map(|t| t.name.clone()).collect();
    let ledgers = backend.read_ledgers(&names).await?;
    let tenants = bring_in_step(backend, set, tenants, &ledgers).await?;
    let mut report = FleetReport::default();
    let mut due = Vec::new();
    for tenant in tenants {
        match ledgers.get(&tenant.name) {
            Some(Some(ledger)) if set.compare(ledger).missing.is_empty() => report
                .tenants
                .push(quick_report(&tenant, Outcome::UpToDate, Vec::new())),
            ledger => {
                let before = ledger.cloned().flatten().unwrap_or_default();
                due.push((tenant, before));
            }
        }
    }
    progress(Progress::Planned {
        total: report.tenants.len() + due.len(),
        to_migrate: due.len(),
    });
    let stop = AtomicBool::new(false);
    let runs = futures::stream::iter(due)
        .map(|(tenant, before)| {
            let stop = &stop;
            async move {
                if stop.load(Ordering::Relaxed) || cancel.is_cancelled() {
                    return Err(tenant.name);
                }
                progress(Progress::TenantStarted {
                    tenant: tenant.name.clone(),
                });
                let result =
                    run_one(backend, set, command, options, &tenant, &before, cancel).await;
                if let Ok(report) = &result {
                    if options.fail_fast && report.outcome != Outcome::Migrated {
                        stop.store(true, Ordering::Relaxed);
                    }
                    progress(Progress::TenantFinished(Box::new(report.clone())));
                }
                Ok(result)
            }
        })
        .buffer_unordered(options.jobs.max(1))
        .collect::<Vec<_>>()
        .await;
    for run in runs {
        match run {
            Ok(Ok(tenant)) => report.tenants.push(tenant),
            Ok(Err(e)) if e.is_unavailable() => {
                report.database_error.get_or_insert(e.to_string());
            }
            Ok(Err(e)) => return Err(e),
            Err(not_started) => report.not_started.push(not_started),
        }
    }
    report.finish(cancel, started);
    Ok(report)
}

/// Runs the command for one tenant, then reads its ledger and records its state.
async fn run_one(
    backend: &dyn Backend,
    set: &MigrationSet,
    command: &ExecCommand,
    options: &ExecOptions,
    tenant: &Tenant,
    before: &[AppliedMigration],
    cancel: &CancellationToken,
) -> Result<TenantReport, Error> {
    let started = Instant::now();
    let argv = command.argv(&tenant.name);
    let (mut run, interrupted) = run_command(&argv, options.timeout, cancel).await;
    let ledgers = backend
        .read_ledgers(std::slice::from_ref(&tenant.name))
        .await?;
    let after = ledgers.get(&tenant.name).cloned().flatten();
    let fresh = bring_in_step(backend, set, vec![tenant.clone()], &ledgers).await?;
    let mut state = fresh.first().map_or(tenant.state, |t| t.state);
    let applied: Vec<&AppliedMigration> = after
        .iter()
        .flatten()
        .filter(|a| !before.iter().any(|b| b.version == a.version))
        .collect();
    run.recorded = applied
        .iter()
        .map(|a| {
            set.get(a.version)
                .map_or_else(|| a.description.clone(), |m| m.key.clone())
        })
        .collect();
    let missing = after
        .as_ref()
        .map(|ledger| set.compare(ledger).missing)
        .unwrap_or_else(|| set.iter().collect());
    let error = if missing.is_empty() {
        None
    } else {
        let failure = TenantFailure {
            kind: if interrupted {
                FailureKind::Interrupted
            } else {
                FailureKind::Command
            },
            migration: missing.first().map(|m| m.reference()),
            message: command_failure(&run, missing.len()),
            recovery: Recovery::MigrateTenant {
                tenant: tenant.name.clone(),
            },
        };
        if !interrupted {
            backend
                .record_states(&[crate::backend::StateChange {
                    tenant: tenant.name.clone(),
                    state: TenantState::Failed,
                    detail: Some(failure.message.clone()),
                }])
                .await?;
            state = TenantState::Failed;
        }
        Some(failure)
    };
    Ok(TenantReport {
        tenant: tenant.name.clone(),
        placement: tenant.placement.clone(),
        outcome: match (&error, interrupted) {
            (None, _) => Outcome::Migrated,
            (Some(_), true) => Outcome::Interrupted,
            (Some(_), false) => Outcome::Failed,
        },
        state,
        applied: applied.iter().map(|a| a.version).collect(),
        attempts: 1,
        duration: started.elapsed(),
        error,
        rows_changed: None,
        command: Some(run),
    })
}

/// Why the command left the tenant not ready, in one line.
fn command_failure(run: &CommandRun, missing: usize) -> String {
    let ended = match (run.timed_out, run.exit_code, run.signal) {
        (true, _, _) => "ran past its timeout and was killed".to_owned(),
        (_, Some(0), _) => "exited 0".to_owned(),
        (_, Some(code), _) => format!("exited with status {code}"),
        (_, None, Some(signal)) => format!("was killed by signal {signal}"),
        (_, None, None) => "ended".to_owned(),
    };
    let last = run
        .stderr_tail
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    format!("the migration command {ended} and the ledger still lacks {missing} required migration(s){last}")
}

/// Runs `argv` in its own process group, keeping the tail of its stderr.
/// Returns what it did and whether `cancel` interrupted it.
async fn run_command(
    argv: &[String],
    timeout: Duration,
    cancel: &CancellationToken,
) -> (CommandRun, bool) {
    let mut run = CommandRun {
        argv: argv.to_vec(),
        exit_code: None,
        signal: None,
        timed_out: false,
        stderr_tail: Vec::new(),
        recorded: Vec::new(),
    };
    let spawned = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            run.stderr_tail
                .push(format!("cannot start {}: {e}", argv[0]));
            return (run, false);
        }
    };
    let group = ProcessGroup(child.id());
    let mut tail = VecDeque::new();
    let stderr = child.stderr.take();
    let read_stderr = async {
        if let Some(stderr) = stderr {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
    };
    let waited = async {
        let (_, status) = tokio::join!(read_stderr, child.wait());
        status
    };
    let mut interrupted = false;
    tokio::select! {
        status = tokio::time::timeout(timeout, waited) => match status {
            Ok(Ok(status)) => {
                use std::os::unix::process::ExitStatusExt;
                run.exit_code = status.code();
                run.signal = status.signal();
            }
            Ok(Err(e)) => run.stderr_tail.push(format!("waiting for the command failed: {e}")),
            Err(_) => run.timed_out = true,
        },
        () = cancel.cancelled() => interrupted = true,
    }
    drop(group);
    run.stderr_tail.splice(0..0, tail);
    (run, interrupted)
}

/// A child's process group, killed as a whole when dropped (the command
/// may have started children of its own).
struct ProcessGroup(Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|pid| i32::try_from(pid).ok()) {
            // Already gone when it exited and reaped its own children.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Refuses a program that cannot start at all, before any tenant's run.
fn check_startable(program: &str) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if program.contains('/') {
        executable(Path::new(program))
    } else {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| executable(&dir.join(program)))
        })
    };
    if found {
        Ok(())
    } else {
        Err(Error::CommandUnstartable {
            program: program.to_owned(),
            reason: if program.contains('/') {
                "no executable file there".into()
            } else {
                "not found on PATH".into()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_a_shell_would_and_placeholders_stay_one_word() {
        let command =
            ExecCommand::parse(r#"migrate "--label=a b" --schema={schema} x\ y"#, false).unwrap();
        let acme = TenantName::parse("acme").unwrap();
        assert_eq!(
            command.argv(&acme),
            ["migrate", "--label=a b", "--schema=acme", "x y"]
        );
        let shell = ExecCommand::parse("cd app && ./migrate {tenant}", true).unwrap();
        assert_eq!(shell.argv(&acme), ["sh", "-c", "cd app && ./migrate acme"]);
        assert!(ExecCommand::parse("   ", false).is_err());
    }

    #[test]
    fn a_program_that_cannot_start_is_refused_up_front() {
        assert!(check_startable("sh").is_ok());
        assert!(matches!(
            check_startable("tenantgate-no-such-program"),
            Err(Error::CommandUnstartable { .. })
        ));
        assert!(check_startable("/nonexistent/migrate").is_err());
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let argv = vec!["sh".to_owned(), "-c".to_owned(), script];
        let (run, interrupted) =
            run_command(&argv, Duration::from_millis(300), &CancellationToken::new()).await;
        assert!(run.timed_out && !interrupted);
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let grandchild = nix::unistd::Pid::from_raw(pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while nix::sys::signal::kill(grandchild, None).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the command's own child outlived the kill"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
