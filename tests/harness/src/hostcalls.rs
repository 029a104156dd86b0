//! The proxy-wasm 0.2.1 host functions (module `env`), with Envoy's semantics where filters can
//! tell the difference (statuses, CAS, header replace, buffer splicing).

use std::time::Duration;

use wasmtime::{Caller, Linker};

use crate::abi::{self, BufferType, LogLevel, MapType, MetricKind, status};
use crate::memory::{hand_over, read, read_string, write_u32, write_u64};
use crate::metrics::MetricError;
use crate::shared_data::{SetOutcome, lock};
use crate::types::{Callout, Headers, LocalResponse};
use crate::vm::{ROOT_ID, VmState};

type C<'a> = Caller<'a, VmState>;
type R = wasmtime::Result<u32>;

/// Registers every host function on `linker`.
pub(crate) fn define(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    let env = abi::PROXY_WASM_MODULE;

    linker.func_wrap(
        env,
        "proxy_log",
        |mut c: C<'_>, level: u32, ptr: u32, len: u32| -> u32 {
            let Some(message) = read_string(&mut c, ptr, len) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let Some(level) = LogLevel::from_abi(level) else {
                return status::BAD_ARGUMENT;
            };
            c.data().log(level, message);
            status::OK
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_log_level",
        |mut c: C<'_>, ret: u32| -> u32 {
            let level = lock(&c.data().host.settings)
                .log_level
                .unwrap_or(LogLevel::Trace);
            ok_or_memory(write_u32(&mut c, ret, level.to_abi()))
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: u32| -> u32 {
            let now = c.data().host.clock.read_by_module();
            ok_or_memory(write_u64(&mut c, ret, now))
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, ms: u32| -> u32 {
            c.data_mut().tick_period = (ms > 0).then(|| Duration::from_millis(u64::from(ms)));
            status::OK
        },
    )?;

    linker.func_wrap(env, "proxy_get_buffer_bytes", get_buffer_bytes)?;
    linker.func_wrap(env, "proxy_set_buffer_bytes", set_buffer_bytes)?;

    linker.func_wrap(
        env,
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, map: u32, ret_ptr: u32, ret_len: u32| -> R {
            let Some(map) = MapType::from_abi(map) else {
                return Ok(status::BAD_ARGUMENT);
            };
            // A map that does not exist in this context reads as empty (the SDK accepts only Ok).
            let pairs = header_map(c.data_mut(), map)
                .map(|h| h.0.clone())
                .unwrap_or_default();
            hand_over(&mut c, &abi::encode_map(&pairs), ret_ptr, ret_len)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, map: u32, ptr: u32, len: u32| -> u32 {
            let Some(map) = MapType::from_abi(map) else {
                return status::BAD_ARGUMENT;
            };
            let Some(bytes) = read(&mut c, ptr, len) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let Some(pairs) = abi::decode_map(&bytes) else {
                return status::SERIALIZATION_FAILURE;
            };
            if let Some(headers) = header_map(c.data_mut(), map) {
                *headers = Headers(pairs);
            }
            status::OK
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_header_map_value",
        |mut c: C<'_>, map: u32, key_ptr: u32, key_len: u32, ret_ptr: u32, ret_len: u32| -> R {
            let Some(map) = MapType::from_abi(map) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(key) = read_string(&mut c, key_ptr, key_len) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let value = header_map(c.data_mut(), map).and_then(|h| h.get(&key).map(str::to_owned));
            match value {
                Some(value) => hand_over(&mut c, value.as_bytes(), ret_ptr, ret_len),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_replace_header_map_value",
        |mut c: C<'_>,
         map: u32,
         key_ptr: u32,
         key_len: u32,
         value_ptr: u32,
         value_len: u32|
         -> u32 {
            edit_header(
                &mut c,
                map,
                key_ptr,
                key_len,
                Some((value_ptr, value_len)),
                |h, k, v| {
                    h.replace(k, v);
                },
            )
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_add_header_map_value",
        |mut c: C<'_>,
         map: u32,
         key_ptr: u32,
         key_len: u32,
         value_ptr: u32,
         value_len: u32|
         -> u32 {
            edit_header(
                &mut c,
                map,
                key_ptr,
                key_len,
                Some((value_ptr, value_len)),
                |h, k, v| {
                    h.add(k, v);
                },
            )
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_remove_header_map_value",
        |mut c: C<'_>, map: u32, key_ptr: u32, key_len: u32| -> u32 {
            edit_header(&mut c, map, key_ptr, key_len, None, |h, k, _| h.remove(k))
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_property",
        |mut c: C<'_>, path_ptr: u32, path_len: u32, ret_ptr: u32, ret_len: u32| -> R {
            let Some(path) = read(&mut c, path_ptr, path_len) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            match c.data().property(&property_path(&path)) {
                Some(value) => hand_over(&mut c, &value, ret_ptr, ret_len),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_set_property",
        |mut c: C<'_>, path_ptr: u32, path_len: u32, value_ptr: u32, value_len: u32| -> u32 {
            let (Some(path), Some(value)) = (
                read(&mut c, path_ptr, path_len),
                read(&mut c, value_ptr, value_len),
            ) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let path = property_path(&path);
            let state = c.data_mut();
            match state.stream_mut() {
                Some(stream) => stream.properties.insert(path, value),
                None => state.root_properties.insert(path, value),
            };
            status::OK
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_shared_data",
        |mut c: C<'_>, key_ptr: u32, key_len: u32, ret_ptr: u32, ret_len: u32, ret_cas: u32| -> R {
            let Some(key) = read_string(&mut c, key_ptr, key_len) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let Some((value, cas)) = c.data().host.shared_data.get(&key) else {
                return Ok(status::NOT_FOUND);
            };
            if !write_u32(&mut c, ret_cas, cas) {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            hand_over(&mut c, &value, ret_ptr, ret_len)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_set_shared_data",
        |mut c: C<'_>,
         key_ptr: u32,
         key_len: u32,
         value_ptr: u32,
         value_len: u32,
         cas: u32|
         -> u32 {
            let (Some(key), Some(value)) = (
                read_string(&mut c, key_ptr, key_len),
                read(&mut c, value_ptr, value_len),
            ) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            match c.data().host.shared_data.set(&key, value, cas) {
                SetOutcome::Stored => status::OK,
                SetOutcome::CasMismatch => status::CAS_MISMATCH,
            }
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_register_shared_queue",
        |mut c: C<'_>, name_ptr: u32, name_len: u32, ret: u32| -> u32 {
            let Some(name) = read_string(&mut c, name_ptr, name_len) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let (vm, context) = (c.data().vm_id, c.data().effective);
            let id = c.data().host.queues.register(&name, vm, context);
            ok_or_memory(write_u32(&mut c, ret, id))
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, _vm_ptr: u32, _vm_len: u32, name_ptr: u32, name_len: u32, ret: u32| -> u32 {
            // One host = one VM id, so the vm id argument names this host's queues.
            let Some(name) = read_string(&mut c, name_ptr, name_len) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            match c.data().host.queues.resolve(&name) {
                Some(id) => ok_or_memory(write_u32(&mut c, ret, id)),
                None => status::NOT_FOUND,
            }
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, id: u32, ptr: u32, len: u32| -> u32 {
            let Some(item) = read(&mut c, ptr, len) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            if c.data().host.queues.enqueue(id, item) {
                status::OK
            } else {
                status::NOT_FOUND
            }
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: u32, ret_ptr: u32, ret_len: u32| -> R {
            match c.data().host.queues.dequeue(id) {
                None => Ok(status::NOT_FOUND),
                Some(None) => Ok(EMPTY),
                Some(Some(item)) => hand_over(&mut c, &item, ret_ptr, ret_len),
            }
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_continue_stream",
        |mut c: C<'_>, stream: u32| -> u32 {
            let Some(state) = c.data_mut().stream_mut() else {
                return status::BAD_ARGUMENT;
            };
            match stream {
                abi::stream_type::HTTP_REQUEST => state.request_resumed += 1,
                abi::stream_type::HTTP_RESPONSE => state.response_resumed += 1,
                _ => return status::BAD_ARGUMENT,
            }
            status::OK
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_close_stream",
        |mut c: C<'_>, stream: u32| -> u32 {
            let Some(state) = c.data_mut().stream_mut() else {
                return status::BAD_ARGUMENT;
            };
            if stream > abi::stream_type::HTTP_RESPONSE {
                return status::BAD_ARGUMENT;
            }
            state.reset = true;
            status::OK
        },
    )?;

    linker.func_wrap(env, "proxy_send_local_response", send_local_response)?;
    linker.func_wrap(env, "proxy_http_call", http_call)?;

    linker.func_wrap(
        env,
        "proxy_get_status",
        |mut c: C<'_>, ret_code: u32, ret_ptr: u32, ret_len: u32| -> R {
            // Only meaningful for gRPC, which this host does not offer: report "no status".
            if !write_u32(&mut c, ret_code, 0) {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            hand_over(&mut c, b"", ret_ptr, ret_len)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_set_effective_context",
        |mut c: C<'_>, context: u32| -> u32 {
            let state = c.data_mut();
            if context == ROOT_ID || state.streams.contains_key(&context) {
                state.effective = context;
                status::OK
            } else {
                status::BAD_ARGUMENT
            }
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_call_foreign_function",
        |_: C<'_>, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32| -> u32 {
            // Envoy's answer for a foreign function it does not know; ours knows none.
            status::NOT_FOUND
        },
    )?;

    linker.func_wrap(env, "proxy_done", |mut c: C<'_>| -> u32 {
        c.data_mut().done_calls += 1;
        status::OK
    })?;

    linker.func_wrap(
        env,
        "proxy_define_metric",
        |mut c: C<'_>, kind: u32, name_ptr: u32, name_len: u32, ret: u32| -> u32 {
            let Some(kind) = MetricKind::from_abi(kind) else {
                return status::BAD_ARGUMENT;
            };
            let Some(name) = read_string(&mut c, name_ptr, name_len) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            match c.data().host.metrics.define(kind, &name) {
                Ok(id) => ok_or_memory(write_u32(&mut c, ret, id)),
                Err(e) => metric_status(e),
            }
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_increment_metric",
        |c: C<'_>, id: u32, offset: i64| -> u32 {
            c.data()
                .host
                .metrics
                .increment(id, offset)
                .map_or_else(metric_status, |()| status::OK)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_record_metric",
        |c: C<'_>, id: u32, value: u64| -> u32 {
            c.data()
                .host
                .metrics
                .record(id, value)
                .map_or_else(metric_status, |()| status::OK)
        },
    )?;

    linker.func_wrap(
        env,
        "proxy_get_metric",
        |mut c: C<'_>, id: u32, ret: u32| -> u32 {
            match c.data().host.metrics.get(id) {
                Ok(value) => ok_or_memory(write_u64(&mut c, ret, value)),
                Err(e) => metric_status(e),
            }
        },
    )?;

    // gRPC callouts: not offered. The statuses are ones the SDK turns into an `Err` for the
    // filter (InternalFailure for a new call or stream, NotFound for an unknown token).
    linker.func_wrap(
        env,
        "proxy_grpc_call",
        |c: C<'_>,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32,
         _: u32|
         -> u32 {
            c.data().log(
                LogLevel::Warn,
                "harness: gRPC callouts are not supported".to_owned(),
            );
            INTERNAL_FAILURE
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_grpc_stream",
        |c: C<'_>, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32| -> u32 {
            c.data().log(
                LogLevel::Warn,
                "harness: gRPC streams are not supported".to_owned(),
            );
            INTERNAL_FAILURE
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_grpc_send",
        |_: C<'_>, _: u32, _: u32, _: u32, _: u32| -> u32 { status::NOT_FOUND },
    )?;
    linker.func_wrap(env, "proxy_grpc_cancel", |_: C<'_>, _: u32| -> u32 {
        status::NOT_FOUND
    })?;
    linker.func_wrap(env, "proxy_grpc_close", |_: C<'_>, _: u32| -> u32 {
        status::NOT_FOUND
    })?;

    Ok(())
}

/// `Empty` (7): a queue exists but holds nothing.
const EMPTY: u32 = 7;
/// `InternalFailure` (10).
const INTERNAL_FAILURE: u32 = 10;

fn ok_or_memory(ok: bool) -> u32 {
    if ok {
        status::OK
    } else {
        status::INVALID_MEMORY_ACCESS
    }
}

fn metric_status(e: MetricError) -> u32 {
    match e {
        MetricError::NotFound => status::NOT_FOUND,
        MetricError::BadArgument => status::BAD_ARGUMENT,
    }
}

/// A property path arrives as NUL-separated segments; we key properties by the dotted form.
fn property_path(raw: &[u8]) -> String {
    raw.split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(".")
}

/// The header map `map` of the effective context, if it has one.
fn header_map(state: &mut VmState, map: MapType) -> Option<&mut Headers> {
    if matches!(
        map,
        MapType::CallResponseHeaders | MapType::CallResponseTrailers
    ) {
        let response = state.delivery.response.as_mut()?;
        return Some(if map == MapType::CallResponseHeaders {
            &mut response.headers
        } else {
            &mut response.trailers
        });
    }
    let stream = state.stream_mut()?;
    Some(match map {
        MapType::RequestHeaders => &mut stream.request.headers,
        MapType::RequestTrailers => &mut stream.request.trailers,
        MapType::ResponseHeaders => &mut stream.response.headers,
        MapType::ResponseTrailers => &mut stream.response.trailers,
        MapType::CallResponseHeaders | MapType::CallResponseTrailers => return None,
    })
}

fn edit_header(
    c: &mut C<'_>,
    map: u32,
    key_ptr: u32,
    key_len: u32,
    value: Option<(u32, u32)>,
    edit: impl FnOnce(&mut Headers, &str, String),
) -> u32 {
    let Some(map) = MapType::from_abi(map) else {
        return status::BAD_ARGUMENT;
    };
    let Some(key) = read_string(c, key_ptr, key_len) else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let value = match value {
        Some((ptr, len)) => match read_string(c, ptr, len) {
            Some(v) => v,
            None => return status::INVALID_MEMORY_ACCESS,
        },
        None => String::new(),
    };
    // HTTP/2 and Envoy keep header names lower-case.
    let key = key.to_ascii_lowercase();
    if let Some(headers) = header_map(c.data_mut(), map) {
        edit(headers, &key, value);
    }
    status::OK
}

/// The bytes of buffer `buffer` in the effective context, mutable.
fn buffer(state: &mut VmState, buffer: BufferType) -> Option<&mut Vec<u8>> {
    match buffer {
        BufferType::VmConfiguration => Some(&mut state.vm_configuration),
        BufferType::PluginConfiguration => Some(&mut state.plugin_configuration),
        BufferType::CallResponseBody => state.delivery.response.as_mut().map(|r| &mut r.body),
        BufferType::RequestBody => state.stream_mut().map(|s| &mut s.request_buffer),
        BufferType::ResponseBody => state.stream_mut().map(|s| &mut s.response_buffer),
    }
}

fn get_buffer_bytes(
    mut c: C<'_>,
    kind: u32,
    start: u32,
    max: u32,
    ret_ptr: u32,
    ret_len: u32,
) -> R {
    let Some(kind) = BufferType::from_abi(kind) else {
        return Ok(status::BAD_ARGUMENT);
    };
    let Some(bytes) = buffer(c.data_mut(), kind) else {
        return Ok(status::NOT_FOUND);
    };
    let start = usize::try_from(start).unwrap_or(usize::MAX);
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let slice = bytes
        .get(start.min(bytes.len())..)
        .map(|rest| rest.get(..max.min(rest.len())).unwrap_or(rest).to_vec())
        .unwrap_or_default();
    if slice.is_empty() {
        // Envoy reports an empty or exhausted buffer as NotFound.
        return Ok(status::NOT_FOUND);
    }
    hand_over(&mut c, &slice, ret_ptr, ret_len)
}

/// Envoy's splice rules: replace `size` bytes at `start` with the data; start 0 size 0 prepends,
/// a start at or past the end appends.
fn set_buffer_bytes(mut c: C<'_>, kind: u32, start: u32, size: u32, ptr: u32, len: u32) -> u32 {
    let Some(kind) = BufferType::from_abi(kind) else {
        return status::BAD_ARGUMENT;
    };
    let Some(data) = read(&mut c, ptr, len) else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Some(bytes) = buffer(c.data_mut(), kind) else {
        return status::NOT_FOUND;
    };
    let start = usize::try_from(start)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = start
        .saturating_add(usize::try_from(size).unwrap_or(usize::MAX))
        .min(bytes.len());
    bytes.splice(start..end, data);
    status::OK
}

#[allow(clippy::too_many_arguments)]
fn send_local_response(
    mut c: C<'_>,
    status_code: u32,
    details_ptr: u32,
    details_len: u32,
    body_ptr: u32,
    body_len: u32,
    headers_ptr: u32,
    headers_len: u32,
    grpc_status: i32,
) -> u32 {
    let (Some(details), Some(body), Some(raw_headers)) = (
        read_string(&mut c, details_ptr, details_len),
        read(&mut c, body_ptr, body_len),
        read(&mut c, headers_ptr, headers_len),
    ) else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Some(pairs) = abi::decode_map(&raw_headers) else {
        return status::SERIALIZATION_FAILURE;
    };
    let Some(stream) = c.data_mut().stream_mut() else {
        return status::BAD_ARGUMENT;
    };
    stream.local_response = Some(LocalResponse {
        status: status_code,
        details,
        headers: Headers(pairs),
        body,
        grpc_status,
    });
    status::OK
}

#[allow(clippy::too_many_arguments)]
fn http_call(
    mut c: C<'_>,
    cluster_ptr: u32,
    cluster_len: u32,
    headers_ptr: u32,
    headers_len: u32,
    body_ptr: u32,
    body_len: u32,
    trailers_ptr: u32,
    trailers_len: u32,
    timeout_ms: u32,
    ret_token: u32,
) -> u32 {
    let (Some(cluster), Some(raw_headers), Some(body), Some(raw_trailers)) = (
        read_string(&mut c, cluster_ptr, cluster_len),
        read(&mut c, headers_ptr, headers_len),
        read(&mut c, body_ptr, body_len),
        read(&mut c, trailers_ptr, trailers_len),
    ) else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let (Some(headers), Some(trailers)) = (
        abi::decode_map(&raw_headers),
        abi::decode_map(&raw_trailers),
    ) else {
        return status::SERIALIZATION_FAILURE;
    };
    let headers = Headers(headers);
    // Envoy refuses a call it cannot route: missing pseudo-headers or an unknown cluster.
    if [":method", ":path", ":authority"]
        .iter()
        .any(|h| !headers.contains(h))
    {
        c.data().log(LogLevel::Warn, format!("harness: callout to `{cluster}` refused: :method, :path and :authority are required"));
        return status::BAD_ARGUMENT;
    }
    let known = lock(&c.data().host.settings)
        .clusters
        .as_ref()
        .is_none_or(|clusters| clusters.contains(&cluster));
    if !known {
        c.data().log(
            LogLevel::Warn,
            format!("harness: callout refused: unknown cluster `{cluster}`"),
        );
        return status::BAD_ARGUMENT;
    }
    let state = c.data_mut();
    let token = state.next_token;
    state.next_token = state.next_token.wrapping_add(1).max(1);
    let context_id = state.effective;
    state.callouts.insert(
        token,
        Callout {
            token,
            context_id,
            cluster,
            headers,
            body,
            trailers: Headers(trailers),
            timeout: Duration::from_millis(u64::from(timeout_ms)),
            dispatched_at_nanos: state.host.clock.now_nanos(),
        },
    );
    ok_or_memory(write_u32(&mut c, ret_token, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_paths_are_dotted() {
        assert_eq!(property_path(b"source\0address"), "source.address");
        assert_eq!(property_path(b"route_name"), "route_name");
    }
}
