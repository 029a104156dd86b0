//! What the kernel knows about a process: CPU time and memory, from /proc (Linux only, like the
//! rest of the benchmark).

use std::fs;

use anyhow::{Context, Result};

/// CPU time (user + system, all threads) of `pid`, in microseconds.
pub fn cpu_time_us(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    let ticks = parse_cpu_ticks(&stat).context("unexpected /proc/<pid>/stat")?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(100);
    Ok(ticks.saturating_mul(1_000_000) / per_second)
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory now and at its peak, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

pub fn memory(pid: u32) -> Result<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    parse_memory(&status).context("no VmRSS/VmHWM in /proc/<pid>/status")
}

fn parse_memory(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(name)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// The CPUs this process may run on (its affinity mask), in order.
pub fn allowed_cpus() -> Vec<usize> {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(parse_cpu_list))
        })
        .unwrap_or_default()
}

/// `0-2,5` → [0, 1, 2, 5].
fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.trim().parse::<usize>().ok()),
        }
    }
    cpus
}

/// The 1-minute load average, to put next to every measurement.
pub fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The kernel's transparent-huge-page mode (`always`, `madvise` or `never`): part of the machine
/// a run measured, like its CPU, and one that may move wasm's time and native code's differently
/// (BENCHMARKS.md, "Huge pages").
pub fn transparent_huge_pages() -> Option<String> {
    let text = fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    selected_mode(&text).map(str::to_owned)
}

/// `always [madvise] never` → `madvise`: sysfs marks the selected choice with brackets.
fn selected_mode(choices: &str) -> Option<&str> {
    choices
        .split_whitespace()
        .find_map(|c| c.strip_prefix('[')?.strip_suffix(']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_a_command_name_with_spaces() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn our_own_cpu_time_and_memory_are_readable() {
        let me = std::process::id();
        assert!(cpu_time_us(me).is_ok());
        let m = memory(me).unwrap();
        assert!(m.rss_kib > 0 && m.peak_kib >= m.rss_kib);
    }

    #[test]
    fn memory_fields_are_read_in_kib() {
        let status = "Name:\tenvoy\nVmHWM:\t  52000 kB\nVmRSS:\t  48000 kB\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kib: 48000,
                peak_kib: 52000
            })
        );
        assert_eq!(parse_memory("Name: x\n"), None);
    }

    #[test]
    fn the_bracketed_choice_is_the_selected_mode() {
        assert_eq!(selected_mode("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected_mode("[always] madvise never"), Some("always"));
        assert_eq!(selected_mode("always madvise never"), None);
    }

    #[test]
    fn cpu_lists_expand_ranges() {
        assert_eq!(parse_cpu_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list("3"), vec![3]);
        assert!(!allowed_cpus().is_empty());
    }
}
