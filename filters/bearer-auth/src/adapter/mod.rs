//! The thin layer between the proxy-wasm host and the plain-Rust modules: configuration, clock,
//! request headers, shared data, the JWKS callout, ticks, paused requests, metrics, local replies.
//! Decisions are made in `engine` and `refresh`; this module only reads and applies.
//!
//! Paused requests: a request that needs keys this VM does not have (none yet, or an unknown
//! `kid`) is paused and remembered by context id. The root context fetches (if it wins the lease)
//! or watches shared data on a fast tick; once the key set changed, a fetch attempt completed, or
//! the wait ran out, it makes the request's context effective again and decides it for good.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use wasmgate_filter_common::RequestInfo;
use wasmgate_filter_common::headers::HeaderSnapshot;
use wasmgate_filter_common::host::chain::{StageRoot, plugin_configuration, resume_request};
use wasmgate_filter_common::host::headers::{
    clear_owned_request_headers, request_headers, set_request_header, with_request_headers,
};
use wasmgate_filter_common::host::log_config_error;

use crate::FILTER_NAME;
use crate::cache::CacheKey;
use crate::challenge::{Denial, respond};
use crate::config::{Config, JwksSource};
use crate::engine::{Allow, Engine, Outcome, RequestView, Wait, WaitPolicy};
use crate::metrics::{Metric, Metrics};
use crate::refresh::{RefreshState, Refresher, Why};

use host::{HostMetrics, HostStore, log, now_ms, vm_nonce};
use keys::{finish_fetch, maybe_fetch, sync_keys};

mod host;
mod keys;

// The module's entry point exists only in the wasm build with feature `entry-point` (the default):
// on the host, where xtask links the three filters into one binary (for their config schemas), and
// in the one-module chain (filters/chain), each crate's `_initialize` would clash.
#[cfg(all(target_family = "wasm", feature = "entry-point"))]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    wasmgate_filter_common::host::install_panic_hook(FILTER_NAME);
    proxy_wasm::set_root_context(root_context);
}}

/// The filter's root context: what the entry point installs, and what the one-module chain
/// (filters/chain) runs as a stage.
pub fn root_context(context_id: u32) -> Box<dyn RootContext> {
    Box::new(Root::new(context_id))
}

/// Tick while requests wait for keys (and right after configure, for the first fetch).
const FAST_TICK: Duration = Duration::from_millis(10);
/// Tick otherwise: watches shared data for a new key set and the refresh schedule, and hands the
/// counters to the host (so Envoy's stats lag the requests by at most this much).
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

/// The filter's root context (see `root_context`).
pub struct Root {
    id: u32,
    vm: Option<Shared>,
}

impl StageRoot for Root {
    type Stream = Request;

    fn new(context_id: u32) -> Self {
        Self {
            id: context_id,
            vm: None,
        }
    }

    fn stream(&self, context_id: u32) -> Request {
        Request {
            id: context_id,
            vm: self.vm.clone(),
        }
    }
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
        vm.borrow().metrics.flush();
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = plugin_configuration();
        let config = match Config::from_json(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log_config_error(FILTER_NAME, &e);
                return false;
            }
        };
        let cache_key = match CacheKey::random() {
            Ok(key) => key,
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!(
                        "{FILTER_NAME}: no randomness from the host for the token cache's key \
                         (WASI random_get): {e}"
                    ),
                );
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
            engine: Engine::new(config, cache_key),
            refresher,
            metrics: HostMetrics::define(),
            waiters: Vec::new(),
            wanted: None,
            in_flight: None,
            fast_tick: fast,
        })));
        // With a remote JWKS the first tick comes almost at once, so keys are fetched before the
        // first request; the slow tick flushes the counters (and watches for new keys).
        let _ = hostcalls::set_tick_period(if fast { FAST_TICK } else { SLOW_TICK });
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
        state.metrics.flush();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(self.stream(context_id)))
    }
}

/// One request's context.
pub struct Request {
    id: u32,
    vm: Option<Shared>,
}

impl Context for Request {}

impl Drop for Request {
    fn drop(&mut self) {
        // A paused request whose client went away is forgotten. In `Drop` rather than `on_done`:
        // the module then does not export `proxy_on_done`, and the host does not enter the VM for
        // it on every request (the SDK drops the context on `proxy_on_delete`).
        if let Some(vm) = &self.vm
            && let Ok(mut state) = vm.try_borrow_mut()
        {
            state.waiters.retain(|w| w.context_id != self.id);
        }
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
/// a request that needs keys which may still come is left for the caller to pause. The request
/// headers are read from the host once for all of it.
fn handle(vm: &Shared, now: u64, can_wait: bool) -> Handled {
    with_request_headers(|| decide_and_apply(vm, now, can_wait))
}

fn decide_and_apply(vm: &Shared, now: u64, can_wait: bool) -> Handled {
    // Borrowed from the shared copy; let go of before `let_through` writes, so no write copies it.
    let headers = request_headers();
    let text = |name| headers.text(name).unwrap_or_default();
    // The method and the host are read only for rules on them.
    let reads = vm.borrow().engine.config().rules.reads();
    let text_if = |read, name| if read { text(name) } else { Cow::Borrowed("") };
    let method = text_if(reads.method, ":method");
    let path = text(":path");
    let host = text_if(reads.host, ":authority");
    let authorization = headers.value("authorization");
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
    match &outcome {
        Outcome::Allow(allow) => {
            // Let go of the headers first: writing while holding them would copy them.
            drop(headers);
            let_through(allow, &state)
        }
        refusal => answer(refusal, &state, &view, &headers),
    }
}

fn let_through(allow: &Allow, state: &VmState) -> Handled {
    // Spoofed identity headers go first, whatever the route.
    let owned = state.engine.owned_headers();
    let cleared = clear_owned_request_headers(FILTER_NAME, &owned);
    for (name, value) in allow.identity_headers() {
        cleared.set(name, value);
    }
    if allow.remove_authorization {
        set_request_header(FILTER_NAME, "authorization", None);
    }
    if let Some(path) = &allow.new_path {
        set_request_header(FILTER_NAME, ":path", Some(path));
    }
    state.metrics.count(if allow.anonymous {
        Metric::AllowedAnonymous
    } else {
        Metric::Allowed
    });
    Handled::Continue
}

/// Answers a request that is not let through.
/// `headers`: for the method in the log line, which `view` has only for rules on it.
fn answer(
    outcome: &Outcome,
    state: &VmState,
    view: &RequestView<'_>,
    headers: &HeaderSnapshot,
) -> Handled {
    match outcome {
        // `decide_and_apply` lets allowed requests through itself.
        Outcome::Allow(allow) => let_through(allow, state),
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
                    headers.text(":method").unwrap_or_default(),
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
            resume_request(id);
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
