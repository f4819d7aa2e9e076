//! [`NvmlGpuProbe`]: the host's NVIDIA GPUs through NVML, loaded at run time.

use std::ffi::OsStr;

use dwr_core::{GpuDevice, GpuProbe};
use nvml_wrapper::Nvml;

/// Library names tried in order: the versioned name every driver install has, then the
/// development symlink nvml-wrapper looks for by default.
const NVML_LIBRARIES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];

/// The GPUs NVML reports. NVML is loaded when the probe is built (`dlopen`, no link-time
/// dependency); without an NVIDIA driver the probe lists no GPUs and says so once in the log.
pub struct NvmlGpuProbe {
    nvml: Result<Nvml, String>,
}

impl std::fmt::Debug for NvmlGpuProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.nvml {
            Ok(_) => f.write_str("NvmlGpuProbe(loaded)"),
            Err(why) => write!(f, "NvmlGpuProbe(unavailable: {why})"),
        }
    }
}

impl Default for NvmlGpuProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl NvmlGpuProbe {
    /// Loads NVML. Never fails: a host without the driver gets a probe that lists no GPUs.
    pub fn new() -> Self {
        let mut errors = Vec::new();
        for lib in NVML_LIBRARIES {
            match Nvml::builder().lib_path(OsStr::new(lib)).init() {
                Ok(nvml) => {
                    let driver = nvml.sys_driver_version().unwrap_or_else(|_| "?".to_owned());
                    tracing::info!(library = lib, %driver, "NVML loaded");
                    return Self { nvml: Ok(nvml) };
                }
                Err(e) => errors.push(format!("{lib}: {e}")),
            }
        }
        let why = errors.join("; ");
        tracing::info!(reason = %why, "no NVIDIA driver (NVML not loadable): this host offers no GPUs");
        Self { nvml: Err(why) }
    }

    /// The NVIDIA driver's version, when NVML is loaded.
    pub fn driver_version(&self) -> Option<String> {
        self.nvml.as_ref().ok()?.sys_driver_version().ok()
    }

    /// Why NVML is not available, or `None` when it is loaded.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.nvml.as_ref().err().map(String::as_str)
    }
}

impl GpuProbe for NvmlGpuProbe {
    fn gpus(&self) -> Vec<GpuDevice> {
        let Ok(nvml) = &self.nvml else {
            return Vec::new();
        };
        let count = match nvml.device_count() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "NVML could not count devices: reporting no GPUs");
                return Vec::new();
            }
        };
        let mut devices = Vec::with_capacity(count as usize);
        for index in 0..count {
            let device = nvml.device_by_index(index).and_then(|d| {
                Ok(GpuDevice {
                    index,
                    uuid: d.uuid()?,
                    model: d.name()?,
                    memory_mib: d.memory_info()?.total / (1024 * 1024),
                })
            });
            match device {
                Ok(device) => devices.push(device),
                // One broken device (fallen off the bus, say) must not hide the others.
                Err(e) => tracing::warn!(index, error = %e, "NVML could not read a GPU; skipped"),
            }
        }
        devices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a host with no NVIDIA driver (this development machine and CI) the probe lists no
    /// GPUs and keeps the reason; on a GPU host it lists devices with UUIDs.
    #[test]
    fn lists_no_gpus_without_a_driver_and_never_panics() {
        let probe = NvmlGpuProbe::new();
        let gpus = probe.gpus();
        match probe.unavailable_reason() {
            Some(reason) => {
                assert!(gpus.is_empty(), "no NVML, yet {gpus:?}");
                assert!(reason.contains("libnvidia-ml"), "{reason}");
            }
            None => assert!(gpus
                .iter()
                .all(|g| g.uuid.starts_with("GPU-") || g.uuid.starts_with("MIG-"))),
        }
    }

    #[test]
    fn a_host_without_nvidia_devices_lists_no_gpu() {
        // The development and CI machines have no GPU: no /dev/nvidiactl. On a GPU host this
        // test has nothing to check (the example `probe` shows what is found there).
        if std::path::Path::new("/dev/nvidiactl").exists() {
            eprintln!(
                "note: /dev/nvidiactl exists; this host has NVIDIA devices, nothing to check"
            );
            return;
        }
        assert_eq!(NvmlGpuProbe::new().gpus(), Vec::new());
    }
}
