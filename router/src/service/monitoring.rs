//! The router's `troupe.v1.Feedback` and `troupe.v1.Monitor` (the services are
//! `troupe_monitor::service`'s): the prediction store the nodes write to (`--store`,
//! PostgreSQL in a cluster), and the cluster's declared `[monitoring]` of each model.

use std::sync::Arc;

use tonic::Status;
use troupe_monitor::Store;
use troupe_monitor::config::MonitorCfg;
use troupe_monitor::service::{Configs, StoreSource};

use crate::routing::Router;

/// The router's store (None without `--store`) and the cluster's models.
pub struct RouterMonitoring {
    pub store: Option<Store>,
    pub router: Arc<Router>,
}

#[tonic::async_trait]
impl StoreSource for RouterMonitoring {
    async fn store(&self) -> Result<Store, Status> {
        self.store.clone().ok_or_else(|| {
            Status::failed_precondition(
                "this router has no --store: ground truth and quality need the prediction store \
                 the nodes write to (start nodes and routers with the same --store postgres://...)",
            )
        })
    }
}

impl Configs for RouterMonitoring {
    fn monitoring(&self, model: &str, version: &str) -> Result<(String, MonitorCfg), Status> {
        let state = self.router.store.snapshot();
        let spec = state
            .models
            .get(model)
            .ok_or_else(|| Status::not_found(format!("model '{model}' is not declared")))?;
        let declared = if spec.version.is_empty() {
            "1"
        } else {
            spec.version.as_str()
        };
        if !version.is_empty() && version != declared {
            return Err(Status::not_found(format!(
                "model '{model}' version {version} is not declared (the cluster serves {declared})"
            )));
        }
        let cfg = spec
            .monitoring
            .as_ref()
            .and_then(MonitorCfg::from_spec)
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "model '{model}' has no monitoring: its calls are not recorded"
                ))
            })?;
        Ok((declared.to_string(), cfg))
    }
}
