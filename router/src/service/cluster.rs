//! `troupe.v1.Cluster`: the nodes and placements as the cluster store sees them.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use troupe_proto::troupe::cluster_server::Cluster;
use troupe_proto::troupe::{self as tpb};

use crate::routing::Router;

#[derive(Clone)]
pub struct ClusterService(pub Arc<Router>);

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn nodes(
        &self,
        _: Request<tpb::NodesRequest>,
    ) -> Result<Response<tpb::NodesResponse>, Status> {
        let s = self.0.store.snapshot();
        let nodes = s
            .nodes
            .iter()
            .map(|(id, n)| {
                let used = s.placed_on(id);
                let st = s.status.get(id);
                tpb::NodeInfo {
                    id: id.clone(),
                    addr: n.addr.clone(),
                    cpu_millis: n.capacity.cpu_millis,
                    memory_bytes: n.capacity.memory_bytes,
                    gpus: n
                        .capacity
                        .gpus
                        .iter()
                        .map(|g| tpb::GpuInfo {
                            index: g.index,
                            memory_bytes: g.memory_bytes,
                            used_memory_bytes: used
                                .gpu_memory_bytes
                                .get(&g.index)
                                .copied()
                                .unwrap_or(0),
                        })
                        .collect(),
                    labels: n.labels.clone().into_iter().collect(),
                    used_cpu_millis: used.cpu_millis,
                    used_memory_bytes: used.memory_bytes,
                    in_flight: st
                        .map(|st| st.models.iter().map(|m| m.in_flight).sum())
                        .unwrap_or(0),
                    queue_length: st
                        .map(|st| st.models.iter().map(|m| m.queue_length).sum())
                        .unwrap_or(0),
                    ready_models: st.map(|st| st.ready_models()).unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::new(tpb::NodesResponse { nodes }))
    }

    async fn placements(
        &self,
        req: Request<tpb::PlacementsRequest>,
    ) -> Result<Response<tpb::PlacementsResponse>, Status> {
        let want = req.into_inner().model;
        let s = self.0.store.snapshot();
        let placements = s
            .placements
            .iter()
            .filter(|((m, _), _)| want.is_empty() || *m == want)
            .map(|((m, n), v)| tpb::PlacementInfo {
                model: m.clone(),
                node_id: n.clone(),
                count: v.count,
                ready: self.0.store.routes(m).iter().any(|r| &r.node == n),
                gpu: v.gpu.map_or(-1, i64::from),
            })
            .collect();
        let pending = s
            .pending
            .iter()
            .filter(|(m, _)| want.is_empty() || **m == want)
            .map(|(m, p)| tpb::PendingInfo {
                model: m.clone(),
                missing: p.missing,
                reason: p.reason.clone(),
            })
            .collect();
        Ok(Response::new(tpb::PlacementsResponse {
            placements,
            pending,
        }))
    }
}
