//! `tenantgate demo`: the whole product on the embedded store, no server
//! to install. Three tenants of the messages app; one was provisioned by
//! release 1 and missed release 2's migration (the incident, reproduced);
//! the guard answers 503 for it until the printed command heals it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use tenantgate::{
    backend::sqlite::DataDir,
    fleet::{self, FleetOptions},
    provision, Backend, Domain, Error, MigrationFolder, Recovery, TenantName,
};
use tenantgate_demo::Store;
use tenantgate_http::{GuardConfig, RecoveryText};
use tokio_util::sync::CancellationToken;

use crate::{
    args::{DemoArgs, Global},
    cli_error::CliError,
    exit,
    recovery::Invocation,
};

/// The demo tenants; the last one is left a migration behind.
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const BEHIND: &str = "initech";

/// What release 1 of the app wrote: users, and no status rows (the status
/// table arrives with release 2).
const RELEASE_1_DATA: &str =
    "INSERT INTO users (username, display_name) VALUES ('alice', 'Alice Martin'), ('bob', 'Bob Chen')
     ON CONFLICT (username) DO NOTHING;";

/// What release 2 users wrote: a conversation with a message from Bob.
const RELEASE_2_DATA: &str = "
    INSERT INTO conversations (title) SELECT 'Launch plan'
     WHERE NOT EXISTS (SELECT 1 FROM conversations WHERE title = 'Launch plan');
    INSERT OR IGNORE INTO participants (conversation_id, user_id)
    SELECT c.id, u.id FROM conversations c, users u WHERE c.title = 'Launch plan';
    INSERT INTO messages (conversation_id, sender_id, body)
    SELECT c.id, u.id, 'The draft is ready for review.' FROM conversations c JOIN users u ON u.username = 'bob'
     WHERE c.title = 'Launch plan' AND NOT EXISTS (SELECT 1 FROM messages);";

pub(crate) async fn run(
    global: &Global,
    args: DemoArgs,
    cancel: &CancellationToken,
) -> Result<u8, CliError> {
    let url = global.url();
    let data = PathBuf::from(tenantgate::backend::sqlite_folder(&url).ok_or_else(|| {
        CliError::Usage(
            "the demo runs on the embedded SQLite store: pass --data DIR or no database URL".into(),
        )
    })?);
    if global.data.is_none() && global.database_url.is_none() {
        start_fresh(&data)?;
    }
    let folder = tenantgate_demo::folder(Store::Sqlite);
    let migrations = export_migrations(&data, &folder)?;
    let backend: Arc<dyn Backend> = super::backend(global).await?.into();
    let say = |line: &str| {
        if !global.json {
            println!("{line}");
        }
    };
    say(&format!(
        "tenantgate demo: data folder {} (SQLite: one file per tenant, nothing to install)",
        data.display()
    ));
    let files = DataDir::new(&data);
    tokio::select! {
        built = build_scenario(backend.as_ref(), &folder, &files, &say) => built?,
        () = cancel.cancelled() => return Err(Error::Interrupted.into()),
    }
    let rows = rows(backend.as_ref(), &folder).await?;
    let heal = healer(global, &data, &migrations).command(&Recovery::MigrateShared);
    if global.json {
        let tenants: Vec<_> = rows.iter().map(Row::to_json).collect();
        println!(
            "{}",
            serde_json::json!({ "data": data, "tenants": tenants, "behind": BEHIND, "heal": heal })
        );
        if args.no_serve {
            return Ok(exit::OK);
        }
    } else {
        print_table(&rows);
    }
    say(&format!(
        "\n{BEHIND} was provisioned by release 1 and missed release 2's migration 0002_messages.sql:\n\
         its user_statuses table does not exist (the incident). Without tenantgate its pages answer 500;\n\
         behind the guard they answer 503 with a recovery page, and the other tenants keep working.\n\
         \nHeal it (in another terminal while the server runs, then reload its page):\n  {heal}"
    ));
    if args.no_serve {
        return Ok(exit::OK);
    }
    let invocation = healer(global, &data, &migrations);
    let config = GuardConfig {
        details: tenantgate_http::DetailPolicy {
            show_details: true,
            token: None,
        },
        retry_after: std::time::Duration::from_secs(5),
        recovery_text: RecoveryText::new(move |recovery| invocation.command(recovery)),
        ..GuardConfig::default()
    };
    let app = super::serve::app(backend, &url, Store::Sqlite, config).await?;
    let (listener, address) = super::guarded::listen(args.listen).await?;
    let port = address.port();
    let ip = address.ip();
    println!(
        "\nServing on http://{address} (Ctrl-C to stop). Open:\n\
         \x20 healthy tenant:  http://acme.localhost:{port}/en/app/messages/\n\
         \x20 broken tenant:   http://{BEHIND}.localhost:{port}/en/app/messages/   (503 until healed)\n\
         \x20 health:          http://{ip}:{port}/health/migrations\n\
         \x20 metrics:         http://{ip}:{port}/metrics\n\
         For tools that do not resolve *.localhost:\n\
         \x20 curl -H 'Host: acme.localhost' http://{address}/en/app/messages/\n\
         \x20 curl -H 'Host: {BEHIND}.localhost' http://{address}/en/app/messages/"
    );
    super::guarded::serve_until(listener, app, cancel, std::time::Duration::from_secs(5)).await?;
    Ok(exit::OK)
}

/// Empties the default data folder of a previous demo run; refuses a
/// folder that holds anything else.
fn start_fresh(data: &Path) -> Result<(), CliError> {
    let Ok(entries) = std::fs::read_dir(data) else {
        return Ok(());
    };
    let ours = |name: &str| {
        [
            "registry.db",
            "shared.db",
            "tenants",
            "orphaned",
            "migrations",
        ]
        .iter()
        .any(|known| {
            name.strip_prefix(known)
                .is_some_and(|rest| ["", "-wal", "-shm", "-journal"].contains(&rest))
        })
    };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if let Some(stranger) = names.iter().find(|n| !ours(n)) {
        return Err(CliError::Usage(format!(
            "{} holds {stranger:?}, which the demo did not make; pass --data DIR to use another folder",
            data.display()
        )));
    }
    for name in names {
        let path = data.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|source| CliError::Io {
            what: format!("cannot clear {}", path.display()),
            source,
        })?;
    }
    Ok(())
}

/// Writes the app's SQLite migration set into the data folder, so the heal
/// command works from any directory.
fn export_migrations(data: &Path, folder: &MigrationFolder) -> Result<PathBuf, CliError> {
    let root = data.join("migrations");
    let write = |sub: &str, file: &str, sql: &str| {
        let dir = root.join(sub);
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(file), sql))
            .map_err(|source| CliError::Io {
                what: format!("cannot write {}", dir.join(file).display()),
                source,
            })
    };
    for m in folder.shared.iter() {
        write("shared", &m.file, &m.sql)?;
    }
    for m in folder.tenant.iter() {
        write("tenant", &m.file, &m.sql)?;
    }
    for b in folder.backfills.values() {
        write("backfills", &format!("{}.sql", b.name), &b.sql)?;
    }
    Ok(root)
}

/// Release 1 provisions every tenant; release 2 migrates all but one.
async fn build_scenario(
    backend: &dyn Backend,
    folder: &MigrationFolder,
    data: &DataDir,
    say: &dyn Fn(&str),
) -> Result<(), CliError> {
    let release_1 = MigrationFolder {
        tenant: folder.tenant.up_to(1),
        ..folder.clone()
    };
    let limits = FleetOptions::default().limits;
    backend.prepare().await?;
    let registered: Vec<TenantName> = backend
        .tenants()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    for name in TENANTS {
        let tenant = TenantName::parse(name)?;
        if !registered.iter().any(|r| r == name) {
            let domain = Domain::parse(&format!("{name}.localhost"))?;
            provision::create_tenant(backend, &release_1, &tenant, &[domain], &limits).await?;
            say(&format!(
                "  release 1: provisioned {name} ({name}.localhost) with 0001_users.sql"
            ));
        }
        seed(data, &tenant, RELEASE_1_DATA).await?;
    }
    let ahead: Vec<TenantName> = TENANTS
        .iter()
        .filter(|t| **t != BEHIND)
        .map(|t| TenantName::parse(t))
        .collect::<Result<_, _>>()?;
    let options = FleetOptions {
        tenants: ahead.clone(),
        ..FleetOptions::default()
    };
    let report = fleet::migrate(
        backend,
        folder,
        &options,
        &|_| {},
        &CancellationToken::new(),
    )
    .await?;
    if !report.all_ready() {
        return Err(CliError::Demo(
            "release 2 did not migrate the demo tenants".into(),
        ));
    }
    for tenant in &ahead {
        seed(data, tenant, RELEASE_2_DATA).await?;
    }
    say(&format!(
        "  release 2: migrated acme and globex with 0002_messages.sql; {BEHIND} was left behind"
    ));
    Ok(())
}

async fn seed(data: &DataDir, tenant: &TenantName, sql: &str) -> Result<(), CliError> {
    tenantgate_demo::run_in_tenant_file(data.tenant(tenant), sql.to_owned())
        .await
        .map_err(|e| CliError::Demo(format!("seeding demo data into {tenant}: {e}")))
}

/// One line of the result table.
struct Row {
    tenant: TenantName,
    domain: String,
    state: &'static str,
    applied: Vec<i64>,
    missing: Vec<String>,
}

impl Row {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tenant": self.tenant,
            "domain": self.domain,
            "state": self.state,
            "applied": self.applied,
            "missing": self.missing,
        })
    }
}

/// Each tenant's domain, state, applied and missing migrations.
async fn rows(backend: &dyn Backend, folder: &MigrationFolder) -> Result<Vec<Row>, Error> {
    Ok(backend
        .tenants()
        .await?
        .into_iter()
        .map(|tenant| Row {
            domain: tenant
                .domains
                .first()
                .map_or("-".into(), |d| d.as_str().to_owned()),
            state: tenant.effective_state(&folder.tenant).as_str(),
            missing: folder
                .tenant
                .iter()
                .filter(|m| !tenant.applied_versions.contains(&m.version))
                .map(|m| m.file.clone())
                .collect(),
            applied: tenant.applied_versions,
            tenant: tenant.name,
        })
        .collect())
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<9} {:<19} {:<8} {:<8} MISSING",
        "TENANT", "DOMAIN", "STATE", "APPLIED"
    );
    for row in rows {
        let applied: Vec<String> = row.applied.iter().map(i64::to_string).collect();
        println!(
            "{:<9} {:<19} {:<8} {:<8} {}",
            row.tenant,
            row.domain,
            row.state,
            applied.join(","),
            if row.missing.is_empty() {
                "-".into()
            } else {
                row.missing.join(", ")
            }
        );
    }
}

/// How the demo spells a recovery: absolute paths to the program, the data
/// folder and the exported migrations, so it runs as printed from any folder.
fn healer(global: &Global, data: &Path, migrations: &Path) -> Invocation {
    Invocation::absolute(&Global {
        data: Some(data.to_path_buf()),
        database_url: None,
        migrations: migrations.to_path_buf(),
        ..global.clone()
    })
}
