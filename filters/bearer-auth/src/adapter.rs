//! The thin layer between the proxy-wasm host and the plain-Rust modules: configuration, clock,
//! request headers, shared data, the JWKS callout, ticks, paused requests, metrics, local replies.
//! Decisions are made in `engine` and `refresh`; this module only reads and applies.
//!
//! Paused requests: a request that needs keys this VM does not have (none yet, or an unknown
//! `kid`) is paused and remembered by context id. The root context fetches (if it wins the lease)
//! or watches shared data on a fast tick; once the key set changed, a fetch attempt completed, or
//! the wait ran out, it makes the request's context effective again and decides it for good.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use wasmgate_filter_common::RequestInfo;
use wasmgate_filter_common::host::log_config_error;

use crate::FILTER_NAME;
use crate::challenge::{Denial, respond};
use crate::config::{Config, JwksSource};
use crate::engine::{Engine, IDENTITY_HEADER_PREFIX, Outcome, RequestView, Wait, WaitPolicy};
use crate::jwks::{MAX_JWKS_BYTES, parse_jwks};
use crate::metrics::{Metric, Metrics};
use crate::refresh::{Acquire, RefreshState, Refresher, SharedStore, StoreError, Why};

// The module's entry point exists only in the wasm build: on the host, where xtask links the three
// filters into one binary (for their config schemas), each crate's `_initialize` would clash.
#[cfg(target_family = "wasm")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    wasmgate_filter_common::host::install_panic_hook(FILTER_NAME);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { id: context_id, vm: None })
    });
}}

/// Tick while requests wait for keys (and right after configure, for the first fetch).
const FAST_TICK: Duration = Duration::from_millis(10);
/// Tick otherwise: watches shared data for a new key set and the refresh schedule.
const SLOW_TICK: Duration = Duration::from_millis(1000);

/// A paused request.
struct Waiter {
    context_id: u32,
    since_ms: u64,
    kind: Wait,
    generation_seen: u64,
    attempts_seen: u64,
    /// Set when no fetch will come for it (rate-limited): answer on the next tick.
    give_up: bool,
}

/// What the root and the HTTP contexts of one VM share.
struct VmState {
    engine: Engine,
    refresher: Option<Refresher>,
    metrics: HostMetrics,
    waiters: Vec<Waiter>,
    /// A fetch an HTTP context asked for; the root starts it on its next tick.
    wanted: Option<Why>,
    /// The callout in flight from this VM, if any.
    in_flight: Option<u32>,
    fast_tick: bool,
}

type Shared = Rc<RefCell<VmState>>;

struct Root {
    id: u32,
    vm: Option<Shared>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _: usize) {
        let Some(vm) = self.vm.clone() else { return };
        let now = now_ms();
        {
            let mut state = vm.borrow_mut();
            if state.in_flight != Some(token) {
                return;
            }
            state.in_flight = None;
            finish_fetch(&mut state, body_size, now);
        }
        resolve_waiters(&vm, self.id, now);
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = match Config::from_json(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log_config_error(FILTER_NAME, &e);
                return false;
            }
        };
        let refresher = match &config.jwks {
            JwksSource::Remote(remote) => {
                let refresher = Refresher::new(remote, vm_nonce(self.id));
                refresher.ensure_state(&HostStore);
                Some(refresher)
            }
            JwksSource::Inline(_) => None,
        };
        log(
            LogLevel::Info,
            &format!(
                "{FILTER_NAME}: configured, issuer {}, keys {}",
                config.issuer,
                match &config.jwks {
                    JwksSource::Remote(r) =>
                        format!("from cluster `{}` path {}", r.cluster, r.path),
                    JwksSource::Inline(set) => format!("inline ({} keys)", set.len()),
                }
            ),
        );
        let fast = refresher.is_some();
        self.vm = Some(Rc::new(RefCell::new(VmState {
            engine: Engine::new(config),
            refresher,
            metrics: HostMetrics::define(),
            waiters: Vec::new(),
            wanted: None,
            in_flight: None,
            fast_tick: fast,
        })));
        if fast {
            // The first tick comes almost at once: keys are fetched before the first request.
            let _ = hostcalls::set_tick_period(FAST_TICK);
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(vm) = self.vm.clone() else { return };
        let now = now_ms();
        {
            let mut state = vm.borrow_mut();
            sync_keys(&mut state);
            maybe_fetch(&mut state, now);
        }
        resolve_waiters(&vm, self.id, now);
        let mut state = vm.borrow_mut();
        let want_fast = !state.waiters.is_empty() || state.wanted.is_some();
        if want_fast != state.fast_tick {
            state.fast_tick = want_fast;
            let _ = hostcalls::set_tick_period(if want_fast { FAST_TICK } else { SLOW_TICK });
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            id: context_id,
            vm: self.vm.clone(),
        }))
    }
}

struct Request {
    id: u32,
    vm: Option<Shared>,
}

impl Context for Request {
    fn on_done(&mut self) -> bool {
        // A paused request whose client went away is forgotten.
        if let Some(vm) = &self.vm
            && let Ok(mut state) = vm.try_borrow_mut()
        {
            state.waiters.retain(|w| w.context_id != self.id);
        }
        true
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(vm) = self.vm.clone() else {
            // Not configured: the host should not have started the filter; fail closed.
            return send(&respond(
                &Denial::KeysUnavailable {
                    retry_after_seconds: 5,
                },
                "wasmgate",
            ));
        };
        let now = now_ms();
        match handle(&vm, now, true) {
            Handled::Continue => Action::Continue,
            Handled::Responded => Action::Pause,
            Handled::Wait(kind) => {
                let mut state = vm.borrow_mut();
                let (shared, _) = state
                    .refresher
                    .as_ref()
                    .map(|r| r.read(&HostStore))
                    .unwrap_or_default();
                let why = match kind {
                    Wait::NoKeys => Why::Periodic,
                    Wait::UnknownKid => Why::UnknownKid,
                };
                state.wanted = Some(match state.wanted {
                    Some(Why::UnknownKid) => Why::UnknownKid,
                    _ => why,
                });
                let generation_seen = state.engine.generation();
                state.waiters.push(Waiter {
                    context_id: self.id,
                    since_ms: now,
                    kind,
                    generation_seen,
                    attempts_seen: shared.attempts,
                    give_up: false,
                });
                if !state.fast_tick {
                    state.fast_tick = true;
                    let _ = hostcalls::set_tick_period(FAST_TICK);
                }
                Action::Pause
            }
        }
    }
}

enum Handled {
    Continue,
    Responded,
    Wait(Wait),
}

/// Decides the request of the effective context and applies the decision. With `can_wait`,
/// a request that needs keys which may still come is left for the caller to pause.
fn handle(vm: &Shared, now: u64, can_wait: bool) -> Handled {
    let method = header_text(":method");
    let path = header_text(":path");
    let host = header_text(":authority");
    let authorization = header_bytes("authorization");
    let view = RequestView {
        info: RequestInfo {
            method: &method,
            path: &path,
            host: &host,
        },
        authorization: authorization.as_deref(),
    };
    let outcome = {
        let mut state = vm.borrow_mut();
        let state = &mut *state;
        // The shared record is only read when there are no keys yet (for Retry-After), to keep
        // the hot path free of shared-data calls.
        let retry_after_seconds = match (&state.refresher, state.engine.has_keys()) {
            (Some(r), false) => r.retry_after_seconds(&r.read(&HostStore).0, now),
            _ => 1,
        };
        let policy = |may_wait| WaitPolicy {
            may_wait,
            retry_after_seconds,
        };
        let mut outcome = state
            .engine
            .decide(&view, now, policy(can_wait), &state.metrics);
        if let Outcome::NeedKeys(_) = outcome {
            // Another VM may already have fetched what we need.
            if sync_keys(state) {
                outcome = state
                    .engine
                    .decide(&view, now, policy(can_wait), &state.metrics);
            }
        }
        if let Outcome::NeedKeys(kind) = outcome {
            let why = match kind {
                Wait::NoKeys => Why::Periodic,
                Wait::UnknownKid => Why::UnknownKid,
            };
            let worth_waiting = state.refresher.as_ref().is_some_and(|r| {
                let (shared, _) = r.read(&HostStore);
                r.lease_held(&shared, now) || r.due(&shared, why, now)
            });
            if worth_waiting {
                return Handled::Wait(kind);
            }
            outcome = state
                .engine
                .decide(&view, now, policy(false), &state.metrics);
        }
        outcome
    };
    let state = vm.borrow();
    apply(&outcome, &state, &view)
}

fn apply(outcome: &Outcome, state: &VmState, view: &RequestView<'_>) -> Handled {
    match outcome {
        Outcome::Allow(allow) => {
            // Spoofed identity headers go first, whatever the route.
            for name in request_header_names() {
                if name.starts_with(IDENTITY_HEADER_PREFIX) {
                    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, None);
                }
            }
            for (name, value) in &allow.set_headers {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
            }
            if allow.remove_authorization {
                let _ =
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, "authorization", None);
            }
            if let Some(path) = &allow.new_path {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(path));
            }
            state.metrics.count(if allow.anonymous {
                Metric::AllowedAnonymous
            } else {
                Metric::Allowed
            });
            Handled::Continue
        }
        Outcome::Deny(denial) => {
            state.metrics.count(Metric::denied(denial));
            let response = respond(denial, &state.engine.config().realm);
            log(
                if matches!(denial, Denial::NoToken) {
                    LogLevel::Debug
                } else {
                    LogLevel::Info
                },
                &format!(
                    "{FILTER_NAME}: {} {}: {} ({} {})",
                    response.status,
                    denial.label(),
                    denial.reason(),
                    view.info.method,
                    view.info.path_only()
                ),
            );
            send(&response);
            Handled::Responded
        }
        // Only reached when waiting was not allowed; the engine then never asks for keys.
        Outcome::NeedKeys(_) => {
            send(&respond(
                &Denial::KeysUnavailable {
                    retry_after_seconds: 1,
                },
                "wasmgate",
            ));
            Handled::Responded
        }
    }
}

/// Loads the shared key set into this VM if its generation moved. Returns whether it changed.
fn sync_keys(state: &mut VmState) -> bool {
    let Some(refresher) = &state.refresher else {
        return false;
    };
    let (shared, _) = refresher.read(&HostStore);
    if shared.generation == state.engine.generation() {
        return false;
    }
    let Some(document) = refresher.document(&HostStore) else {
        return false;
    };
    match parse_jwks(&document) {
        Ok(parsed) => {
            state.engine.set_keys(parsed.set, shared.generation);
            true
        }
        Err(e) => {
            // The fetcher validated it; seeing this means shared data was tampered with.
            log(
                LogLevel::Warn,
                &format!("{FILTER_NAME}: shared JWKS unusable: {e}"),
            );
            state.engine.mark_generation(shared.generation);
            false
        }
    }
}

fn maybe_fetch(state: &mut VmState, now: u64) {
    let Some(refresher) = &state.refresher else {
        return;
    };
    if state.in_flight.is_some() {
        return;
    }
    let wanted = state.wanted.take();
    let why = wanted.unwrap_or(Why::Periodic);
    match refresher.try_acquire(&HostStore, why, now) {
        Acquire::Acquired => {
            let cfg = refresher.config();
            let headers = vec![
                (":method", "GET"),
                (":path", cfg.path.as_str()),
                (":authority", cfg.authority.as_str()),
                ("accept", "application/json"),
            ];
            let timeout = Duration::from_millis(cfg.timeout_ms);
            match hostcalls::dispatch_http_call(&cfg.cluster, headers, None, vec![], timeout) {
                Ok(token) => state.in_flight = Some(token),
                Err(status) => {
                    log(
                        LogLevel::Warn,
                        &format!(
                            "{FILTER_NAME}: JWKS fetch from cluster `{}` could not start: {status:?}",
                            cfg.cluster
                        ),
                    );
                    refresher.complete_failed(&HostStore, now);
                    state.metrics.count(Metric::JwksRefreshFailed);
                }
            }
        }
        Acquire::NotDue => {
            // Nothing will be fetched for these requests (rate limit or retry delay): answer now.
            if wanted.is_some() {
                for w in &mut state.waiters {
                    let kind_matches = match why {
                        Why::UnknownKid => w.kind == Wait::UnknownKid,
                        Why::Periodic => w.kind == Wait::NoKeys,
                    };
                    if kind_matches {
                        w.give_up = true;
                    }
                }
            }
        }
        Acquire::Busy => {}
        Acquire::Failed => {
            log(
                LogLevel::Warn,
                &format!("{FILTER_NAME}: shared data refused the refresh lease"),
            );
        }
    }
}

fn finish_fetch(state: &mut VmState, body_size: usize, now: u64) {
    // Whoever asked for a fetch meanwhile is answered by this one: its waiters see the attempt
    // count move.
    state.wanted = None;
    let Some(refresher) = &state.refresher else {
        return;
    };
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .map(|s| String::from_utf8_lossy(&s).into_owned());
    let result = if status.as_deref() != Some("200") {
        Err(format!(
            "status {}",
            status.as_deref().unwrap_or("none (timeout or reset)")
        ))
    } else if body_size > MAX_JWKS_BYTES {
        Err(format!("body of {body_size} bytes is too large"))
    } else {
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match parse_jwks(&body) {
            Ok(parsed) => Ok((body, parsed)),
            Err(e) => Err(e.to_string()),
        }
    };
    match result {
        Ok((body, parsed)) => {
            for skipped in &parsed.skipped {
                log(
                    LogLevel::Warn,
                    &format!("{FILTER_NAME}: JWKS key skipped: {skipped}"),
                );
            }
            if refresher.complete_ok(&HostStore, &body, now) {
                state.metrics.count(Metric::JwksRefreshOk);
                log(
                    LogLevel::Info,
                    &format!("{FILTER_NAME}: JWKS refreshed, {} keys", parsed.set.len()),
                );
                sync_keys(state);
            } else {
                state.metrics.count(Metric::JwksRefreshFailed);
            }
        }
        Err(reason) => {
            log(
                LogLevel::Warn,
                &format!(
                    "{FILTER_NAME}: JWKS refresh failed, keeping the last good keys: {reason}"
                ),
            );
            refresher.complete_failed(&HostStore, now);
            state.metrics.count(Metric::JwksRefreshFailed);
        }
    }
}

/// Decides every paused request that has waited enough: keys changed, an attempt completed,
/// no fetch will come, or the wait ran out.
fn resolve_waiters(vm: &Shared, root_id: u32, now: u64) {
    let ready: Vec<u32> = {
        let mut state = vm.borrow_mut();
        let (shared, _): (RefreshState, _) = state
            .refresher
            .as_ref()
            .map(|r| r.read(&HostStore))
            .unwrap_or_default();
        let max_wait = state
            .refresher
            .as_ref()
            .map_or(0, |r| r.config().max_wait_ms);
        let generation = state.engine.generation();
        let (ready, waiting): (Vec<Waiter>, Vec<Waiter>) = state.waiters.drain(..).partition(|w| {
            w.give_up
                || generation != w.generation_seen
                || shared.attempts > w.attempts_seen
                || now >= w.since_ms.saturating_add(max_wait)
        });
        state.waiters = waiting;
        ready.into_iter().map(|w| w.context_id).collect()
    };
    if ready.is_empty() {
        return;
    }
    for id in ready {
        if hostcalls::set_effective_context(id).is_err() {
            continue; // the stream is gone
        }
        if let Handled::Continue = handle(vm, now, false) {
            let _ = hostcalls::resume_http_request();
        }
    }
    let _ = hostcalls::set_effective_context(root_id);
}

fn send(response: &crate::challenge::Response) -> Action {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let _ = hostcalls::send_http_response(response.status, headers, Some(&response.body));
    Action::Pause
}

fn log(level: LogLevel, line: &str) {
    let _ = hostcalls::log(level, line);
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A number that tells this VM apart from the others as lease holder: random (WASI random_get
/// seeds std's hasher keys) mixed with the context id.
fn vm_nonce(context_id: u32) -> u64 {
    RandomState::new().hash_one(context_id).max(1)
}

fn header_bytes(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

/// Pseudo-headers are ASCII in every host; anything else is read lossily rather than trusted.
fn header_text(name: &str) -> String {
    header_bytes(name)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The request's header names. The SDK's `get_map` would panic on a name that is not UTF-8, so
/// the map is read with the raw hostcall and decoded here, skipping such names.
fn request_header_names() -> Vec<String> {
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
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
            Ok((Some(bytes), None)) => Some((bytes, 0)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Other),
        }
    }
}

/// Counter ids defined once at configure time.
struct HostMetrics {
    ids: HashMap<Metric, u32>,
}

impl HostMetrics {
    fn define() -> Self {
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
