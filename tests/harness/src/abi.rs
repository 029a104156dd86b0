//! The numbers and encodings of the proxy-wasm ABI 0.2.1, and the import sets a filter may use.
//!
//! Kept apart from the host implementation so the values can be checked against the spec at a
//! glance.

/// Log levels, as the filter passes them to `proxy_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    pub(crate) fn from_abi(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::Trace,
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            4 => Self::Error,
            5 => Self::Critical,
            _ => return None,
        })
    }

    pub(crate) fn to_abi(self) -> u32 {
        self as u32
    }
}

/// What a filter callback asks of the host: go on with the stream, or hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Continue,
    Pause,
}

impl Action {
    pub(crate) fn from_abi(value: u32) -> Self {
        // Envoy treats every value other than 0 as "stop iteration"; so do we.
        if value == 0 {
            Self::Continue
        } else {
            Self::Pause
        }
    }
}

/// Result codes of host calls (`WasmResult` in Envoy).
pub(crate) mod status {
    pub const OK: u32 = 0;
    pub const NOT_FOUND: u32 = 1;
    pub const BAD_ARGUMENT: u32 = 2;
    pub const SERIALIZATION_FAILURE: u32 = 3;
    pub const INVALID_MEMORY_ACCESS: u32 = 6;
    pub const CAS_MISMATCH: u32 = 8;
}

/// Header map selectors of `proxy_*_header_map_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapType {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    CallResponseHeaders,
    CallResponseTrailers,
}

impl MapType {
    pub(crate) fn from_abi(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::RequestHeaders,
            1 => Self::RequestTrailers,
            2 => Self::ResponseHeaders,
            3 => Self::ResponseTrailers,
            6 => Self::CallResponseHeaders,
            7 => Self::CallResponseTrailers,
            // 4 and 5 are gRPC metadata, which this host does not offer.
            _ => return None,
        })
    }
}

/// Buffer selectors of `proxy_get_buffer_bytes` / `proxy_set_buffer_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BufferType {
    RequestBody,
    ResponseBody,
    CallResponseBody,
    VmConfiguration,
    PluginConfiguration,
}

impl BufferType {
    pub(crate) fn from_abi(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::RequestBody,
            1 => Self::ResponseBody,
            4 => Self::CallResponseBody,
            6 => Self::VmConfiguration,
            7 => Self::PluginConfiguration,
            // 2, 3 (TCP data) and 5 (gRPC) belong to features this host does not offer.
            _ => return None,
        })
    }
}

/// Stream selectors of `proxy_continue_stream` / `proxy_close_stream`.
pub(crate) mod stream_type {
    pub const HTTP_REQUEST: u32 = 0;
    pub const HTTP_RESPONSE: u32 = 1;
}

/// Metric kinds of `proxy_define_metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub(crate) fn from_abi(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::Counter,
            1 => Self::Gauge,
            2 => Self::Histogram,
            _ => return None,
        })
    }
}

/// Module name of the proxy-wasm host functions.
pub const PROXY_WASM_MODULE: &str = "env";
/// Module name of the WASI preview1 functions.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// The proxy-wasm 0.2.1 host functions this host implements.
pub const PROXY_WASM_IMPORTS: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_buffer_bytes",
    "proxy_set_buffer_bytes",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_add_header_map_value",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_send_local_response",
    "proxy_http_call",
    "proxy_get_status",
    "proxy_set_effective_context",
    "proxy_call_foreign_function",
    "proxy_done",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_metric",
    // gRPC: present because the SDK's dispatcher links them; this host has no gRPC upstreams,
    // so calls fail cleanly (see `hostcalls`), never with a status the SDK would panic on.
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
];

/// The WASI preview1 calls Envoy offers a proxy-wasm module.
pub const WASI_IMPORTS: &[&str] = &[
    "fd_write",
    "fd_read",
    "fd_seek",
    "fd_close",
    "fd_fdstat_get",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "proc_exit",
    "clock_time_get",
    "random_get",
];

/// Encodes header pairs the way the ABI passes maps: a u32 count, then a (key length, value
/// length) u32 pair per entry, then each key and value followed by a NUL byte.
pub(crate) fn encode_map(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (key, value) in pairs {
        out.extend_from_slice(&len_u32(key.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes a map in the ABI encoding; `None` if the bytes are not a well-formed map (a filter
/// bug the host reports as `SerializationFailure`, never a panic of the host).
pub(crate) fn decode_map(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = usize::try_from(read_u32(bytes, 0)?).ok()?;
    let mut sizes_at = 4usize;
    let mut data_at = count.checked_mul(8)?.checked_add(4)?;
    let mut pairs = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let key_len = usize::try_from(read_u32(bytes, sizes_at)?).ok()?;
        let value_len = usize::try_from(read_u32(bytes, sizes_at + 4)?).ok()?;
        sizes_at += 8;
        let key = bytes.get(data_at..data_at.checked_add(key_len)?)?;
        data_at = data_at.checked_add(key_len)?.checked_add(1)?;
        let value = bytes.get(data_at..data_at.checked_add(value_len)?)?;
        data_at = data_at.checked_add(value_len)?.checked_add(1)?;
        pairs.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Some(pairs)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(slice.try_into().ok()?))
}

/// Lengths handed to the guest are 32-bit (wasm32); anything larger cannot be addressed anyway.
pub(crate) fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_encoding_round_trips() {
        let pairs = vec![
            (":path".to_owned(), "/a".to_owned()),
            ("x-empty".to_owned(), String::new()),
        ];
        let bytes = encode_map(&pairs);
        assert_eq!(bytes.len(), 4 + 2 * 8 + (5 + 1 + 2 + 1) + (7 + 1 + 1));
        assert_eq!(decode_map(&bytes), Some(pairs));
    }

    #[test]
    fn truncated_map_is_refused_not_panicked_on() {
        let bytes = encode_map(&[("k".to_owned(), "v".to_owned())]);
        for cut in 1..bytes.len() - 1 {
            assert_eq!(decode_map(&bytes[..cut]), None, "cut at {cut}");
        }
        // A count that promises more entries than there are bytes.
        assert_eq!(decode_map(&u32::MAX.to_le_bytes()), None);
    }
}
