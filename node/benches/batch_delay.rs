//! How long the batch queue's wait for a delay really lasts: `Precise::sleep_until` (the
//! queue's clock) against tokio's own `sleep` (the baseline, what the queue waited on
//! before), for delays from 50 µs to 10 ms. Each iteration is one wait from now; the
//! time criterion reports minus the delay is the overshoot.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use troupe_node::batcher::clock::{Clock, Precise};

const DELAYS_US: [u64; 5] = [50, 100, 500, 2000, 10_000];

fn delays(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut g = c.benchmark_group("batch_delay");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    for us in DELAYS_US {
        let d = Duration::from_micros(us);
        g.bench_with_input(BenchmarkId::new("precise", us), &d, |b, &d| {
            b.to_async(&rt)
                .iter(|| async move { Precise.sleep_until(Instant::now() + d).await })
        });
        g.bench_with_input(BenchmarkId::new("tokio_sleep", us), &d, |b, &d| {
            b.to_async(&rt).iter(|| tokio::time::sleep(d))
        });
    }
    g.finish();
}

criterion_group!(benches, delays);
criterion_main!(benches);
