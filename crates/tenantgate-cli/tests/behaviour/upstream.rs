//! An app to put behind `tenantgate proxy`: it echoes the request it
//! received as JSON, logs every request, and has routes that are slow,
//! stall mid-body, stream large bodies both ways, and upgrade the
//! connection (echoing raw bytes back, as a WebSocket echo would).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running test upstream.
pub(crate) struct Upstream {
    pub(crate) address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    /// Starts the app on a free loopback port.
    pub(crate) async fn start() -> Self {
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let logged = log.clone();
        let app = Router::new().fallback(move |request: Request| {
            let log = logged.clone();
            async move { answer(request, &log).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, log }
    }

    /// `host path` of every request received so far.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

async fn answer(mut request: Request, log: &Mutex<Vec<String>>) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = request.uri().path().to_owned();
    log.lock().unwrap().push(format!("{host} {path}"));
    match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late".into_response()
        }
        "/stall" => {
            let first =
                futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("part")) });
            let never = futures::stream::pending();
            Body::from_stream(first.chain(never)).into_response()
        }
        "/upload" => {
            let mut received = 0u64;
            let mut body = request.into_body().into_data_stream();
            while let Some(Ok(chunk)) = body.next().await {
                received += chunk.len() as u64;
            }
            received.to_string().into_response()
        }
        "/ws" => upgrade(&mut request),
        _ if path.starts_with("/download/") => {
            let total: u64 = path["/download/".len()..].parse().unwrap_or(0);
            download(total)
        }
        _ => {
            // A header sent on several lines is echoed as one, its values
            // joined in order (RFC 9110 §5.3), so none is hidden.
            let mut headers = serde_json::Map::new();
            for name in request.headers().keys() {
                let values: Vec<&str> = request
                    .headers()
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap_or(""))
                    .collect();
                headers.insert(name.as_str().to_owned(), values.join(", ").into());
            }
            axum::Json(serde_json::json!({
                "method": request.method().as_str(),
                "path": path,
                "headers": headers,
            }))
            .into_response()
        }
    }
}

/// `total` bytes in 64 KiB chunks, made as they are sent.
fn download(total: u64) -> Response {
    const CHUNK: u64 = 64 * 1024;
    let chunks = futures::stream::unfold(total, |left| async move {
        (left > 0).then(|| {
            let size = left.min(CHUNK);
            (
                Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; size as usize])),
                left - size,
            )
        })
    });
    Body::from_stream(chunks).into_response()
}

/// Answers 101 and echoes every byte the client sends afterwards.
fn upgrade(request: &mut Request) -> Response {
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        let mut buffer = [0u8; 1024];
        while let Ok(n) = io.read(&mut buffer).await {
            if n == 0 || io.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .body(Body::empty())
        .unwrap()
}
