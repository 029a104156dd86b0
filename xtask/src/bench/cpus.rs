//! Which core runs what: Envoy (and the authz-service under test) on one core, the load generator
//! and the upstream on another, so they don't steal each other's time slices.

use std::process::Command;

use crate::bench::procstat;

/// The cores of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Envoy's core (or the authz-service's, when it is measured).
    pub server: Option<usize>,
    /// wrk's and nginx's core.
    pub load: Option<usize>,
}

impl Plan {
    /// With two or more usable cores: the first for the server, the second for the load.
    /// With one, nothing is pinned (the report says so).
    pub fn for_cpus(cpus: &[usize]) -> Self {
        match cpus {
            [server, load, ..] => Self {
                server: Some(*server),
                load: Some(*load),
            },
            _ => Self {
                server: None,
                load: None,
            },
        }
    }

    pub fn detect() -> Self {
        Self::for_cpus(&procstat::allowed_cpus())
    }

    pub fn describe(&self) -> String {
        match (self.server, self.load) {
            (Some(s), Some(l)) => {
                format!("server on CPU {s}, load generator and upstream on CPU {l}")
            }
            _ => "not pinned (fewer than two usable CPUs)".to_owned(),
        }
    }
}

/// `program` run through `taskset -c <cpu>` when a CPU is given (taskset execs it, so the pid
/// is the program's own).
pub fn pinned(cpu: Option<usize>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_cores_are_split_and_one_core_is_not_pinned() {
        let p = Plan::for_cpus(&[0, 1]);
        assert_eq!((p.server, p.load), (Some(0), Some(1)));
        let p = Plan::for_cpus(&[2, 5, 7]);
        assert_eq!((p.server, p.load), (Some(2), Some(5)));
        assert_eq!(Plan::for_cpus(&[0]).server, None);
    }

    #[test]
    fn pinning_goes_through_taskset() {
        let c = pinned(Some(1), "wrk");
        assert_eq!(c.get_program(), "taskset");
        let args: Vec<_> = c.get_args().collect();
        assert_eq!(args, ["-c", "1", "wrk"]);
        assert_eq!(pinned(None, "wrk").get_program(), "wrk");
    }
}
