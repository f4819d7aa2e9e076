//! Resource quantities and their arithmetic: CPU in millicores, memory in MiB, GPUs by count.

use serde::{Deserialize, Serialize};

/// A quantity of the three schedulable dimensions.
///
/// Arithmetic is checked: [`Resources::checked_sub`] refuses to go negative and
/// [`Resources::fits_in`] is the one comparison placement and the stores use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in millicores (1000 = one core).
    pub cpu_millis: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Number of GPU devices.
    pub gpus: u32,
}

/// The dimension on which a request did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// CPU millicores.
    Cpu,
    /// Memory MiB.
    Memory,
    /// GPU devices.
    Gpu,
}

impl Resources {
    /// Nothing at all.
    pub const ZERO: Resources = Resources {
        cpu_millis: 0,
        memory_mib: 0,
        gpus: 0,
    };

    /// A quantity from its three parts.
    pub const fn new(cpu_millis: u64, memory_mib: u64, gpus: u32) -> Self {
        Self {
            cpu_millis,
            memory_mib,
            gpus,
        }
    }

    /// True when every dimension of `self` is at most that of `room`.
    pub fn fits_in(&self, room: &Resources) -> bool {
        self.first_short_dimension(room).is_none()
    }

    /// The first dimension (cpu, memory, gpu in that order) where `self` exceeds `room`.
    pub fn first_short_dimension(&self, room: &Resources) -> Option<Dimension> {
        if self.cpu_millis > room.cpu_millis {
            Some(Dimension::Cpu)
        } else if self.memory_mib > room.memory_mib {
            Some(Dimension::Memory)
        } else if self.gpus > room.gpus {
            Some(Dimension::Gpu)
        } else {
            None
        }
    }

    /// `self - other`, or `None` if any dimension would go negative.
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        Some(Resources {
            cpu_millis: self.cpu_millis.checked_sub(other.cpu_millis)?,
            memory_mib: self.memory_mib.checked_sub(other.memory_mib)?,
            gpus: self.gpus.checked_sub(other.gpus)?,
        })
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(&self, other: &Resources) -> Option<Resources> {
        Some(Resources {
            cpu_millis: self.cpu_millis.checked_add(other.cpu_millis)?,
            memory_mib: self.memory_mib.checked_add(other.memory_mib)?,
            gpus: self.gpus.checked_add(other.gpus)?,
        })
    }

    /// `self - other`, clamped at zero per dimension.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_mib: self.memory_mib.saturating_sub(other.memory_mib),
            gpus: self.gpus.saturating_sub(other.gpus),
        }
    }

    /// True when every dimension is zero.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_and_names_the_short_dimension() {
        let room = Resources::new(2000, 4096, 1);
        assert!(Resources::new(2000, 4096, 1).fits_in(&room));
        assert_eq!(
            Resources::new(2001, 1, 0).first_short_dimension(&room),
            Some(Dimension::Cpu)
        );
        assert_eq!(
            Resources::new(1, 5000, 0).first_short_dimension(&room),
            Some(Dimension::Memory)
        );
        assert_eq!(
            Resources::new(1, 1, 2).first_short_dimension(&room),
            Some(Dimension::Gpu)
        );
    }

    #[test]
    fn subtraction_never_goes_negative() {
        let a = Resources::new(1000, 100, 0);
        assert_eq!(a.checked_sub(&Resources::new(1001, 0, 0)), None);
        assert_eq!(a.checked_sub(&Resources::new(0, 0, 1)), None);
        assert_eq!(
            a.checked_sub(&Resources::new(500, 100, 0)),
            Some(Resources::new(500, 0, 0))
        );
        assert_eq!(
            a.saturating_sub(&Resources::new(5000, 5000, 5)),
            Resources::ZERO
        );
    }
}
