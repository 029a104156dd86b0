//! The only module that talks to the proxy-wasm host (ABI 0.2.1): reads the configuration and
//! the request headers, carries out the engine's evaluation, counts hits. Host calls go through
//! `hostcalls` directly so that a failing call is logged instead of panicking the VM.

use std::borrow::Cow;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use wasmgate_filter_common::headers::{HeaderSnapshot, OwnedHeaders};
use wasmgate_filter_common::host::chain::{StageRoot, plugin_configuration};
use wasmgate_filter_common::host::counters::{BatchedCounters, tick_for_flushing};
use wasmgate_filter_common::host::headers::{
    clear_owned_request_headers, request_headers, set_request_header, with_request_headers,
};
use wasmgate_filter_common::host::log_config_error;

use crate::engine::{Outcome, RequestHeaders, RuleSet};
use crate::{ORIGINAL_PATH_HEADER, UPSTREAM_HEADER};

const FILTER_NAME: &str = "route-rewrite";

/// Headers only this filter may set: a client's own copies never reach the upstream.
const OWNED: OwnedHeaders<'static, &str> = OwnedHeaders {
    prefix: None,
    names: &[UPSTREAM_HEADER, ORIGINAL_PATH_HEADER],
};

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

/// What every request of this plugin shares: the rules and their hit counters.
struct Filter {
    rules: RuleSet,
    /// Counter `i` counts applications of `rules.rules()[i]`; the root context flushes them to
    /// the host on its tick and when it goes away.
    hits: BatchedCounters,
}

/// The filter's root context (see `root_context`).
pub struct Root {
    filter: Option<Rc<Filter>>,
}

impl StageRoot for Root {
    type Stream = Stream;

    fn new(_context_id: u32) -> Self {
        Self { filter: None }
    }

    fn stream(&self, _context_id: u32) -> Stream {
        // Without a valid configuration Envoy does not create streams; should a host do it
        // anyway, the request passes through untouched.
        Stream {
            filter: self.filter.clone(),
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_tick(&mut self) {
        if let Some(filter) = &self.filter {
            filter.hits.flush();
        }
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = plugin_configuration();
        match crate::config::load(&bytes) {
            Ok(rules) => {
                let names = rules
                    .rules()
                    .iter()
                    .map(|rule| format!("route_rewrite.rule.{}.hits", rule.label));
                let hits = BatchedCounters::define(FILTER_NAME, names);
                tick_for_flushing();
                log(
                    LogLevel::Info,
                    &format!("{FILTER_NAME}: loaded {} rule(s)", rules.rules().len()),
                );
                self.filter = Some(Rc::new(Filter { rules, hits }));
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
pub struct Stream {
    filter: Option<Rc<Filter>>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // The request headers are read from the host once for the rules and the removals.
        with_request_headers(|| self.rewrite())
    }
}

impl Stream {
    fn rewrite(&self) -> Action {
        // Removed before the rules see the request; each is then written at most once below.
        let owned = clear_owned_request_headers(FILTER_NAME, &OWNED);
        let Some(filter) = &self.filter else {
            return Action::Continue;
        };
        // Read through a shared copy, let go of before the writes below (which would copy it).
        let headers = request_headers();
        let evaluation = filter.rules.evaluate(&*headers);
        let forwarding = filter.rules.forwarding();
        // Kept only for a rewrite of the path, which sends it on in `x-wasmgate-original-path`
        // unless the configuration says not to.
        let original_path = match &evaluation.outcome {
            Outcome::Continue(rewrite)
                if rewrite.path.is_some() && forwarding.send_original_path =>
            {
                headers.text(":path").map(Cow::into_owned)
            }
            _ => None,
        };
        drop(headers);
        for position in &evaluation.hits {
            filter.hits.add(*position, 1);
        }
        if let Some(error) = &evaluation.error {
            log(LogLevel::Error, &format!("{FILTER_NAME}: {error}"));
        }
        match evaluation.outcome {
            Outcome::Continue(rewrite) => {
                if let Some(path) = &rewrite.path {
                    if let Some(original) = &original_path {
                        owned.set(ORIGINAL_PATH_HEADER, original);
                    }
                    set_header(":path", Some(path));
                }
                if let Some(authority) = rewrite.authority.filter(|_| !forwarding.preserve_host) {
                    set_header(":authority", Some(&authority));
                }
                if let Some(upstream) = &rewrite.upstream {
                    owned.set(UPSTREAM_HEADER, upstream);
                }
                Action::Continue
            }
            Outcome::Respond(reply) => {
                let headers: Vec<(&str, &str)> = reply
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let sent = hostcalls::send_http_response(
                    u32::from(reply.status),
                    headers,
                    reply.body.as_deref().map(str::as_bytes),
                );
                if let Err(status) = sent {
                    log(
                        LogLevel::Error,
                        &format!(
                            "{FILTER_NAME}: could not send the {} answer: {status:?}",
                            reply.status
                        ),
                    );
                }
                Action::Pause
            }
        }
    }
}

/// The rules read the request headers from the copy `with_request_headers` read.
impl RequestHeaders for HeaderSnapshot {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.text(name)
    }
}

fn set_header(name: &str, value: Option<&str>) {
    set_request_header(FILTER_NAME, name, value);
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rewrite` writes these through `ClearedHeaders::set`, which takes them as owned without
    /// asking again.
    #[test]
    fn the_headers_the_filter_writes_are_the_ones_it_owns() {
        for name in [UPSTREAM_HEADER, ORIGINAL_PATH_HEADER] {
            assert!(OWNED.claims(name.as_bytes()), "{name}");
        }
    }
}
