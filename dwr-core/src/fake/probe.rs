//! [`FakeGpuProbe`] and [`FakeHostProbe`]: probes that report a configured host.

use crate::executor::{GpuDevice, HostUsage};
use crate::probe::{GpuProbe, HostProbe};

/// A GPU probe reporting a fixed list of devices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeGpuProbe {
    devices: Vec<GpuDevice>,
}

impl FakeGpuProbe {
    /// A probe reporting exactly `devices`.
    pub fn new(devices: Vec<GpuDevice>) -> Self {
        Self { devices }
    }

    /// A host without GPUs.
    pub fn none() -> Self {
        Self::default()
    }

    /// One device per model name, indexed from 0, with UUIDs `GPU-fake-local-<i>`.
    ///
    /// Use [`for_host`](Self::for_host) when several fake executors must report distinct UUIDs.
    pub fn with_models(models: &[&str]) -> Self {
        Self::for_host("local", models)
    }

    /// One device per model name, indexed from 0, with UUIDs `GPU-fake-<host>-<i>`.
    pub fn for_host(host: &str, models: &[&str]) -> Self {
        let devices = models
            .iter()
            .enumerate()
            .map(|(i, model)| GpuDevice {
                index: i as u32,
                uuid: format!("GPU-fake-{host}-{i}"),
                model: (*model).to_owned(),
                memory_mib: memory_of(model),
            })
            .collect();
        Self { devices }
    }
}

/// Device memory of well-known models (MiB), 16 GiB for anything else.
fn memory_of(model: &str) -> u64 {
    let model = model.to_ascii_uppercase();
    if model.contains("H200") {
        143_771
    } else if model.contains("H100") || model.contains("A100") {
        81_920
    } else if model.contains("L40") || model.contains("A6000") {
        46_068
    } else if model.contains("A10") {
        23_028
    } else {
        16_384
    }
}

impl GpuProbe for FakeGpuProbe {
    fn gpus(&self) -> Vec<GpuDevice> {
        self.devices.clone()
    }
}

/// A host probe reporting a fixed capacity and idle usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeHostProbe {
    /// CPU capacity in millicores.
    pub cpu_millis: u64,
    /// Memory capacity in MiB.
    pub memory_mib: u64,
}

impl FakeHostProbe {
    /// A host with this capacity.
    pub fn new(cpu_millis: u64, memory_mib: u64) -> Self {
        Self {
            cpu_millis,
            memory_mib,
        }
    }
}

impl HostProbe for FakeHostProbe {
    fn cpu_millis(&self) -> u64 {
        self.cpu_millis
    }

    fn memory_mib(&self) -> u64 {
        self.memory_mib
    }

    fn usage(&self) -> HostUsage {
        HostUsage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_devices_get_host_scoped_uuids_in_index_order() {
        let probe = FakeGpuProbe::for_host("n1", &["NVIDIA H200", "NVIDIA A100-SXM4-80GB"]);
        let gpus = probe.gpus();
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].uuid, "GPU-fake-n1-0");
        assert_eq!((gpus[1].index, gpus[1].memory_mib), (1, 81_920));
        assert_eq!(gpus[1].model, "NVIDIA A100-SXM4-80GB");
        assert!(FakeGpuProbe::none().gpus().is_empty());
        assert_eq!(
            FakeGpuProbe::with_models(&["x"]).gpus()[0].uuid,
            "GPU-fake-local-0"
        );
    }
}
