//! The root and stream contexts of the chain: each delegates to the stages' own contexts, in
//! order, and stops where a stage stops the request (an answer of its own, or a pause).
//!
//! A request a stage paused (bearer-auth waiting for keys) is resumed by that stage through
//! `common::host::chain::resume_request`, which lands in `continue_after_pause`: the later stages
//! run first, and the request is resumed only if they let it through.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use wasmgate_filter_common::host::chain::{
    plugin_configuration, set_continuation, with_configuration,
};
use wasmgate_filter_common::host::clock::with_one_clock_read;
use wasmgate_filter_common::host::counters::FLUSH_PERIOD;
use wasmgate_filter_common::host::headers::with_request_headers;
use wasmgate_filter_common::host::log_config_error;

use crate::FILTER_NAME;
use crate::config::{self, Stage};

// The module's entry point exists only in the wasm build: on the host the three filters' crates
// are linked into one test binary, where `_initialize` has no meaning.
#[cfg(all(target_family = "wasm", feature = "entry-point"))]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    wasmgate_filter_common::host::install_panic_hook(FILTER_NAME);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { id: context_id, stages: Vec::new() })
    });
}}

fn stage_root(stage: Stage, context_id: u32) -> Box<dyn RootContext> {
    match stage {
        Stage::BearerAuth => bearer_auth::root_context(context_id),
        Stage::RateLimit => rate_limit::root_context(context_id),
        Stage::RouteRewrite => route_rewrite::root_context(context_id),
    }
}

struct Root {
    id: u32,
    stages: Vec<Box<dyn RootContext>>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        // Each stage knows its own callouts by token and ignores the others.
        for stage in &mut self.stages {
            stage.on_http_call_response(token, headers, body, trailers);
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let chain = match config::load(&plugin_configuration()) {
            Ok(chain) => chain,
            Err(error) => {
                log_config_error(FILTER_NAME, &error);
                return false;
            }
        };
        let names: Vec<&str> = chain.stages.iter().map(|(s, _)| s.key()).collect();
        // One tick for all stages, set before them: each flushes its counters on it, and a stage
        // that wants faster ticks (bearer-auth, while it waits for keys) sets them itself.
        let _ = hostcalls::set_tick_period(FLUSH_PERIOD);
        let mut stages = Vec::new();
        for (stage, section) in chain.stages {
            let mut root = stage_root(stage, self.id);
            let size = section.len();
            if !with_configuration(section, || root.on_configure(size)) {
                // The section passed the filter's own checks, so this is the stage refusing at
                // start-up for another reason; it logged why.
                log(
                    LogLevel::Error,
                    &format!("{FILTER_NAME}: stage `{}` refused to start", stage.key()),
                );
                return false;
            }
            stages.push(root);
        }
        log(
            LogLevel::Info,
            &format!("{FILTER_NAME}: stages {}", names.join(", ")),
        );
        self.stages = stages;
        set_continuation(Rc::new(continue_after_pause));
        true
    }

    fn on_tick(&mut self) {
        for stage in &mut self.stages {
            stage.on_tick();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let streams = self
            .stages
            .iter()
            .filter_map(|stage| stage.create_http_context(context_id))
            .collect();
        let stages = Rc::new(RefCell::new(Streams {
            streams,
            ran: 0,
            request_headers: (0, false),
        }));
        Some(Box::new(Stream {
            id: context_id,
            stages,
            paused: false,
        }))
    }
}

/// One request's stage contexts and how far the request got through them.
struct Streams {
    streams: Vec<Box<dyn HttpContext>>,
    /// Stages whose request-headers callback ran: the response goes back through these only,
    /// as it does through the filters before the one that answered in Envoy's chain.
    ran: usize,
    /// The arguments of the request-headers callback, for the stages run after a pause.
    request_headers: (usize, bool),
}

thread_local! {
    /// The stages of each request a stage paused, by context id, for `continue_after_pause`.
    /// Only paused requests are kept here: every other request would pay an insert and a removal
    /// for nothing.
    static STREAMS: RefCell<HashMap<u32, Rc<RefCell<Streams>>, BuildHasherDefault<ContextIdHash>>> =
        RefCell::new(HashMap::default());
}

/// The map's hash of a context id: the id times an odd constant (Fibonacci hashing). Every request
/// inserts and removes its id, and the host hands out the ids, so there is nothing for std's keyed
/// SipHash to defend against.
#[derive(Default)]
struct ContextIdHash(u64);

impl Hasher for ContextIdHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(FIBONACCI);
    }
}

/// 2^64 divided by the golden ratio, made odd.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

/// Runs the request-headers callback of the stages from `ran` on, stopping at the first that does
/// not let the request go on. The stages share one read of the host's clock (bearer-auth's cache
/// expiry and rate-limit's buckets would each read it otherwise).
fn run_request_headers(streams: &mut Streams) -> Action {
    let (num_headers, end_of_stream) = streams.request_headers;
    with_one_clock_read(|| {
        while streams.ran < streams.streams.len() {
            let at = streams.ran;
            streams.ran += 1;
            let Some(stream) = streams.streams.get_mut(at) else {
                break;
            };
            match stream.on_http_request_headers(num_headers, end_of_stream) {
                Action::Continue => {}
                stop => return stop,
            }
        }
        Action::Continue
    })
}

/// The continuation a stage's resume goes through (effective context `context_id`).
fn continue_after_pause(context_id: u32) -> bool {
    let Some(streams) = STREAMS.with(|s| s.borrow().get(&context_id).cloned()) else {
        return true;
    };
    let Ok(mut streams) = streams.try_borrow_mut() else {
        return false;
    };
    matches!(
        with_request_headers(|| run_request_headers(&mut streams)),
        Action::Continue
    )
}

struct Stream {
    id: u32,
    stages: Rc<RefCell<Streams>>,
    /// Whether a stage paused the request, which put the stages in `STREAMS`.
    paused: bool,
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.paused {
            STREAMS.with(|s| s.borrow_mut().remove(&self.id));
        }
    }
}

impl Stream {
    /// Calls `f` on each stage that ran, first to last or (`reverse`) last to first, stopping at
    /// the first that does not continue.
    fn each_ran(&self, reverse: bool, mut f: impl FnMut(&mut dyn HttpContext) -> Action) -> Action {
        let Ok(mut streams) = self.stages.try_borrow_mut() else {
            return Action::Continue;
        };
        let ran = streams.ran.min(streams.streams.len());
        let stages = streams.streams.iter_mut().take(ran);
        // Runs on every response callback: walk the stages in place, no list of indices.
        let mut run = |stream: &mut Box<dyn HttpContext>| f(stream.as_mut());
        let stopped = if reverse {
            stages.rev().map(&mut run).find(|a| *a == Action::Pause)
        } else {
            stages.map(&mut run).find(|a| *a == Action::Pause)
        };
        stopped.unwrap_or(Action::Continue)
    }
}

// No `on_done`: no stage handles it, and the module does not export `proxy_on_done`
// (xtask/src/exports.rs), so the host never calls it.
impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let Ok(mut streams) = self.stages.try_borrow_mut() else {
            return Action::Continue;
        };
        streams.request_headers = (num_headers, end_of_stream);
        streams.ran = 0;
        // One read of the request headers for every stage.
        let action = with_request_headers(|| run_request_headers(&mut streams));
        if action == Action::Pause && !self.paused {
            // The stage that paused resumes the request later through `continue_after_pause`.
            self.paused = true;
            STREAMS.with(|s| s.borrow_mut().insert(self.id, self.stages.clone()));
        }
        action
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.each_ran(false, |s| s.on_http_request_body(size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, num: usize) -> Action {
        self.each_ran(false, |s| s.on_http_request_trailers(num))
    }

    fn on_http_response_headers(&mut self, num: usize, end_of_stream: bool) -> Action {
        self.each_ran(true, |s| s.on_http_response_headers(num, end_of_stream))
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.each_ran(true, |s| s.on_http_response_body(size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, num: usize) -> Action {
        self.each_ran(true, |s| s.on_http_response_trailers(num))
    }

    fn on_log(&mut self) {
        self.each_ran(false, |s| {
            s.on_log();
            Action::Continue
        });
    }
}

fn log(level: LogLevel, line: &str) {
    let _ = hostcalls::log(level, line);
}
