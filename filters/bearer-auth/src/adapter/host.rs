//! Small wrappers over the host calls the adapter uses: logs, the clock,
//! shared data as a `SharedStore`, and counters as `Metrics`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, Status};
use wasmgate_filter_common::host::clock;
use wasmgate_filter_common::host::counters::BatchedCounters;

use crate::FILTER_NAME;
use crate::metrics::{Metric, Metrics};
use crate::refresh::{SharedStore, StoreError};

pub(super) fn log(level: LogLevel, line: &str) {
    let _ = hostcalls::log(level, line);
}

pub(super) fn now_ms() -> u64 {
    clock::nanos_since_epoch().map_or(0, |nanos| nanos / 1_000_000)
}

/// A number that tells this VM apart from the others as lease holder: random (WASI random_get
/// seeds std's hasher keys) mixed with the context id.
pub(super) fn vm_nonce(context_id: u32) -> u64 {
    RandomState::new().hash_one(context_id).max(1)
}

/// proxy-wasm shared data as a `SharedStore`.
pub(super) struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
            Ok((Some(bytes), None)) => Some((bytes, 0)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match wasmgate_filter_common::host::set_shared_data(key, value, cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Other),
        }
    }
}

/// The filter's counters, defined once at configure time and counted in the VM: the root context
/// hands the sums to the host on its tick and at the end of its callbacks, and whatever is left
/// when the VM's state is dropped (the host deleting the root context) is handed over then.
pub(super) struct HostMetrics {
    counters: BatchedCounters,
}

impl HostMetrics {
    pub(super) fn define() -> Self {
        Self {
            counters: BatchedCounters::define(FILTER_NAME, Metric::all().iter().map(Metric::name)),
        }
    }

    pub(super) fn flush(&self) {
        self.counters.flush();
    }
}

impl Metrics for HostMetrics {
    fn count(&self, metric: Metric) {
        self.counters.add(metric.slot(), 1);
    }
}
