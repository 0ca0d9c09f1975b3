//! The floor of any reverse proxy built on hyper, for `scripts/bench-proxy`:
//! hyper's HTTP/1 server and client and nothing else. No guard, no header
//! rewriting, no pool (each client connection keeps one upstream
//! connection of its own), no timeouts; the same worker model as `tenantgate
//! proxy` (one single-threaded runtime per core, sharing the listener) and
//! the same allocator.
//!
//! `hyper-floor LISTEN_ADDR UPSTREAM_ADDR`
//!
//! What it measures: how close to nginx a proxy on hyper can come on this
//! machine, so that tenantgate's own cost is the gap between it and this.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use hyper::{body::Incoming, client::conn::http1::SendRequest, Request};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hyper-floor LISTEN_ADDR UPSTREAM_ADDR";
    let listen: SocketAddr = args.next().context(usage)?.parse()?;
    let upstream: SocketAddr = args.next().context(usage)?.parse()?;
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let listener = listener.try_clone()?;
            Ok(std::thread::spawn(move || worker(listener, upstream)))
        })
        .collect::<std::io::Result<_>>()?;
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
    }
    Ok(())
}

/// Accepts and serves connections on a single-threaded runtime.
fn worker(listener: std::net::TcpListener, upstream: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                if let Err(e) = proxy_connection(stream, upstream).await {
                    eprintln!("hyper-floor: {e}");
                }
            });
        }
    })
}

/// Serves one client connection, forwarding each request unchanged over one
/// upstream connection opened for it.
async fn proxy_connection(client: TcpStream, upstream: SocketAddr) -> anyhow::Result<()> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    // HTTP/1 answers one request at a time: the lock is never contended.
    let sender: Arc<Mutex<SendRequest<Incoming>>> = Arc::new(Mutex::new(sender));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        sender
            .lock()
            .expect("never poisoned: nothing panics while it is held")
            .send_request(request)
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await?;
    Ok(())
}
