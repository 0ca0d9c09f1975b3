//! The guard's decision per request, in process (divan): the same tower
//! service with and without `GuardLayer`, over snapshots of 10 and 100,000
//! tenants. Run with `cargo bench -p tenantgate-bench --bench guard_decision`.
//! Both sides allocate with mimalloc, as the `tenantgate` binary does.

#[path = "../src/synthetic.rs"]
mod synthetic;

use std::convert::Infallible;

use axum::{body::Body, http::Request, response::Response};
use tenantgate::MigrationSet;
use tower::{Layer, Service};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

fn migration_set() -> MigrationSet {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/fixtures/saas-tenant/tenant"
    );
    MigrationSet::load(std::path::Path::new(dir)).expect("the fixture")
}

fn inner() -> impl Service<
    Request<Body>,
    Response = Response,
    Error = Infallible,
    Future = std::future::Ready<Result<Response, Infallible>>,
> + Clone {
    tower::service_fn(|_request: Request<Body>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Body::empty())))
    })
}

fn run<S>(bencher: divan::Bencher, mut service: S, n: usize)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let hosts = synthetic::hosts(n);
    let mut i = 0;
    bencher
        .with_inputs(|| {
            i += 1;
            Request::get("/")
                .header("host", &hosts[i % hosts.len()])
                .body(Body::empty())
                .expect("a request")
        })
        .bench_local_values(|request| {
            futures::executor::block_on(service.call(request)).expect("infallible")
        });
}

#[divan::bench(args = [10, 100_000], sample_count = 500, sample_size = 64)]
fn without_guard(bencher: divan::Bencher, n: usize) {
    run(bencher, inner(), n);
}

#[divan::bench(args = [10, 100_000], sample_count = 500, sample_size = 64)]
fn with_guard(bencher: divan::Bencher, n: usize) {
    let layer = tenantgate_http::GuardLayer::new(synthetic::state(n, &migration_set()));
    run(bencher, layer.layer(inner()), n);
}
