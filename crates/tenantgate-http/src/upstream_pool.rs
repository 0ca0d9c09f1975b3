//! Keep-alive HTTP/1 connections to the upstream, one pool per proxy
//! worker: a connection goes back to the pool when its response body has
//! been read to the end, and is dropped (closed after its response) when
//! the client went away first.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    task::{Context, Poll},
};

use axum::body::Body;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::{
    body::{Bytes, Incoming},
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;

/// The most a connection buffers in either direction, client side and
/// upstream side: a body faster than its reader waits at this bound
/// instead of growing hyper's buffers (about 400 KiB each by default),
/// which kept a streaming proxy's peak memory 10–15 MB higher and
/// varying from run to run.
pub(crate) const MAX_BUFFER: usize = 64 * 1024;

/// Why a request did not get a response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened.
    Connect(std::io::Error),
    /// The connection failed before the response headers arrived.
    Reset(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "cannot connect: {e}"),
            SendError::Reset(e) => write!(f, "the connection failed: {e}"),
        }
    }
}

/// Idle connections to one upstream address.
pub(crate) struct UpstreamPool {
    address: String,
    idle: Mutex<Vec<SendRequest<Body>>>,
    max_idle: usize,
}

impl UpstreamPool {
    pub(crate) fn new(address: String, max_idle: usize) -> Arc<Self> {
        Arc::new(Self {
            address,
            idle: Mutex::new(Vec::new()),
            max_idle,
        })
    }

    /// Sends `request` on an idle connection, or a new one; a request an
    /// idle connection could not take (closed meanwhile) is sent again on a
    /// new connection.
    pub(crate) async fn send(
        self: &Arc<Self>,
        request: hyper::Request<Body>,
    ) -> Result<hyper::Response<PooledBody>, SendError> {
        let request = match self.checkout() {
            Some(mut sender) => match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.lend(response, sender)),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) => unsent,
                    None => return Err(SendError::Reset(failed.into_error())),
                },
            },
            None => request,
        };
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(SendError::Reset)?;
        Ok(self.lend(response, sender))
    }

    /// An idle connection ready for a request, dropping closed ones.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(sender) = idle.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(MAX_BUFFER)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Reset)?;
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        Ok(sender)
    }

    /// The response, with its connection returned to the pool once the body
    /// has been read to the end.
    fn lend(
        self: &Arc<Self>,
        response: hyper::Response<Incoming>,
        sender: SendRequest<Body>,
    ) -> hyper::Response<PooledBody> {
        // A body with nothing to read is never polled to its end.
        let lent = if response.body().is_end_stream() {
            self.give_back(sender);
            None
        } else {
            Some((sender, Arc::downgrade(self)))
        };
        response.map(|body| PooledBody { inner: body, lent })
    }

    fn give_back(&self, sender: SendRequest<Body>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }
}

pin_project! {
    /// An upstream response body that returns its connection to the pool
    /// when read to the end.
    pub(crate) struct PooledBody {
        #[pin]
        inner: Incoming,
        lent: Option<(SendRequest<Body>, Weak<UpstreamPool>)>,
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let frame = this.inner.as_mut().poll_frame(cx);
        // The reader may stop at the last frame without asking for the end.
        let finished = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if finished {
            if let Some((sender, pool)) = this.lent.take() {
                if let Some(pool) = pool.upgrade() {
                    pool.give_back(sender);
                }
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
