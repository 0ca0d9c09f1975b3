//! The one place the binary spells a [`Recovery`]: the `tenantgate`
//! command that carries it out, with the store and migration folder this
//! run used, so the command runs as printed.

use std::path::{Path, PathBuf};

use tenantgate::{backend::sqlite_folder, LedgerKind, Recovery, TenantName};

use crate::args::Global;

/// How to invoke `tenantgate` again against the same store and folder.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    program: String,
    /// Global options that name the store and the migration folder.
    globals: Vec<String>,
    /// True for a SQLite data folder (tenants are files), else PostgreSQL.
    sqlite: bool,
    /// Which ledger the tenants hold.
    ledger: LedgerKind,
    /// `--exec COMMAND` for `migrate`, where the ledger's own tool migrates.
    exec: Option<String>,
}

impl Invocation {
    /// The program as it was started and the options as they were given:
    /// runs as printed from the folder the user is in. A PostgreSQL URL is
    /// never repeated (it may hold a password): the command relies on
    /// `DATABASE_URL`, as the run did or can.
    pub(crate) fn as_given(global: &Global) -> Self {
        let program = std::env::args()
            .next()
            .unwrap_or_else(|| "tenantgate".into());
        Self::build(global, program, |p| p.to_path_buf())
    }

    /// The program and folders as absolute paths: runs as printed from any
    /// folder (for a page or a message read elsewhere).
    pub(crate) fn absolute(global: &Global) -> Self {
        let program = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "tenantgate".into());
        Self::build(global, program, |p| {
            std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
        })
    }

    /// A plain `tenantgate …` command with no store options, for pages
    /// that must not reveal where the store is.
    pub(crate) fn plain(global: &Global) -> Self {
        Self {
            program: "tenantgate".into(),
            globals: ledger_options(global),
            sqlite: sqlite_folder(&global.url()).is_some(),
            ledger: global.ledger,
            exec: exec_option(global),
        }
    }

    fn build(global: &Global, program: String, path: impl Fn(&Path) -> PathBuf) -> Self {
        let url = global.url();
        let data = sqlite_folder(&url).map(|dir| path(Path::new(dir)));
        let mut globals = Vec::new();
        if let Some(dir) = &data {
            globals.extend(["--data".into(), quote(&dir.display().to_string())]);
        }
        globals.extend([
            "--migrations".into(),
            quote(&path(&global.migrations).display().to_string()),
        ]);
        globals.extend(ledger_options(global));
        Self {
            program: quote(&program),
            globals,
            sqlite: data.is_some(),
            ledger: global.ledger,
            exec: exec_option(global),
        }
    }

    fn run(&self, args: &str) -> String {
        let mut command = vec![self.program.clone()];
        command.extend(self.globals.iter().cloned());
        command.push(args.to_owned());
        command.join(" ")
    }

    fn container(&self, tenant: &TenantName) -> String {
        if self.sqlite {
            format!("file tenants/{tenant}.db")
        } else {
            format!("schema {}", tenant.quoted())
        }
    }

    /// The command (and the words around it) that carries out `recovery`.
    pub(crate) fn command(&self, recovery: &Recovery) -> String {
        let migrate = |t: &TenantName| {
            let exec = self
                .exec
                .as_deref()
                .map(|c| format!(" --exec {}", quote(c)));
            self.run(&format!("migrate --tenant {t}{}", exec.unwrap_or_default()))
        };
        match recovery {
            Recovery::MigrateTenant { tenant } => migrate(tenant),
            Recovery::MigrateShared => self.run("migrate"),
            Recovery::FindLockHolder { tenant } => {
                let holders = if self.sqlite {
                    format!("the processes holding {} open", self.container(tenant))
                } else {
                    format!(
                        "the sessions holding locks in {} (pg_locks, pg_stat_activity)",
                        self.container(tenant)
                    )
                };
                format!("end {holders}, then run: {}", migrate(tenant))
            }
            Recovery::FinishMove { tenant, to } => format!(
                "tenant {tenant} is being moved to placement {to}; if no move is running, run: {}",
                self.run(&format!("tenants move {tenant} --to {to}"))
            ),
            Recovery::FinishCreate { tenant, placement } => format!(
                "placement {placement} holds tenant {tenant}, which was never registered; to register it, run: {}",
                self.run(&format!("tenants create {tenant} --placement {placement}"))
            ),
            Recovery::RetryWhenReachable { tenant } => {
                format!("once the database answers, run: {}", migrate(tenant))
            }
            Recovery::FixMigration { tenant, file } => format!(
                "fix {file} (or the object in {} it conflicts with), then run: {}",
                self.container(tenant),
                migrate(tenant)
            ),
            Recovery::FixBackfill { tenant, backfill } => format!(
                "fix backfills/{backfill}.sql (or the data it trips on), then run: {}",
                self.run(&format!("backfill {backfill} --tenant {tenant}"))
            ),
            Recovery::RestoreFile { file } => format!(
                "restore {file} as it was applied (migrations are forward-only: put new changes in a new migration), then run: {}",
                self.run("verify")
            ),
            Recovery::RestoreOrRecreate { tenant } => format!(
                "{} or its ledger is gone: restore it from a backup, or run: {} && {}",
                self.container(tenant),
                self.run(&format!("tenants drop {tenant} --yes")),
                self.run(&format!("tenants create {tenant}"))
            ),
            Recovery::CreateAgain { tenant, file } => {
                let create = self.run(&format!("tenants create {tenant}"));
                match file {
                    Some(file) => format!("fix {file}, then run: {create}"),
                    None => format!("once the database error is resolved, run: {create}"),
                }
            }
            Recovery::RepairDrift { tenant } => format!(
                "restore the differing objects in {} from a backup, or delete the ledger rows of the migrations that created them from its {} table and run: {}",
                self.container(tenant),
                self.ledger.table(),
                migrate(tenant)
            ),
            Recovery::VerifyDeep { tenant } => {
                self.run(&format!("verify --deep --tenant {tenant}"))
            }
            other => other.to_string(),
        }
    }
}

/// `--ledger` and `--django-apps` as this run was given them, when the
/// ledger is another tool's.
fn ledger_options(global: &Global) -> Vec<String> {
    let mut options = Vec::new();
    if global.ledger.is_foreign() {
        options.extend(["--ledger".into(), global.ledger.to_string()]);
    }
    if !global.django_apps.is_empty() {
        options.extend(["--django-apps".into(), quote(&global.django_apps.join(","))]);
    }
    options
}

/// The command `migrate --exec` runs: `TENANTGATE_EXEC` when set, else,
/// for Django, django-tenants' own per-schema migration.
fn exec_option(global: &Global) -> Option<String> {
    match std::env::var("TENANTGATE_EXEC")
        .ok()
        .filter(|c| !c.is_empty())
    {
        Some(command) if global.ledger.is_foreign() => Some(command),
        _ if global.ledger == LedgerKind::Django => {
            Some("python manage.py migrate_schemas --schema={schema}".into())
        }
        _ => None,
    }
}

/// Quotes a word for a POSIX shell when it needs it.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@%,".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_only_what_a_shell_would_split() {
        assert_eq!(super::quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(super::quote("my data"), "'my data'");
        assert_eq!(super::quote("it's"), "'it'\\''s'");
    }
}
