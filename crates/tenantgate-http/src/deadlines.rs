//! How long a forwarded request may wait for the upstream's response
//! headers, checked on a coarse tick instead of by a timer per request.
//!
//! A tokio timer armed while its runtime's timer wheel is empty wakes the
//! runtime's event loop through an eventfd (the loop slept with no deadline
//! to wake for): in the proxy, whose workers each run a runtime of their
//! own, that was a fifth of all requests at half load, each an extra write
//! and an extra turn of the event loop. Here a waiting request records its
//! deadline and waker, and one task per [`Deadlines`] wakes the overdue on
//! every tick.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, Weak,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use pin_project_lite::pin_project;

use crate::clock::monotonic_ms;

/// The deadlines of the requests one forwarder has in flight.
pub(crate) struct Deadlines {
    waiting: Mutex<Waiting>,
    timeout_ms: u64,
    tick: Duration,
    ticking: AtomicBool,
}

/// Slots of waiting requests: a deadline (monotonic milliseconds) and the
/// waker to call once it passed; freed slots are reused.
#[derive(Default)]
struct Waiting {
    slots: Vec<Option<(u64, Option<Waker>)>>,
    free: Vec<usize>,
}

/// The request waited longer than the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

impl Deadlines {
    /// Deadlines `timeout` after each request starts; an overdue request is
    /// failed within a tenth of the timeout more (at most a second, at
    /// least a millisecond).
    pub(crate) fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            waiting: Mutex::new(Waiting::default()),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            tick: (timeout / 10).clamp(Duration::from_millis(1), Duration::from_secs(1)),
            ticking: AtomicBool::new(false),
        })
    }

    /// `future`, failed with [`Elapsed`] once the timeout passed before it
    /// finished. The first one polled starts the tick on the runtime it is
    /// polled on.
    pub(crate) fn within<F: Future>(self: &Arc<Self>, future: F) -> WithinDeadline<F> {
        WithinDeadline {
            inner: future,
            deadline: monotonic_ms().saturating_add(self.timeout_ms),
            slot: Slot {
                deadlines: self.clone(),
                index: None,
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every request whose deadline is at or before `now`, once.
    fn wake_overdue(&self, now: u64) {
        let overdue: Vec<Waker> = self
            .lock()
            .slots
            .iter_mut()
            .flatten()
            .filter(|(deadline, _)| *deadline <= now)
            .filter_map(|(_, waker)| waker.take())
            .collect();
        overdue.into_iter().for_each(Waker::wake);
    }

    fn start_ticking(self: &Arc<Self>) {
        if self.ticking.swap(true, Ordering::Relaxed) {
            return;
        }
        let (deadlines, every) = (Arc::downgrade(self), self.tick);
        tokio::spawn(tick(deadlines, every));
    }
}

/// Wakes the overdue requests every `every`, until the deadlines are gone.
async fn tick(deadlines: Weak<Deadlines>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(deadlines) = deadlines.upgrade() else {
            return;
        };
        deadlines.wake_overdue(monotonic_ms());
    }
}

/// A waiting request's slot, freed when it finishes or is dropped.
struct Slot {
    deadlines: Arc<Deadlines>,
    index: Option<usize>,
}

impl Slot {
    /// Records `waker` to be woken once `deadline` passed.
    fn wait(&mut self, deadline: u64, waker: &Waker) {
        let mut waiting = self.deadlines.lock();
        match self.index {
            Some(index) => {
                if let Some((_, slot_waker)) = &mut waiting.slots[index] {
                    match slot_waker {
                        Some(current) if current.will_wake(waker) => {}
                        _ => *slot_waker = Some(waker.clone()),
                    }
                }
            }
            None => {
                let entry = Some((deadline, Some(waker.clone())));
                let index = match waiting.free.pop() {
                    Some(index) => {
                        waiting.slots[index] = entry;
                        index
                    }
                    None => {
                        waiting.slots.push(entry);
                        waiting.slots.len() - 1
                    }
                };
                self.index = Some(index);
                drop(waiting);
                self.deadlines.start_ticking();
            }
        }
    }

    fn release(&mut self) {
        if let Some(index) = self.index.take() {
            let mut waiting = self.deadlines.lock();
            waiting.slots[index] = None;
            waiting.free.push(index);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

pin_project! {
    /// A future that fails with [`Elapsed`] once its deadline passed; see
    /// [`Deadlines::within`].
    pub(crate) struct WithinDeadline<F> {
        #[pin]
        inner: F,
        deadline: u64,
        slot: Slot,
    }
}

impl<F: Future> Future for WithinDeadline<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.inner.poll(cx) {
            this.slot.release();
            return Poll::Ready(Ok(output));
        }
        if monotonic_ms() >= *this.deadline {
            this.slot.release();
            return Poll::Ready(Err(Elapsed));
        }
        this.slot.wait(*this.deadline, cx.waker());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Deadlines, Elapsed};

    #[tokio::test]
    async fn a_request_that_never_answers_fails_soon_after_its_deadline_and_frees_its_slot() {
        let deadlines = Deadlines::new(Duration::from_millis(200));
        let started = Instant::now();
        let waited = deadlines.within(std::future::pending::<()>()).await;
        let elapsed = started.elapsed();
        assert_eq!(waited, Err(Elapsed));
        // The coarse clock reads a few milliseconds behind; the tick is a
        // tenth of the timeout.
        assert!(
            elapsed >= Duration::from_millis(180) && elapsed < Duration::from_millis(600),
            "failed after {elapsed:?}"
        );
        assert!(deadlines.lock().slots.iter().all(Option::is_none));
    }

    #[tokio::test]
    async fn answers_pass_and_many_waiting_requests_each_meet_their_own_deadline() {
        let deadlines = Deadlines::new(Duration::from_millis(300));
        assert_eq!(deadlines.within(async { 7 }).await, Ok(7));
        // One answers in time, one never does, one is dropped while waiting:
        // the dropped one's slot is reused, and the others are unaffected.
        let quick = deadlines.within(tokio::time::sleep(Duration::from_millis(50)));
        let stuck = deadlines.within(std::future::pending::<()>());
        let dropped = deadlines.within(std::future::pending::<()>());
        let dropped = tokio::time::timeout(Duration::from_millis(10), dropped).await;
        assert!(dropped.is_err(), "still waiting when dropped");
        let (quick, stuck) = tokio::join!(quick, stuck);
        assert_eq!(quick, Ok(()));
        assert_eq!(stuck, Err(Elapsed));
        let waiting = deadlines.lock();
        assert!(waiting.slots.iter().all(Option::is_none));
        assert_eq!(
            waiting.slots.len(),
            2,
            "the dropped request's slot is reused"
        );
    }
}
