//! The node's `troupe.v1.Feedback` and `troupe.v1.Monitor` (the services are
//! `troupe_monitor::service`'s): its prediction store, opened on first use, and its
//! loaded models' `[monitoring]`.

use std::sync::Arc;

use tonic::Status;
use troupe_monitor::Store;
use troupe_monitor::config::MonitorCfg;
use troupe_monitor::service::{Configs, StoreSource};

use crate::registry::Registry;

/// The node's store and models, as the monitoring services see them.
pub struct NodeMonitoring(pub Arc<Registry>);

#[tonic::async_trait]
impl StoreSource for NodeMonitoring {
    async fn store(&self) -> Result<Store, Status> {
        Ok(self.0.monitoring().await?.store.clone())
    }
}

impl Configs for NodeMonitoring {
    fn monitoring(&self, model: &str, version: &str) -> Result<(String, MonitorCfg), Status> {
        let m = self.0.get(model, version)?;
        let cfg = m.def.monitoring.clone().ok_or_else(|| {
            Status::failed_precondition(format!(
                "model '{model}' has no [monitoring]: its calls are not recorded"
            ))
        })?;
        Ok((m.def.version.clone(), cfg))
    }
}
