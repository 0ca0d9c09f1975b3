//! Closing a worker's connections gracefully at shutdown, at no cost per
//! request: a connection registers its task's waker once, and each wake
//! reads one flag (hyper-util's `GracefulShutdown` polls a watch channel on
//! every wake of every connection).
//!
//! The guarantee: once [`Drain::shutdown`] has begun, every connection
//! watched before it is told to finish (the request in flight is answered,
//! an idle keep-alive connection is closed), and `shutdown` returns when
//! the last of them has ended.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::{Context, Poll, Waker},
};

use pin_project_lite::pin_project;
use tokio::sync::Notify;

/// A connection that can be asked to finish what it is doing and close.
pub(crate) trait Graceful: Future {
    /// Stops taking new requests; the one in flight is still answered.
    fn finish(self: Pin<&mut Self>);
}

impl<C: hyper_util::server::graceful::GracefulConnection> Graceful for C {
    fn finish(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// The connections of one worker, and whether they are being closed.
#[derive(Default)]
pub(crate) struct Drain {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    stopping: AtomicBool,
    /// The task waker of each open connection that has been polled.
    wakers: Mutex<HashMap<u64, Waker>>,
    next_id: AtomicU64,
    open: AtomicUsize,
    all_closed: Notify,
}

impl Shared {
    fn wakers(&self) -> MutexGuard<'_, HashMap<u64, Waker>> {
        self.wakers
            .lock()
            .expect("never poisoned: no code panics while holding it")
    }
}

impl Drain {
    /// `connection`, closed gracefully once [`Self::shutdown`] begins.
    pub(crate) fn watch<C: Graceful>(&self, connection: C) -> Draining<C> {
        self.shared.open.fetch_add(1, Ordering::AcqRel);
        Draining {
            connection,
            guard: Registration {
                shared: self.shared.clone(),
                id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
                waker: None,
            },
            finishing: false,
        }
    }

    /// Tells every watched connection to finish, and returns once all
    /// have ended.
    pub(crate) async fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        // A connection registers before it reads the flag: one registered
        // after this lock reads it set; one registered before is woken.
        let wakers: Vec<Waker> = self.shared.wakers().values().cloned().collect();
        wakers.into_iter().for_each(Waker::wake);
        loop {
            let closed = self.shared.all_closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.shared.open.load(Ordering::Acquire) == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// A connection's place in its [`Drain`]; leaving it (the connection
/// ended or was dropped) may end the drain.
struct Registration {
    shared: Arc<Shared>,
    id: u64,
    /// The waker last registered, to register again only when it changes.
    waker: Option<Waker>,
}

impl Registration {
    /// Whether the drain has begun, with `waker` registered to hear of it.
    fn stopping(&mut self, waker: &Waker) -> bool {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.shared.wakers().insert(self.id, waker.clone());
            self.waker = Some(waker.clone());
        }
        self.shared.stopping.load(Ordering::Acquire)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.waker.is_some() {
            self.shared.wakers().remove(&self.id);
        }
        if self.shared.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.all_closed.notify_waiters();
        }
    }
}

pin_project! {
    /// A connection watched by a [`Drain`].
    pub(crate) struct Draining<C> {
        #[pin]
        connection: C,
        guard: Registration,
        finishing: bool,
    }
}

impl<C: Graceful> Future for Draining<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if !*this.finishing && this.guard.stopping(cx.waker()) {
            *this.finishing = true;
            this.connection.as_mut().finish();
        }
        this.connection.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    pin_project! {
        /// Pending until told to finish, then ready on its next poll.
        struct Idle { told: bool }
    }

    impl Future for Idle {
        type Output = ();

        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            if self.told {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    impl Graceful for Idle {
        fn finish(self: Pin<&mut Self>) {
            *self.project().told = true;
        }
    }

    #[tokio::test]
    async fn shutdown_finishes_idle_connections_and_waits_for_them() {
        let drain = Drain::default();
        let connections: Vec<_> = (0..3)
            .map(|_| tokio::spawn(drain.watch(Idle { told: false })))
            .collect();
        // Each is polled once (registered), then waits for a wake that only
        // the drain can give.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(connections.iter().all(|c| !c.is_finished()));
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("every idle connection was told and ended");
        for connection in connections {
            connection.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_connection_never_polled_before_shutdown_still_finishes() {
        let drain = Drain::default();
        let unpolled = drain.watch(Idle { told: false });
        let shutdown = tokio::spawn(async move {
            drain.shutdown().await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!shutdown.is_finished(), "the drain waits for it");
        tokio::time::timeout(Duration::from_secs(5), unpolled)
            .await
            .expect("its first poll reads the flag");
        tokio::time::timeout(Duration::from_secs(5), shutdown)
            .await
            .expect("the drain ends with it")
            .unwrap();
    }

    #[tokio::test]
    async fn a_dropped_connection_leaves_the_drain() {
        let drain = Drain::default();
        let connection = tokio::spawn(drain.watch(Idle { told: false }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        connection.abort();
        let _ = connection.await;
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("nothing left to wait for");
        assert!(drain.shared.wakers().is_empty());
    }
}
