//! Placement time for 1,000 nodes and 10,000 replicas, and re-placement after losing 10%
//! of the nodes. `cargo bench -p troupe-router --bench placement`

use criterion::{Criterion, criterion_group, criterion_main};
use troupe_router::placement::{Device, Gpu, ModelSpec, Node, place};

const GIB: u64 = 1 << 30;

fn cluster() -> (Vec<Node>, Vec<ModelSpec>) {
    let nodes: Vec<Node> = (0..1000)
        .map(|i| Node {
            id: format!("node-{i:04}"),
            cpu_millis: 64_000,
            memory_bytes: 256 * GIB,
            gpus: if i % 4 == 0 {
                (0..4)
                    .map(|g| Gpu {
                        index: g,
                        memory_bytes: 80 * GIB,
                    })
                    .collect()
            } else {
                Vec::new()
            },
        })
        .collect();
    // 2,500 models x 4 replicas = 10,000 replicas; one in ten needs a GPU.
    let models: Vec<ModelSpec> = (0..2500)
        .map(|i| ModelSpec {
            key: format!("model-{i:04}:1"),
            replicas: 4,
            cpu_millis: 500 + (i as u64 % 7) * 250,
            memory_bytes: (1 + i as u64 % 5) * GIB,
            gpu_memory_bytes: if i % 10 == 0 { 10 * GIB } else { 0 },
            device: if i % 10 == 0 {
                Device::Gpu
            } else {
                Device::Cpu
            },
        })
        .collect();
    (nodes, models)
}

fn bench(c: &mut Criterion) {
    let (nodes, models) = cluster();
    let first = place(&nodes, &models, &[]);
    assert_eq!(
        first.assignments.len(),
        10_000,
        "pending: {:?}",
        first.pending.first()
    );
    let survivors: Vec<Node> = nodes
        .iter()
        .filter(|n| !n.id.ends_with('7'))
        .cloned()
        .collect(); // lose 10%
    let mut g = c.benchmark_group("placement");
    g.sample_size(20);
    g.bench_function("place_1000_nodes_10000_replicas", |b| {
        b.iter(|| place(&nodes, &models, &[]))
    });
    g.bench_function("replace_after_losing_10pct_nodes", |b| {
        b.iter(|| place(&survivors, &models, &first.assignments))
    });
    g.bench_function("steady_state_no_change", |b| {
        b.iter(|| place(&nodes, &models, &first.assignments))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
