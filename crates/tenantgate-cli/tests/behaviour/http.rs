//! A running `tenantgate serve`, a raw HTTP/1.1 client (so hostile requests
//! can be sent exactly as written), and a loopback TCP proxy that can cut a
//! real connection.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    process::{Child, ChildStderr},
    task::JoinHandle,
};

use crate::harness::Harness;

/// A server process on a free local port.
pub(crate) struct Server {
    /// The server; killed when the test drops it.
    process: Child,
    pub(crate) address: SocketAddr,
    /// The proxy's admin address (probes, health, metrics).
    pub(crate) admin: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.process.id().expect("a running server")
    }

    /// Sends SIGTERM and waits for the exit code.
    pub(crate) async fn terminate(&mut self) -> Option<i32> {
        self.signal_terminate()?;
        self.exit_code().await
    }

    /// Sends SIGTERM and returns at once.
    pub(crate) fn signal_terminate(&self) -> Option<()> {
        let pid = self.process.id()?;
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .ok()?;
        Some(())
    }

    /// Waits (up to 15 s) for the server to exit, and its exit code.
    pub(crate) async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(15), self.process.wait())
            .await
            .ok()?
            .ok()?
            .code()
    }

    /// Everything the server wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Asserts that `/metrics` holds `line`.
    pub(crate) async fn expect_metric(&self, line: &str) {
        let metrics = self.get("", "/metrics", "").await;
        assert!(metrics.body.contains(line), "{line} in:\n{}", metrics.body);
    }

    /// Sends `GET path` with `Host: host` (and optional extra header lines).
    pub(crate) async fn get(&self, host: &str, path: &str, extra: &str) -> Response {
        let host_line = if host.is_empty() {
            String::new()
        } else {
            format!("Host: {host}\r\n")
        };
        self.raw(&format!(
            "GET {path} HTTP/1.1\r\n{host_line}{extra}Connection: close\r\n\r\n"
        ))
        .await
    }

    /// Sends `GET path` for HTML, asking for JSON when `json`.
    pub(crate) async fn page(&self, host: &str, path: &str, json: bool) -> Response {
        self.get(
            host,
            path,
            if json {
                "Accept: application/json\r\n"
            } else {
                "Accept: text/html\r\n"
            },
        )
        .await
    }

    /// Sends bytes as written and reads the whole response.
    pub(crate) async fn raw(&self, request: &str) -> Response {
        send(self.address, request.as_bytes()).await
    }
}

/// Sends bytes to `address` and reads the response until the server closes.
pub(crate) async fn send(address: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(address)
        .await
        .expect("connect to the server");
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes)).await;
    Response::parse(&bytes)
}

/// A parsed HTTP response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Response {
    fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Self {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Harness {
    /// Starts `tenantgate serve` on a free port with `url` as its database;
    /// returns once it listens, or the exit status and stderr if it stopped.
    pub(crate) async fn serve_with(
        &self,
        url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, (i32, String)> {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        self.start_server(url, &all, env).await
    }

    /// Starts `tenantgate proxy` in front of `upstream` on free ports (the
    /// app's and the admin one); expects it to start.
    pub(crate) async fn proxy(&self, upstream: SocketAddr, args: &[&str]) -> Server {
        self.proxy_with_env(upstream, args, &[]).await
    }

    /// [`Self::proxy`] with more environment.
    pub(crate) async fn proxy_with_env(
        &self,
        upstream: SocketAddr,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let url = self.url.clone();
        self.proxy_at(&url, upstream, args, env).await
    }

    /// [`Self::proxy_with_env`] on another store.
    pub(crate) async fn proxy_at(
        &self,
        url: &str,
        upstream: SocketAddr,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let upstream = format!("http://{upstream}");
        let mut all = vec![
            "proxy",
            "--upstream",
            &upstream,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ];
        all.extend_from_slice(args);
        self.start_server(url, &all, env)
            .await
            .unwrap_or_else(|(code, stderr)| panic!("proxy exited {code}: {stderr}"))
    }

    /// Runs the binary with `args` as a server; returns once it printed
    /// where it listens (and, for the proxy, its admin address).
    async fn start_server(
        &self,
        url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, (i32, String)> {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"));
        command
            .args(args)
            .env("DATABASE_URL", url)
            .env("TENANTGATE_MIGRATIONS", self.migrations())
            .env("TENANTGATE_ADMIN_TOKEN", "test-admin-token")
            .env_remove("DISABLE_MIGRATION_CHECK")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn tenantgate");
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(child.stderr.take().unwrap(), stderr.clone());
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line)).await;
        if let Some(address) = line.trim().strip_prefix("listening on http://") {
            let mut admin = None;
            if args.first() == Some(&"proxy") {
                let mut second = String::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut second))
                        .await;
                admin = second
                    .trim()
                    .strip_prefix("admin on http://")
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|a| a.parse().ok());
            }
            return Ok(Server {
                process: child,
                address: address.parse().unwrap(),
                admin,
                stderr,
            });
        }
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let code = status
            .ok()
            .and_then(|s| s.ok())
            .and_then(|s| s.code())
            .unwrap_or(-1);
        let text = stderr.lock().unwrap().clone();
        assert!(
            read.is_ok(),
            "the server neither listened nor exited: {text}"
        );
        Err((code, text))
    }

    /// `serve_with` on the scenario's own database, expecting it to start.
    pub(crate) async fn serve(&self, args: &[&str], env: &[(&str, &str)]) -> Server {
        let url = self.url.clone();
        self.serve_with(&url, args, env)
            .await
            .unwrap_or_else(|(code, stderr)| panic!("serve exited {code}: {stderr}"))
    }
}

fn collect(stderr: ChildStderr, into: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap().push_str(&(line + "\n"));
        }
    });
}

/// A loopback TCP proxy to the test cluster whose link can be cut and restored.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub(crate) async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(inbound); // refused while cut
                    continue;
                }
                accept_connections
                    .lock()
                    .unwrap()
                    .push(tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    }));
            }
        });
        Self {
            port,
            up,
            connections,
        }
    }

    /// Drops every proxied connection and refuses new ones.
    pub(crate) fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Accepts connections again.
    pub(crate) fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Opens `url` in headless Chromium: returns the rendered DOM, and keeps a
/// phone-sized screenshot at `target/test-artifacts/<screenshot>`.
pub(crate) async fn render_in_browser(url: &str, screenshot: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join(screenshot);
    let _ = std::fs::remove_file(&screenshot);
    let chromium = |extra: Vec<String>| {
        let mut command = tokio::process::Command::new("chromium");
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .kill_on_drop(true);
        command
    };
    let dom = chromium(vec!["--dump-dom".into()])
        .output()
        .await
        .expect("chromium is installed by scripts/test");
    chromium(vec![
        format!("--screenshot={}", screenshot.display()),
        "--window-size=412,915".into(),
    ])
    .output()
    .await
    .unwrap();
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 1000),
        "a screenshot at {}",
        screenshot.display()
    );
    String::from_utf8_lossy(&dom.stdout).into_owned()
}
