//! Restoring spread, one move at a time, made before it breaks, and paced: which move
//! (`placement::next_move`), where it stands ([`Step`]), and when the next may start
//! ([`Spread`]). The leader follows it in each placement pass.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::placement::{self, Move};
use crate::state::ClusterState;

/// Where a move of one replica stands (make before break).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// No move.
    Settled,
    /// The new replica is placed beside the old ones (the model has one extra).
    Making(&'a Move),
    /// The new replica is ready: the old one goes.
    Breaking(&'a Move),
}

/// The one move that would restore spread now, among nodes `eligible` allows.
pub fn next_move(s: &ClusterState, eligible: &dyn Fn(&str) -> bool) -> Option<Move> {
    let (nodes, specs, current) = s.placement_inputs();
    placement::next_move(&nodes, &specs, &current, eligible)
}

/// At most one move every this long, so a flapping node does not churn the cluster.
const MOVE_EVERY: Duration = Duration::from_secs(5);
/// A node is a move's target only once it has been up this long.
const NODE_SETTLED: Duration = Duration::from_secs(5);
/// A move whose new replica is not ready by then is given up (the extra one goes).
const MOVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Restoring spread, one move at a time, made before it breaks: the new replica is
/// placed beside the old ones, and the old one goes only once the new one is ready, so
/// capacity never drops.
#[derive(Debug, Default)]
pub(crate) struct Spread {
    /// The move, when it started, the old node's replicas then, and whether it breaks.
    moving: Option<(Move, Instant, u32, bool)>,
    last_move: Option<Instant>,
    /// When each live node was first seen (by this leader).
    seen: BTreeMap<String, Instant>,
}

impl Spread {
    /// Follows the cluster: nodes seen, and whether the move in progress is ready, done
    /// or to be given up.
    pub(crate) fn observe(&mut self, s: &ClusterState) {
        let now = Instant::now();
        self.seen.retain(|id, _| s.nodes.contains_key(id));
        for id in s.nodes.keys() {
            self.seen.entry(id.clone()).or_insert(now);
        }
        let Some((mv, started, from_count, breaking)) = &mut self.moving else {
            return;
        };
        let on = |node: &str| {
            s.placements
                .get(&(mv.model.clone(), node.to_string()))
                .map_or(0, |p| p.count)
        };
        let ready = s.ready_replicas(&mv.model).iter().any(|r| r.node == mv.to);
        if !*breaking && ready {
            info!(model = %mv.model, from = %mv.from, to = %mv.to, "moved replica ready; the old one goes");
            *breaking = true;
        } else if *breaking && on(&mv.from) < *from_count {
            info!(model = %mv.model, from = %mv.from, to = %mv.to, "replica moved");
            self.moving = None;
        } else if !s.nodes.contains_key(&mv.to) || started.elapsed() > MOVE_TIMEOUT {
            warn!(model = %mv.model, to = %mv.to, "replica move given up");
            self.moving = None;
        }
    }

    pub(crate) fn step(&self) -> Step<'_> {
        match &self.moving {
            None => Step::Settled,
            Some((mv, _, _, false)) => Step::Making(mv),
            Some((mv, _, _, true)) => Step::Breaking(mv),
        }
    }

    /// With the placement settled, starts the next move if one restores spread and the
    /// pace allows; true when it did.
    pub(crate) fn consider(&mut self, s: &ClusterState) -> bool {
        if self.moving.is_some() || self.last_move.is_some_and(|t| t.elapsed() < MOVE_EVERY) {
            return false;
        }
        let settled = |id: &str| {
            self.seen
                .get(id)
                .is_some_and(|t| t.elapsed() >= NODE_SETTLED)
        };
        let Some(mv) = next_move(s, &settled) else {
            return false;
        };
        info!(model = %mv.model, from = %mv.from, to = %mv.to, "moving a replica to restore spread");
        let now = Instant::now();
        let from_count = s
            .placements
            .get(&(mv.model.clone(), mv.from.clone()))
            .map_or(0, |p| p.count);
        self.moving = Some((mv, now, from_count, false));
        self.last_move = Some(now);
        true
    }
}
