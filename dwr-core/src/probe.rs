//! The [`GpuProbe`] and [`HostProbe`] traits: what an executor learns about its host.

use std::fmt::Debug;

use crate::executor::{GpuDevice, HostUsage};

/// The GPUs of this host.
///
/// # Contract
/// Never fails: a host without GPUs, or without a driver, has an empty list (the
/// implementation logs why). Devices are listed in index order.
pub trait GpuProbe: Debug + Send + Sync + 'static {
    /// The devices present.
    fn gpus(&self) -> Vec<GpuDevice>;
}

/// The CPU and memory of this host.
pub trait HostProbe: Debug + Send + Sync + 'static {
    /// CPU capacity in millicores (cores × 1000).
    fn cpu_millis(&self) -> u64;
    /// Total memory in MiB.
    fn memory_mib(&self) -> u64;
    /// Current usage, for heartbeats.
    fn usage(&self) -> HostUsage;
}
