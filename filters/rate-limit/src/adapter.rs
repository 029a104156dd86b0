//! The thin layer between the proxy-wasm host and the plain-Rust engine: configuration, clock,
//! request headers, shared data, metrics, local replies. No decisions are made here.

use std::borrow::Cow;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, Status};
use wasmgate_filter_common::headers::HeaderSnapshot;
use wasmgate_filter_common::host::chain::{StageRoot, plugin_configuration};
use wasmgate_filter_common::host::clock;
use wasmgate_filter_common::host::counters::{BatchedCounters, tick_for_flushing};
use wasmgate_filter_common::host::headers::{request_headers, with_request_headers};
use wasmgate_filter_common::host::log_config_error;

use crate::FILTER_NAME;
use crate::config::{self, AppendAction, Config};
use crate::engine::{self, Decision, Event, Metrics};
use crate::headers::ResponseHeaders;
use crate::keys::RequestView;
use crate::limiter::CREATE_CAS;
use crate::store::{SetError, SharedStore};

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

/// The filter's root context (see `root_context`).
pub struct Root {
    state: Option<Rc<State>>,
}

impl StageRoot for Root {
    type Stream = Http;

    fn new(_context_id: u32) -> Self {
        Self { state: None }
    }

    fn stream(&self, _context_id: u32) -> Http {
        Http {
            state: self.state.clone(),
            response_headers: None,
        }
    }
}

/// What every request of this plugin shares: the checked configuration and the metric ids.
struct State {
    config: Config,
    metrics: HostMetrics,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_tick(&mut self) {
        if let Some(state) = &self.state {
            state.metrics.flush();
        }
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = plugin_configuration();
        match config::load(&bytes) {
            Ok(config) => {
                let metrics = HostMetrics::define(&config);
                log(
                    LogLevel::Info,
                    &format!(
                        "{FILTER_NAME}: configured {} policies, table `{}` of {} slots",
                        config.policies.len(),
                        config.table.name,
                        config.table.slots
                    ),
                );
                self.state = Some(Rc::new(State { config, metrics }));
                tick_for_flushing();
                true
            }
            Err(error) => {
                log_config_error(FILTER_NAME, &error);
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(self.stream(context_id)))
    }
}

/// One request's context.
pub struct Http {
    state: Option<Rc<State>>,
    /// Rate-limit headers for the response of a request that was let through.
    response_headers: Option<ResponseHeaders>,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(state) = self.state.clone() else {
            // Envoy does not create contexts for a plugin whose configuration was refused.
            return Action::Continue;
        };
        // The request headers are read from the host once for the policies' keys.
        let verdict = with_request_headers(|| {
            let headers = request_headers();
            engine::decide(
                &state.config,
                &HostStore,
                &HostRequest::read(&headers),
                now_ns(),
                &state.metrics,
            )
        });
        if let Some((level, line)) = &verdict.log {
            let level = match level {
                engine::LogLevel::Debug => LogLevel::Debug,
                engine::LogLevel::Info => LogLevel::Info,
                engine::LogLevel::Warn => LogLevel::Warn,
            };
            log(level, line);
        }
        match verdict.decision {
            Decision::Allow { response_headers } => {
                self.response_headers = response_headers;
                Action::Continue
            }
            Decision::Deny {
                status,
                headers,
                body,
            } => {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                if let Err(status) =
                    hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()))
                {
                    log(
                        LogLevel::Error,
                        &format!("{FILTER_NAME}: could not send the local reply: {status:?}"),
                    );
                }
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let (Some(headers), Some(state)) = (self.response_headers.take(), &self.state) {
            let map = MapType::HttpResponseHeaders;
            match state.config.append_action {
                AppendAction::OverwriteIfExistsOrAdd => headers.write(|name, value| {
                    let _ = hostcalls::set_map_value(map, name, Some(value));
                }),
                AppendAction::AppendIfExistsOrAdd => headers.write(|name, value| {
                    let _ = hostcalls::add_map_value(map, name, value);
                }),
            }
        }
        Action::Continue
    }
}

fn log(level: LogLevel, line: &str) {
    let _ = hostcalls::log(level, line);
}

/// Wall-clock nanoseconds, the clock every proxy-wasm host provides. A failure reads as 0, which
/// the bucket treats as a backward step (no refill), never as a panic.
fn now_ns() -> u64 {
    clock::nanos_since_epoch().unwrap_or(0)
}

/// The request as the engine sees it, borrowed from the request headers; `:path` is looked up
/// once, everything else only if a policy asks.
struct HostRequest<'h> {
    headers: &'h HeaderSnapshot,
    path: Cow<'h, str>,
}

impl<'h> HostRequest<'h> {
    fn read(headers: &'h HeaderSnapshot) -> Self {
        Self {
            headers,
            path: headers.text(":path").unwrap_or_default(),
        }
    }
}

impl RequestView for HostRequest<'_> {
    fn method(&self) -> Cow<'_, str> {
        self.headers.text(":method").unwrap_or_default()
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers.text(name)
    }
    fn source_address(&self) -> Option<String> {
        let bytes = hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()?;
        String::from_utf8(bytes).ok()
    }
}

/// Proxy-wasm shared data.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, String> {
        match hostcalls::get_shared_data(key) {
            // A value without a CAS cannot be updated safely; a CAS that never matches makes
            // every write to it a retry and then the configured failure mode, never a blind write.
            Ok((Some(value), cas)) => Ok(Some((value, cas.unwrap_or(CREATE_CAS)))),
            Ok((None, _)) => Ok(None),
            Err(status) => Err(format!("get_shared_data: {status:?}")),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        match wasmgate_filter_common::host::set_shared_data(key, value, Some(cas)) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetError::CasMismatch),
            Err(status) => Err(SetError::Other(format!("set_shared_data: {status:?}"))),
        }
    }
}

/// The filter's counters, defined once per configuration and counted in the VM; the root context
/// flushes them to the host on its tick and when it goes away (`common::host::counters`).
/// Envoy exposes them with the `wasmcustom.` prefix.
struct HostMetrics {
    counters: BatchedCounters,
    /// How many policies have their five counters first in `counters`.
    policies: usize,
}

/// Each policy's counters, in this order, at `policy index × 5`.
const PER_POLICY: [&str; 5] = [
    "allowed",
    "limited",
    "dry_run_limited",
    "missing_key",
    "failures",
];

impl HostMetrics {
    fn define(config: &Config) -> Self {
        let per_policy = config.policies.iter().flat_map(|p| {
            PER_POLICY
                .iter()
                .map(move |what| format!("{FILTER_NAME}.policy.{}.{what}", p.name))
        });
        let filter_wide = ["cas_retries", "evictions"].map(|what| format!("{FILTER_NAME}.{what}"));
        Self {
            counters: BatchedCounters::define(FILTER_NAME, per_policy.chain(filter_wide)),
            policies: config.policies.len(),
        }
    }

    fn flush(&self) {
        self.counters.flush();
    }
}

impl Metrics for HostMetrics {
    fn count(&self, event: Event) {
        let policy = |i: usize, what: usize| i.saturating_mul(PER_POLICY.len()) + what;
        let filter_wide = self.policies.saturating_mul(PER_POLICY.len());
        let (slot, by) = match event {
            Event::Allowed(i) => (policy(i, 0), 1),
            Event::Limited(i) => (policy(i, 1), 1),
            Event::DryRunLimited(i) => (policy(i, 2), 1),
            Event::MissingKey(i) => (policy(i, 3), 1),
            Event::Failure(i) => (policy(i, 4), 1),
            Event::CasRetries(n) => (filter_wide, i64::from(n)),
            Event::Evictions(n) => (filter_wide + 1, i64::from(n)),
        };
        self.counters.add(slot, by);
    }
}
