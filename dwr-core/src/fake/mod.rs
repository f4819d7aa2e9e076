//! Fakes of the host-facing traits: a container runtime, a GPU probe and a host probe.
//!
//! They ship in the main crate (not only under `cfg(test)`) because the tests, the load tool,
//! simulations and the embedded mode all share them:
//!
//! * [`FakeRuntime`]: an in-memory [`ContainerRuntime`](crate::ContainerRuntime) whose
//!   containers run for a while, print lines, exit with a code, get OOM-killed, fail to pull
//!   or start, or hang until stopped, as a [`FakeBehaviour`] decides for each container
//!   (by default parsed from the job's command, see [`FakeBehaviour::from_command`]).
//! * [`FakeGpuProbe`]: a configured list of GPU devices.
//! * [`FakeHostProbe`]: a configured CPU and memory capacity.

mod behaviour;
mod faulty;
mod probe;
mod runtime;

pub use behaviour::{FakeBehaviour, MAX_FAKE_LINES};
pub use faulty::{Fault, FaultyStore, Op};
pub use probe::{FakeGpuProbe, FakeHostProbe};
pub use runtime::FakeRuntime;
