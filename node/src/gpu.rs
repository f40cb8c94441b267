//! This machine's GPUs, by measurement: each GPU's total and used memory and its
//! utilisation, read through NVML (`nvml-wrapper`, which loads `libnvidia-ml.so` at run
//! time). Without the NVIDIA driver the node has no GPUs, and says why once. The readings
//! sit behind [`GpuProbe`], so tests feed fake ones ([`Fixed`]).

use std::sync::Arc;

use tracing::info;

/// One GPU as measured now.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuReading {
    /// Its CUDA index.
    pub index: u32,
    /// NVML's UUID (`GPU-…`), the label of Triton's `nv_gpu_*` metrics.
    pub uuid: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    /// Share of the last sample period in which a kernel ran, 0 to 1.
    pub utilization: f64,
}

/// Where GPU readings come from.
pub trait GpuProbe: Send + Sync {
    /// Every GPU now; empty when there are none (or they cannot be read).
    fn read(&self) -> Vec<GpuReading>;
}

/// A probe on a machine without GPUs, or without the driver to see them.
pub struct NoGpus;

impl GpuProbe for NoGpus {
    fn read(&self) -> Vec<GpuReading> {
        Vec::new()
    }
}

/// Fixed readings: declared GPUs, and tests.
pub struct Fixed(pub Vec<GpuReading>);

impl GpuProbe for Fixed {
    fn read(&self) -> Vec<GpuReading> {
        self.0.clone()
    }
}

/// NVML's readings.
pub struct Nvml(nvml_wrapper::Nvml);

impl GpuProbe for Nvml {
    fn read(&self) -> Vec<GpuReading> {
        let count = self.0.device_count().unwrap_or(0);
        (0..count)
            .filter_map(|index| {
                let d = self.0.device_by_index(index).ok()?;
                let memory = d.memory_info().ok()?;
                Some(GpuReading {
                    index,
                    uuid: d.uuid().unwrap_or_else(|_| format!("GPU-{index}")),
                    total_bytes: memory.total,
                    used_bytes: memory.used,
                    utilization: d
                        .utilization_rates()
                        .map(|u| f64::from(u.gpu) / 100.0)
                        .unwrap_or(0.0),
                })
            })
            .collect()
    }
}

/// The node's probe, shared by its metrics and its cluster records.
#[derive(Clone)]
pub struct Gpus(pub Arc<dyn GpuProbe>);

impl Default for Gpus {
    fn default() -> Self {
        Self(Arc::new(NoGpus))
    }
}

impl std::fmt::Debug for Gpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gpus")
    }
}

impl Gpus {
    /// NVML's GPUs when the driver is there; else none, with the reason logged.
    pub fn detect() -> Self {
        match nvml_wrapper::Nvml::init() {
            Ok(nvml) => {
                let probe = Nvml(nvml);
                info!(gpus = probe.read().len(), "NVML found");
                Self(Arc::new(probe))
            }
            Err(e) => {
                info!(reason = %e, "no GPUs: NVML (libnvidia-ml.so, the NVIDIA driver) is not usable");
                Self::default()
            }
        }
    }

    /// GPUs of the given memory (`--gpu-memory-mb`), as declared, never measured.
    pub fn declared(memory_mb: &[u64]) -> Self {
        Self(Arc::new(Fixed(
            memory_mb
                .iter()
                .enumerate()
                .map(|(i, mb)| GpuReading {
                    index: i as u32,
                    uuid: format!("GPU-declared-{i}"),
                    total_bytes: mb << 20,
                    used_bytes: 0,
                    utilization: 0.0,
                })
                .collect(),
        )))
    }

    pub fn read(&self) -> Vec<GpuReading> {
        self.0.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_gpus_have_their_memory_and_nothing_used() {
        let g = Gpus::declared(&[16_384, 8]);
        let r = g.read();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].index, r[0].total_bytes), (0, 16_384 << 20));
        assert_eq!(
            (r[1].index, r[1].total_bytes, r[1].used_bytes),
            (1, 8 << 20, 0)
        );
    }

    #[test]
    fn without_the_driver_there_are_no_gpus() {
        // These CPU machines have no libnvidia-ml.so: detection reports none.
        if std::path::Path::new("/dev/nvidiactl").exists() {
            return;
        }
        assert!(Gpus::detect().read().is_empty());
        assert!(Gpus::default().read().is_empty());
    }
}
