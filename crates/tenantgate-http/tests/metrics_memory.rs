//! Histogram samples recorded between scrapes are folded into their buckets
//! on their own, so a server nobody scrapes keeps bounded memory however
//! many requests it times (the exporter holds every sample until folded).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes.
struct Counting;

// SAFETY: delegates every call to the system allocator unchanged.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MB: usize = 1 << 20;

#[test]
fn histogram_samples_do_not_pile_up_between_scrapes() {
    let _handle = tenantgate_http::metrics::install().expect("the recorder installs");
    let before = LIVE.load(Ordering::Relaxed);
    // Two million proxied requests' worth of upstream latencies, never
    // scraped: at 60,000 requests a second, half a minute of load.
    let latency = metrics::histogram!(tenantgate_http::metrics::PROXY_UPSTREAM_SECONDS);
    for i in 0..2_000_000_u32 {
        latency.record(f64::from(i % 100) / 1000.0);
    }
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        held > 8 * MB,
        "the samples are held until folded ({held} bytes): the control"
    );
    // The server goes on timing requests, more slowly (which also lets the
    // exporter's lock-free buckets free what was folded away).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
        if held < 4 * MB {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{held} bytes of samples still held 30 s later, with no scrape"
        );
        for _ in 0..1_000 {
            latency.record(0.001);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
