//! This machine's GPUs, by measurement: each GPU's total and used memory and its
//! utilisation, read through NVML (`nvml-wrapper`, which loads `libnvidia-ml.so` at run
//! time). Without the NVIDIA driver the node has no GPUs, and says why once. The readings
//! sit behind [`GpuProbe`], so tests feed fake ones ([`Fixed`]).

use std::sync::Arc;

use tracing::info;
use troupe_proto::cluster::GpuUse;

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

/// Fixed readings: declared GPUs, none (no driver), and tests.
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

/// What one of `instances` replicas took, from a GPU's used memory before and after they
/// loaded (0 when it did not grow: another process freed memory meanwhile).
pub fn per_replica(before: u64, after: u64, instances: usize) -> u64 {
    after.saturating_sub(before) / instances.max(1) as u64
}

/// The node's probe, shared by its metrics, its cluster records and device choice.
#[derive(Clone)]
pub struct Gpus {
    probe: Arc<dyn GpuProbe>,
    /// Why there are none, when the driver could not be used.
    absent: Option<String>,
}

impl Default for Gpus {
    fn default() -> Self {
        Self::new(Arc::new(Fixed(Vec::new())))
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
                Self::new(Arc::new(probe))
            }
            Err(e) => {
                let why = format!("NVML (libnvidia-ml.so, the NVIDIA driver) is not usable: {e}");
                info!(reason = %why, "no GPUs");
                Self {
                    absent: Some(why),
                    ..Self::default()
                }
            }
        }
    }

    /// GPUs read from `probe`.
    pub fn new(probe: Arc<dyn GpuProbe>) -> Self {
        Self {
            probe,
            absent: None,
        }
    }

    /// Chooses where a model runs: `cpu` on the CPU; a GPU the placement chose; `gpu` the
    /// first GPU with `need_bytes` free (FAILED_PRECONDITION naming what is missing: the
    /// driver, any GPU, or room); `any` such a GPU, else the CPU.
    pub fn device(
        &self,
        pref: crate::config::DevicePref,
        placed: Option<u32>,
        need_bytes: u64,
    ) -> Result<troupe_backends::Device, String> {
        use crate::config::DevicePref;
        use troupe_backends::Device;
        if pref == DevicePref::Cpu {
            return Ok(Device::Cpu);
        }
        if let Some(i) = placed {
            return Ok(Device::Cuda(i as usize));
        }
        let gpus = self.read();
        let roomy = gpus
            .iter()
            .find(|g| g.total_bytes.saturating_sub(g.used_bytes) >= need_bytes);
        match (pref, roomy) {
            (_, Some(g)) => Ok(Device::Cuda(g.index as usize)),
            (DevicePref::Any, None) => Ok(Device::Cpu),
            (_, None) if gpus.is_empty() => Err(format!(
                "device = \"gpu\" but this node has no GPU: {}",
                self.absent
                    .as_deref()
                    .unwrap_or("NVML reports none (declare them with --gpu-memory-mb)")
            )),
            (_, None) => Err(format!(
                "device = \"gpu\" needs {} MiB of GPU memory, and no GPU has that free ({})",
                need_bytes >> 20,
                gpus.iter()
                    .map(|g| format!(
                        "GPU {}: {} of {} MiB free",
                        g.index,
                        g.total_bytes.saturating_sub(g.used_bytes) >> 20,
                        g.total_bytes >> 20
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// GPUs of the given memory (`--gpu-memory-mb`), as declared, never measured.
    pub fn declared(memory_mb: &[u64]) -> Self {
        Self::new(Arc::new(Fixed(
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
        self.probe.read()
    }

    /// GPU `index`'s used memory now.
    pub fn used(&self, index: u32) -> Option<u64> {
        self.read()
            .into_iter()
            .find(|g| g.index == index)
            .map(|g| g.used_bytes)
    }

    /// Each GPU now, with what this node's models took on it (`ours`: GPU index →
    /// bytes) told apart from what other processes use.
    pub fn uses(&self, ours: &std::collections::BTreeMap<u32, u64>) -> Vec<GpuUse> {
        self.read()
            .into_iter()
            .map(|g| GpuUse {
                index: g.index,
                used_bytes: g.used_bytes,
                foreign_bytes: g
                    .used_bytes
                    .saturating_sub(ours.get(&g.index).copied().unwrap_or(0)),
                utilization_percent: (g.utilization * 100.0).round() as u32,
            })
            .collect()
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

    fn reading(index: u32, total_mb: u64, used_mb: u64) -> GpuReading {
        GpuReading {
            index,
            uuid: format!("GPU-{index}"),
            total_bytes: total_mb << 20,
            used_bytes: used_mb << 20,
            utilization: 0.0,
        }
    }

    #[test]
    fn a_model_goes_where_its_device_and_the_measured_free_memory_allow() {
        use crate::config::DevicePref::{Any, Cpu, Gpu};
        use troupe_backends::Device;
        let two = Gpus::new(Arc::new(Fixed(vec![
            reading(0, 1000, 900),
            reading(1, 1000, 100),
        ])));
        // GPU 0 has 100 MiB free: a 500 MiB model goes to GPU 1, `any` too.
        assert_eq!(two.device(Gpu, None, 500 << 20), Ok(Device::Cuda(1)));
        assert_eq!(two.device(Any, None, 500 << 20), Ok(Device::Cuda(1)));
        assert_eq!(two.device(Gpu, None, 50 << 20), Ok(Device::Cuda(0)));
        assert_eq!(two.device(Cpu, None, 0), Ok(Device::Cpu));
        // What the placement chose stands.
        assert_eq!(two.device(Gpu, Some(0), 500 << 20), Ok(Device::Cuda(0)));
        // Really full: `gpu` is refused with the figures, `any` runs on the CPU.
        let full = two.device(Gpu, None, 950 << 20).unwrap_err();
        assert!(full.contains("GPU 1: 900 of 1000 MiB free"), "{full}");
        assert_eq!(two.device(Any, None, 950 << 20), Ok(Device::Cpu));
        // No GPU at all: the reason names the driver.
        let none = Gpus {
            absent: Some("NVML (libnvidia-ml.so, the NVIDIA driver) is not usable: x".into()),
            ..Gpus::default()
        };
        let e = none.device(Gpu, None, 0).unwrap_err();
        assert!(e.contains("no GPU") && e.contains("NVIDIA driver"), "{e}");
        assert_eq!(none.device(Any, None, 0), Ok(Device::Cpu));
    }

    #[test]
    fn a_node_tells_its_models_gpu_memory_from_other_processes() {
        assert_eq!(per_replica(1 << 30, 5 << 30, 2), 2 << 30);
        assert_eq!(
            per_replica(5 << 30, 4 << 30, 1),
            0,
            "freed meanwhile: not negative"
        );
        let g = Gpus::new(Arc::new(Fixed(vec![reading(0, 16_384, 12_288)])));
        let ours = std::collections::BTreeMap::from([(0, 4_096u64 << 20)]);
        let u = g.uses(&ours);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].used_bytes, 12_288 << 20);
        assert_eq!(u[0].foreign_bytes, 8_192 << 20);
        assert_eq!(g.used(0), Some(12_288 << 20));
        assert_eq!(g.used(1), None);
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
