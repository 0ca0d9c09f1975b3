//! The guard: decision cost per request, HTTP throughput through it, and
//! the memory its snapshot takes. No database needed: the snapshot is built
//! from synthetic registry rows shaped like real ones.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{body::Body, http::Request, response::Response, routing::get, Router};
use serde_json::json;
use tenantgate::{readiness::RequiredSet, MigrationSet};
use tenantgate_http::{GuardLayer, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::Service;

use crate::{
    memory,
    synthetic::{hosts, state, tenants},
    Args,
};

/// Nanoseconds per request through `service`, the median of several batches.
fn per_request<S>(runtime: &tokio::runtime::Runtime, mut service: S, hosts: &[String]) -> f64
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    const BATCH: usize = 20_000;
    let mut samples: Vec<f64> = (0..9)
        .map(|_| {
            let started = Instant::now();
            runtime.block_on(async {
                for i in 0..BATCH {
                    let request = Request::get("/")
                        .header("host", &hosts[i % hosts.len()])
                        .body(Body::empty())
                        .unwrap();
                    let response = service.call(request).await.unwrap();
                    std::hint::black_box(response);
                }
            });
            started.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The guard's cost per request over an inner service that does nothing.
pub(crate) fn decision(sizes: &[usize], set: &MigrationSet) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let inner = tower::service_fn(|_request: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    });
    for &n in sizes {
        let guarded = GuardLayer::new(state(n, set));
        let hosts = hosts(n);
        let bare = per_request(&runtime, inner, &hosts);
        let with_guard = per_request(&runtime, tower::Layer::layer(&guarded, inner), &hosts);
        println!(
            "{}",
            json!({
                "scenario": "guard_decision",
                "tenants": n,
                "without_guard_ns": (bare * 10.0).round() / 10.0,
                "with_guard_ns": (with_guard * 10.0).round() / 10.0,
                "guard_overhead_ns": ((with_guard - bare) * 10.0).round() / 10.0,
            })
        );
    }
    Ok(())
}

/// Live bytes the snapshot of `n` tenants keeps, after its inputs are dropped.
pub(crate) fn memory(sizes: &[usize], set: &MigrationSet) {
    for &n in sizes {
        let required = RequiredSet {
            tenant: set.clone(),
            shared: MigrationSet::default(),
        };
        let before = memory::live_bytes();
        // The registry rows are consumed (and freed) by the build: what
        // remains is the snapshot.
        let snapshot = Snapshot::build(tenants(n, set), &[], &required);
        let after = memory::live_bytes();
        let domains: usize = snapshot.tenants().map(|t| t.domains.len()).sum();
        std::hint::black_box(&snapshot);
        println!(
            "{}",
            json!({
                "scenario": "snapshot_memory",
                "tenants": n,
                "domains": domains,
                "snapshot_mb": ((after.saturating_sub(before)) as f64 / 1_048_576.0 * 100.0).round() / 100.0,
                "bytes_per_tenant": (after.saturating_sub(before)) / n.max(1),
            })
        );
    }
}

/// Requests per second through a real server, with and without the guard,
/// in interleaved runs; server and client share the machine's cores.
pub(crate) async fn throughput(args: &Args, set: &MigrationSet) -> anyhow::Result<()> {
    let n = *args.snapshot_sizes.iter().max().unwrap_or(&10);
    let app = || Router::new().route("/", get(|| async { "ok" }));
    let guarded = serve(app().layer(GuardLayer::new(state(n, set))), "bench-guarded")?;
    let bare = serve(app(), "bench-bare")?;
    let hosts = Arc::new(hosts(n));
    let seconds = Duration::from_secs_f64(args.http_seconds);
    let (mut with_guard, mut without) = (Vec::new(), Vec::new());
    for run in 0..args.http_runs {
        eprintln!("[bench] http: run {}/{}", run + 1, args.http_runs);
        without.push(load(bare, &hosts, seconds).await?);
        with_guard.push(load(guarded, &hosts, seconds).await?);
    }
    let median_and_spread = |v: &[Run], f: fn(&Run) -> f64| {
        let mut values: Vec<f64> = v.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        (
            values[values.len() / 2],
            values[0],
            values[values.len() - 1],
        )
    };
    let (g, g_low, g_high) = median_and_spread(&with_guard, |r| r.rps);
    let (b, b_low, b_high) = median_and_spread(&without, |r| r.rps);
    let (g_cpu, g_cpu_low, g_cpu_high) = median_and_spread(&with_guard, |r| r.server_cpu_ns);
    let (b_cpu, b_cpu_low, b_cpu_high) = median_and_spread(&without, |r| r.server_cpu_ns);
    println!(
        "{}",
        json!({
            "scenario": "http_throughput",
            "tenants": n,
            "runs": args.http_runs,
            "seconds_per_run": args.http_seconds,
            "with_guard_rps": g.round(),
            "without_guard_rps": b.round(),
            "with_guard_spread": (g_low.round(), g_high.round()),
            "without_guard_spread": (b_low.round(), b_high.round()),
            "kept": (g / b * 1000.0).round() / 1000.0,
            "with_guard_server_cpu_ns_per_request": g_cpu.round(),
            "without_guard_server_cpu_ns_per_request": b_cpu.round(),
            "with_guard_server_cpu_spread": (g_cpu_low.round(), g_cpu_high.round()),
            "without_guard_server_cpu_spread": (b_cpu_low.round(), b_cpu_high.round()),
            "kept_by_server_cpu": (b_cpu / g_cpu * 1000.0).round() / 1000.0,
        })
    );
    Ok(())
}

/// Serves `app` on a free port from a runtime of its own (one worker),
/// on threads named `name`.
fn serve(app: Router, name: &'static str) -> anyhow::Result<Server> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(name)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app.into_make_service())
                    .await
                    .expect("serve");
            });
        })?;
    Ok(Server { address, name })
}

/// A server started by [`serve`].
#[derive(Clone, Copy)]
struct Server {
    address: SocketAddr,
    /// The name of its threads.
    name: &'static str,
}

impl Server {
    /// Nanoseconds its threads have run on a CPU (Linux schedstat).
    fn cpu_ns(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return 0;
        };
        tasks
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim_end() == self.name)
            })
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}

/// One load run against a server.
struct Run {
    rps: f64,
    /// The server's CPU time per request: its throughput's cost, which the
    /// load generator sharing the machine does not blur.
    server_cpu_ns: f64,
}

/// Keep-alive load from 32 connections for `duration`.
async fn load(server: Server, hosts: &Arc<Vec<String>>, duration: Duration) -> anyhow::Result<Run> {
    let address = server.address;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..32 {
        let (done, stop, hosts) = (done.clone(), stop.clone(), hosts.clone());
        clients.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let mut buffer = vec![0u8; 4096];
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", hosts[i % hosts.len()]);
                i += 32;
                stream.write_all(request.as_bytes()).await?;
                read_response(&mut stream, &mut buffer).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let (started, cpu_before, done_before) = (
        Instant::now(),
        server.cpu_ns(),
        done.load(Ordering::Relaxed),
    );
    tokio::time::sleep(duration).await;
    let (count, cpu) = (
        done.load(Ordering::Relaxed) - done_before,
        server.cpu_ns() - cpu_before,
    );
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await??;
    }
    Ok(Run {
        rps: count as f64 / elapsed.as_secs_f64(),
        server_cpu_ns: cpu as f64 / count.max(1) as f64,
    })
}

/// Reads one response with a Content-Length body.
async fn read_response(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            buffer.resize(buffer.len() * 2, 0);
        }
        let read = stream.read(&mut buffer[filled..]).await?;
        anyhow::ensure!(read > 0, "the server closed the connection");
        filled += read;
        let text = &buffer[..filled];
        if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&text[..end])?;
            anyhow::ensure!(
                head.starts_with("HTTP/1.1 200"),
                "unexpected response: {head}"
            );
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse())
                })
                .transpose()?
                .unwrap_or(0);
            if filled >= end + 4 + length {
                return Ok(());
            }
        }
    }
}
