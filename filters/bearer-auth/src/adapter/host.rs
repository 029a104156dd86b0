//! Small wrappers over the host calls the adapter uses: logs, the clock, request headers,
//! shared data as a `SharedStore`, and counters as `Metrics`.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType, MetricType, Status};

use crate::metrics::{Metric, Metrics};
use crate::refresh::{SharedStore, StoreError};

pub(super) fn log(level: LogLevel, line: &str) {
    let _ = hostcalls::log(level, line);
}

pub(super) fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A number that tells this VM apart from the others as lease holder: random (WASI random_get
/// seeds std's hasher keys) mixed with the context id.
pub(super) fn vm_nonce(context_id: u32) -> u64 {
    RandomState::new().hash_one(context_id).max(1)
}

pub(super) fn header_bytes(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

/// Pseudo-headers are ASCII in every host; anything else is read lossily rather than trusted.
pub(super) fn header_text(name: &str) -> String {
    header_bytes(name)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The request's header names. The SDK's `get_map` would panic on a name that is not UTF-8, so
/// the map is read with the raw hostcall and decoded here, skipping such names.
pub(super) fn request_header_names() -> Vec<String> {
    raw::header_map(MapType::HttpRequestHeaders)
        .into_iter()
        .filter_map(|name| String::from_utf8(name).ok())
        .map(|name| name.to_ascii_lowercase())
        .collect()
}

mod raw {
    use proxy_wasm::types::MapType;

    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
    }

    /// The names of a header map, decoded without trusting the host's lengths.
    pub fn header_map(map: MapType) -> Vec<Vec<u8>> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer to `size` bytes it allocated through the SDK's
        // `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes); we take ownership
        // of it once, as the SDK itself does.
        let bytes = unsafe {
            if proxy_get_header_map_pairs(map as u32, &mut data, &mut size) != 0 || data.is_null() {
                return Vec::new();
            }
            Vec::from_raw_parts(data, size, size)
        };
        names(&bytes)
    }

    /// proxy-wasm map encoding: u32 count, then count × (u32 name length, u32 value length),
    /// then each name and value followed by a NUL byte.
    fn names(bytes: &[u8]) -> Vec<Vec<u8>> {
        let u32_at = |at: usize| -> Option<usize> {
            let b = bytes.get(at..at.checked_add(4)?)?;
            let arr: [u8; 4] = b.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(arr)).ok()
        };
        let mut out = Vec::new();
        let Some(count) = u32_at(0) else { return out };
        let Some(mut data) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
            return out;
        };
        for i in 0..count {
            let Some(entry) = i.checked_mul(8).and_then(|n| n.checked_add(4)) else {
                break;
            };
            let (Some(name_len), Some(value_len)) =
                (u32_at(entry), entry.checked_add(4).and_then(u32_at))
            else {
                break;
            };
            let Some(name) = data
                .checked_add(name_len)
                .and_then(|end| bytes.get(data..end))
            else {
                break;
            };
            out.push(name.to_vec());
            let next = data
                .checked_add(name_len)
                .and_then(|n| n.checked_add(value_len))
                .and_then(|n| n.checked_add(2));
            match next {
                Some(n) => data = n,
                None => break,
            }
        }
        out
    }
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

/// Counter ids defined once at configure time.
pub(super) struct HostMetrics {
    ids: HashMap<Metric, u32>,
}

impl HostMetrics {
    pub(super) fn define() -> Self {
        let ids = Metric::all()
            .into_iter()
            .filter_map(|m| {
                hostcalls::define_metric(MetricType::Counter, &m.name())
                    .ok()
                    .map(|id| (m, id))
            })
            .collect();
        Self { ids }
    }
}

impl Metrics for HostMetrics {
    fn count(&self, metric: Metric) {
        if let Some(&id) = self.ids.get(&metric) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}
