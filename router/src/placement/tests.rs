//! Unit tests of the placement decision.

use super::*;
use proptest::prelude::*;

const GIB: u64 = 1 << 30;

fn node(id: &str, cpu: u64, mem_gib: u64, gpus: &[u64]) -> Node {
    Node {
        id: id.into(),
        cpu_millis: cpu,
        memory_bytes: mem_gib * GIB,
        gpus: gpus
            .iter()
            .enumerate()
            .map(|(i, &g)| Gpu {
                index: i as u32,
                memory_bytes: g * GIB,
            })
            .collect(),
    }
}

fn model(
    key: &str,
    replicas: u32,
    cpu: u64,
    mem_gib: u64,
    gpu_gib: u64,
    device: Device,
) -> ModelSpec {
    ModelSpec {
        key: key.into(),
        replicas,
        cpu_millis: cpu,
        memory_bytes: mem_gib * GIB,
        gpu_memory_bytes: gpu_gib * GIB,
        device,
    }
}

#[test]
fn spreads_replicas_over_nodes() {
    let nodes = [
        node("a", 4000, 16, &[]),
        node("b", 4000, 16, &[]),
        node("c", 4000, 16, &[]),
    ];
    let p = place(&nodes, &[model("m:1", 2, 1000, 1, 0, Device::Cpu)], &[]);
    assert_eq!(p.assignments.len(), 2);
    assert_ne!(p.assignments[0].node, p.assignments[1].node);
    assert!(p.pending.is_empty());
}

fn at(model: &str, node: &str) -> Assignment {
    Assignment {
        model: model.into(),
        node: node.into(),
        gpu: None,
    }
}

#[test]
fn a_move_restores_spread_once_a_node_with_room_exists() {
    let m = [model("m:1", 2, 1000, 1, 0, Device::Cpu)];
    let both_on_a = [at("m:1", "a"), at("m:1", "a")];
    // One node: nothing to spread to.
    let one = [node("a", 4000, 16, &[])];
    assert_eq!(next_move(&one, &m, &both_on_a, &|_| true), None);
    // Nodes join: one replica moves to the least loaded of them.
    let three = [
        node("a", 4000, 16, &[]),
        node("b", 4000, 16, &[]),
        node("c", 1000, 1, &[]),
    ];
    let mv = next_move(&three, &m, &both_on_a, &|_| true).unwrap();
    assert_eq!((mv.from.as_str(), mv.to.as_str()), ("a", "b"));
    // A node not yet eligible (it just joined) is not a target.
    let mv = next_move(&three, &m, &both_on_a, &|id| id != "b").unwrap();
    assert_eq!(mv.to, "c");
    assert_eq!(next_move(&three, &m, &both_on_a, &|id| id == "a"), None);
    // Spread already: no move. A node without room: no move.
    assert_eq!(
        next_move(&three, &m, &[at("m:1", "a"), at("m:1", "b")], &|_| true),
        None
    );
    let full = [node("a", 4000, 16, &[]), node("b", 500, 16, &[])];
    assert_eq!(next_move(&full, &m, &both_on_a, &|_| true), None);
}

#[test]
fn too_large_stays_pending_with_the_short_resource_named_then_places() {
    let nodes = vec![node("a", 4000, 8, &[]), node("b", 4000, 8, &[])];
    let big = [model("big:1", 1, 1000, 32, 0, Device::Cpu)];
    let p = place(&nodes, &big, &[]);
    assert!(p.assignments.is_empty());
    assert_eq!(p.pending[0].missing, 1);
    assert!(
        p.pending[0].reason.contains("memory"),
        "{}",
        p.pending[0].reason
    );
    let mut more = nodes.clone();
    more.push(node("c", 4000, 64, &[]));
    let p = place(&more, &big, &[]);
    assert_eq!(
        p.assignments,
        vec![Assignment {
            model: "big:1".into(),
            node: "c".into(),
            gpu: None
        }]
    );
}

#[test]
fn gpu_models_go_only_to_gpus_with_room() {
    let nodes = [
        node("cpu", 8000, 64, &[]),
        node("small", 8000, 64, &[4]),
        node("big", 8000, 64, &[8, 24]),
    ];
    let p = place(&nodes, &[model("llm:1", 1, 1000, 4, 16, Device::Gpu)], &[]);
    assert_eq!(
        p.assignments,
        vec![Assignment {
            model: "llm:1".into(),
            node: "big".into(),
            gpu: Some(1)
        }]
    );
    let p = place(&nodes, &[model("huge:1", 1, 1000, 4, 40, Device::Gpu)], &[]);
    assert!(
        p.pending[0].reason.contains("gpu memory"),
        "{}",
        p.pending[0].reason
    );
    let p = place(
        &nodes[..1],
        &[model("g:1", 1, 1000, 4, 1, Device::Gpu)],
        &[],
    );
    assert!(
        p.pending[0].reason.contains("no node has a GPU"),
        "{}",
        p.pending[0].reason
    );
}

#[test]
fn lost_node_replicas_move_and_the_rest_stay() {
    let nodes = [
        node("a", 4000, 16, &[]),
        node("b", 4000, 16, &[]),
        node("c", 4000, 16, &[]),
    ];
    let models = [
        model("m:1", 2, 1000, 1, 0, Device::Cpu),
        model("n:1", 1, 1000, 1, 0, Device::Cpu),
    ];
    let first = place(&nodes, &models, &[]);
    let lost = first.assignments[0].node.clone();
    let alive: Vec<Node> = nodes.iter().filter(|n| n.id != lost).cloned().collect();
    let second = place(&alive, &models, &first.assignments);
    assert_eq!(second.assignments.len(), 3);
    for a in &first.assignments {
        if a.node != lost {
            assert!(second.assignments.contains(a), "{a:?} moved");
        }
    }
    assert!(second.assignments.iter().all(|a| a.node != lost));
}

fn arb_nodes() -> impl Strategy<Value = Vec<Node>> {
    prop::collection::vec(
        (
            500u64..16000,
            1u64..64,
            prop::collection::vec(1u64..48, 0..3),
        ),
        1..12,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (cpu, mem, gpus))| node(&format!("n{i:02}"), cpu, mem, &gpus))
            .collect()
    })
}

fn arb_models() -> impl Strategy<Value = Vec<ModelSpec>> {
    prop::collection::vec((1u32..5, 100u64..4000, 0u64..16, 0u64..24, 0u8..3), 1..10).prop_map(
        |v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (r, cpu, mem, gpu, d))| {
                    let device = [Device::Any, Device::Cpu, Device::Gpu][d as usize];
                    model(
                        &format!("m{i}:1"),
                        r,
                        cpu,
                        mem,
                        if device == Device::Cpu { 0 } else { gpu },
                        device,
                    )
                })
                .collect()
        },
    )
}

fn check_invariants(
    nodes: &[Node],
    models: &[ModelSpec],
    p: &Placement,
) -> Result<(), TestCaseError> {
    for n in nodes {
        let here: Vec<&Assignment> = p.assignments.iter().filter(|a| a.node == n.id).collect();
        let spec = |a: &Assignment| {
            models
                .iter()
                .find(|m| m.key == a.model)
                .expect("known model")
        };
        let cpu: u64 = here.iter().map(|a| spec(a).cpu_millis).sum();
        let mem: u64 = here.iter().map(|a| spec(a).memory_bytes).sum();
        prop_assert!(cpu <= n.cpu_millis, "cpu over-committed on {}", n.id);
        prop_assert!(mem <= n.memory_bytes, "memory over-committed on {}", n.id);
        for g in &n.gpus {
            let used: u64 = here
                .iter()
                .filter(|a| a.gpu == Some(g.index))
                .map(|a| spec(a).gpu_memory_bytes)
                .sum();
            prop_assert!(
                used <= g.memory_bytes,
                "gpu {} over-committed on {}",
                g.index,
                n.id
            );
        }
        for a in &here {
            let m = spec(a);
            if m.device == Device::Gpu {
                prop_assert!(a.gpu.is_some(), "GPU model {} placed without a GPU", m.key);
            }
            if let Some(g) = a.gpu {
                prop_assert!(n.gpus.iter().any(|x| x.index == g), "unknown GPU");
            }
        }
    }
    for m in models {
        let placed = p.assignments.iter().filter(|a| a.model == m.key).count() as u32;
        let missing = p
            .pending
            .iter()
            .find(|x| x.model == m.key)
            .map_or(0, |x| x.missing);
        prop_assert_eq!(placed + missing, m.replicas, "replicas of {} lost", m.key);
        if missing > 0 {
            prop_assert!(
                p.pending
                    .iter()
                    .any(|x| x.model == m.key && !x.reason.is_empty()),
                "pending {} without a reason",
                m.key
            );
        }
        // Spread: when room is never the limit, replicas of one model never share a
        // node while another node is unused.
        let total_cpu: u64 = models
            .iter()
            .map(|m| m.cpu_millis * m.replicas as u64)
            .sum();
        let total_mem: u64 = models
            .iter()
            .map(|m| m.memory_bytes * m.replicas as u64)
            .sum();
        let roomy = models.iter().all(|m| m.device == Device::Cpu)
            && nodes
                .iter()
                .all(|n| n.cpu_millis >= total_cpu && n.memory_bytes >= total_mem);
        if roomy && placed as usize <= nodes.len() {
            let nodes_used: BTreeSet<&str> = p
                .assignments
                .iter()
                .filter(|a| a.model == m.key)
                .map(|a| a.node.as_str())
                .collect();
            prop_assert_eq!(
                nodes_used.len(),
                placed as usize,
                "{} doubled up on a roomy cluster",
                m.key
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_over_commits_and_accounts_for_every_replica(nodes in arb_nodes(), models in arb_models()) {
        let p = place(&nodes, &models, &[]);
        check_invariants(&nodes, &models, &p)?;
    }

    #[test]
    fn spreads_on_roomy_clusters(n_nodes in 1usize..12, reps in prop::collection::vec(1u32..6, 1..10)) {
        let nodes: Vec<Node> = (0..n_nodes).map(|i| node(&format!("n{i:02}"), 1_000_000, 1024, &[])).collect();
        let models: Vec<ModelSpec> =
            reps.iter().enumerate().map(|(i, &r)| model(&format!("m{i}:1"), r, 100, 1, 0, Device::Cpu)).collect();
        let p = place(&nodes, &models, &[]);
        check_invariants(&nodes, &models, &p)?;
        for m in &models {
            let used: BTreeSet<&str> = p.assignments.iter().filter(|a| a.model == m.key).map(|a| a.node.as_str()).collect();
            prop_assert_eq!(used.len(), (m.replicas as usize).min(n_nodes), "{} not spread", m.key);
        }
    }

    #[test]
    fn is_stable(nodes in arb_nodes(), models in arb_models()) {
        let first = place(&nodes, &models, &[]);
        let again = place(&nodes, &models, &first.assignments);
        prop_assert_eq!(&first.assignments, &again.assignments);
    }

    #[test]
    fn losing_nodes_moves_only_their_replicas(nodes in arb_nodes(), models in arb_models(), lose in 0usize..12) {
        let first = place(&nodes, &models, &[]);
        let lost = format!("n{:02}", lose % nodes.len());
        let alive: Vec<Node> = nodes.iter().filter(|n| n.id != lost).cloned().collect();
        let second = place(&alive, &models, &first.assignments);
        check_invariants(&alive, &models, &second)?;
        for a in first.assignments.iter().filter(|a| a.node != lost) {
            let before = first.assignments.iter().filter(|x| *x == a).count();
            let after = second.assignments.iter().filter(|x| *x == a).count();
            prop_assert!(after >= before, "{:?} moved although its node lived", a);
        }
    }
}
