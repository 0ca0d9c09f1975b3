//! A real django-tenants fleet (`examples/django-tenants`, Django and
//! django-tenants from PyPI): built and partly unmigrated by Django itself,
//! adopted from its own tenant and domain tables, served by Django's own
//! server behind `tenantgate proxy`, and healed by Django's own
//! `migrate_schemas` run through `tenantgate migrate --exec`, with neither
//! process restarted.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    harness::{eventually, Harness},
    http::Response,
    only_on,
};

// django-tenants runs on PostgreSQL schemas only.
only_on!(postgres: a_django_tenants_fleet_is_adopted_guarded_and_healed);

/// The tenants and domains django-tenants keeps, as `adopt --from-sql` reads them.
const TENANTS_AND_DOMAINS: &str = "SELECT c.schema_name, d.domain FROM public.customers_client c \
     LEFT JOIN public.customers_domain d ON d.tenant_id = c.id WHERE c.schema_name <> 'public'";

/// The Python of the virtual environment `scripts/test` prepares.
fn python() -> String {
    std::env::var("TENANTGATE_TEST_DJANGO_PYTHON").expect(
        "TENANTGATE_TEST_DJANGO_PYTHON is not set: run the suite with ./scripts/test, which installs Django and django-tenants (scripts/django-venv)",
    )
}

/// A copy of the example project, so Django's files stay out of the repository.
fn project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/django-tenants");
    copy_tree(&source, dir.path());
    let path = dir.path().to_owned();
    (dir, path)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" || name == ".venv" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// Runs `manage.py` with `args` against the harness's database.
async fn manage(h: &Harness, project: &Path, args: &[&str], stdin: Option<&Path>) {
    let mut command = tokio::process::Command::new(python());
    command
        .arg(project.join("manage.py"))
        .args(args)
        .current_dir(project)
        .env("DATABASE_URL", &h.url)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    if let Some(file) = stdin {
        command.stdin(std::fs::File::open(file).unwrap());
    }
    let output = command.output().await.expect("run manage.py");
    assert!(
        output.status.success(),
        "manage.py {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Django's development server on a free port, its stderr collected.
struct DjangoServer {
    _process: tokio::process::Child,
    address: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl DjangoServer {
    async fn start(h: &Harness, project: &Path) -> Self {
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut process = tokio::process::Command::new(python())
            .arg(project.join("manage.py"))
            .args(["runserver", &address.to_string(), "--noreload"])
            .current_dir(project)
            .env("DATABASE_URL", &h.url)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start Django");
        let log = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(process.stderr.take().unwrap()).lines();
        let into = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                into.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let listening = eventually(Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(address).await.is_ok()
        })
        .await;
        assert!(listening, "Django did not start: {}", log.lock().unwrap());
        Self {
            _process: process,
            address,
            log,
        }
    }

    /// Whether Django received a request for `host`.
    fn saw(&self, host: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .contains(&format!("django saw host={host} "))
    }
}

async fn get(address: SocketAddr, host: &str) -> Response {
    crate::http::send(
        address,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
}

async fn a_django_tenants_fleet_is_adopted_guarded_and_healed(h: Harness) {
    let (_dir, project) = project();
    // The fleet, built by django-tenants; globex misses its last migration,
    // unapplied by Django itself.
    manage(&h, &project, &["migrate_schemas", "--shared"], None).await;
    manage(
        &h,
        &project,
        &["shell"],
        Some(&project.join("create_fleet.py")),
    )
    .await;
    manage(
        &h,
        &project,
        &["migrate_schemas", "--schema=globex", "shop", "0001"],
        None,
    )
    .await;
    let project_dir = project.display().to_string();
    let env = [
        ("TENANTGATE_LEDGER", "django"),
        ("TENANTGATE_DJANGO_APPS", "shop"),
        ("TENANTGATE_MIGRATIONS", project_dir.as_str()),
    ];

    // A dry run reports and writes nothing.
    let dry = h
        .run_with_env(&["adopt", "--from-sql", TENANTS_AND_DOMAINS], &env)
        .await;
    dry.expect(0);
    assert!(dry.stdout.contains("would adopt"), "{}", dry.stdout);
    let registered: i64 = h
        .db()
        .query_one("SELECT count(*) FROM tenantgate.tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(registered, 0, "a dry run registered tenants");
    let adopted = h
        .run_with_env(
            &[
                "--json",
                "adopt",
                "--from-sql",
                TENANTS_AND_DOMAINS,
                "--apply",
            ],
            &env,
        )
        .await;
    adopted.expect(0);
    let report = adopted.json();
    let adoptees = report["adopted"].as_array().unwrap();
    assert_eq!(adoptees.len(), 3, "{report}");
    let globex = adoptees.iter().find(|a| a["tenant"] == "globex").unwrap();
    assert_eq!(globex["state"], "pending");
    assert_eq!(globex["missing"][0]["key"], "shop.0002_userstatus");
    assert_eq!(globex["domains"][0], "globex.example.test");

    let django = DjangoServer::start(&h, &project).await;
    let proxy = h
        .proxy_with_env(
            django.address,
            &[
                "--allow-degraded",
                "--pass-host",
                "public.example.test",
                "--ledger-poll",
                "200ms",
            ],
            &env,
        )
        .await;

    let acme = get(proxy.address, "acme.example.test").await;
    assert_eq!(acme.status, 200, "{}", acme.body);
    // The view's JSON: the schema Django used, and the tenant tenantgate named.
    assert!(acme.body.contains(r#""tenant": "acme""#), "{}", acme.body);
    assert!(acme.body.contains(r#""seen_by": "acme""#), "{}", acme.body);
    assert_eq!(get(proxy.address, "initech.example.test").await.status, 200);
    let public = get(proxy.address, "public.example.test").await;
    assert_eq!(public.status, 200);
    assert!(public.body.contains("public site"), "{}", public.body);
    let blocked = get(proxy.address, "globex.example.test").await;
    assert_eq!(blocked.status, 503, "{}", blocked.body);
    assert!(
        blocked.body.contains("shop.0002_userstatus"),
        "{}",
        blocked.body
    );
    assert!(django.saw("acme.example.test"), "the positive control");
    assert!(
        !django.saw("globex.example.test"),
        "Django received a blocked tenant's request:\n{}",
        django.log.lock().unwrap()
    );

    // Healed by Django's own command, for the one tenant that is behind.
    let python = python();
    let command = format!(
        "{python} {} migrate_schemas --schema={{schema}}",
        project.join("manage.py").display()
    );
    let healed = h
        .run_with_env(&["--json", "migrate", "--exec", &command], &env)
        .await;
    healed.expect(0);
    let report = healed.json();
    let tenants = report["tenants"].as_array().unwrap();
    let worked: Vec<&serde_json::Value> = tenants
        .iter()
        .filter(|t| t["outcome"] != "up_to_date")
        .collect();
    assert_eq!(worked.len(), 1, "only globex was behind: {report}");
    assert_eq!(worked[0]["tenant"], "globex");
    assert_eq!(worked[0]["outcome"], "migrated");
    assert_eq!(
        worked[0]["command"]["recorded"][0], "shop.0002_userstatus",
        "{report}"
    );

    let served = eventually(Duration::from_secs(10), || async {
        get(proxy.address, "globex.example.test").await.status == 200
    })
    .await;
    assert!(
        served,
        "globex still blocked after healing: {}",
        proxy.stderr()
    );
    assert!(django.saw("globex.example.test"));
    assert_eq!(
        h.run_with_env(&["verify"], &env).await.code,
        0,
        "every tenant verifies after healing"
    );
}
