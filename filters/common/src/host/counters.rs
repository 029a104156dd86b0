//! Counters added up in the VM and handed to the host in batches.
//!
//! Why: every `proxy_increment_metric` is a call out of the VM, as dear as a header write
//! (BENCHMARKS.md), and a filter that counts twice per request pays twice. Here a count is an
//! addition in the VM's memory; the filter's root context flushes the sums on its tick and at the
//! end of its other callbacks, and whatever is left is flushed when the counters are dropped,
//! which happens when the host deletes the root context (on shutdown and when the plugin's
//! configuration is replaced). Envoy's stats thus lag by at most a tick and lose nothing.

use std::cell::Cell;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};

use crate::host::chain::configuring_chain_stage;

/// How often a root context flushes: Envoy's stats lag the requests by at most this much.
pub const FLUSH_PERIOD: Duration = Duration::from_secs(1);

/// Asks the host to tick the root context being configured every [`FLUSH_PERIOD`], so that
/// its `on_tick` can flush. A stage of the one-module chain leaves the tick to the chain, which
/// keeps one running for all its stages (a stage that wants faster ticks sets them itself).
pub fn tick_for_flushing() {
    if !configuring_chain_stage() {
        let _ = hostcalls::set_tick_period(FLUSH_PERIOD);
    }
}

/// Counters defined with the host, addressed by their position in the list they were defined
/// from.
pub struct BatchedCounters {
    /// The host's id of each counter; `None` if the host refused to define it (then it is not
    /// counted, as with a direct increment that fails).
    ids: Vec<Option<u32>>,
    pending: Vec<Cell<i64>>,
}

impl BatchedCounters {
    /// Defines one counter per name, in order; one the host refuses is logged under
    /// `filter_name` and not counted.
    pub fn define<S: AsRef<str>>(filter_name: &str, names: impl IntoIterator<Item = S>) -> Self {
        let define = |name: &str| match hostcalls::define_metric(MetricType::Counter, name) {
            Ok(id) => Some(id),
            Err(status) => {
                let _ = hostcalls::log(
                    LogLevel::Warn,
                    &format!("{filter_name}: metric `{name}` unavailable: {status:?}"),
                );
                None
            }
        };
        let ids: Vec<Option<u32>> = names.into_iter().map(|n| define(n.as_ref())).collect();
        let pending = ids.iter().map(|_| Cell::new(0)).collect();
        Self { ids, pending }
    }

    /// Adds `by` to the counter at `slot`; the host sees it at the next flush.
    pub fn add(&self, slot: usize, by: i64) {
        if let Some(sum) = self.pending.get(slot) {
            sum.set(sum.get().saturating_add(by));
        }
    }

    /// Hands every non-zero sum to the host: one call per counter that moved.
    pub fn flush(&self) {
        for (id, sum) in self.ids.iter().zip(&self.pending) {
            let by = sum.replace(0);
            if by != 0
                && let Some(id) = id
            {
                let _ = hostcalls::increment_metric(*id, by);
            }
        }
    }
}

impl Drop for BatchedCounters {
    fn drop(&mut self) {
        self.flush();
    }
}
