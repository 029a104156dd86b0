//! The root and stream contexts of the chain: each delegates to the stages' own contexts, in
//! order, and stops where a stage stops the request (an answer of its own, or a pause). A
//! request's stage contexts are values inside the chain's own context (`StageRoot`): one
//! allocation per request, where boxed stage contexts in a shared list took six.
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
    StageRoot, plugin_configuration, set_continuation, with_configuration,
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
        Box::new(Root { id: context_id, stages: Stages::default() })
    });
}}

struct Root {
    id: u32,
    stages: Stages,
}

/// The stages' root contexts, each there if the configuration has its section.
#[derive(Default)]
struct Stages {
    bearer_auth: Option<bearer_auth::Root>,
    rate_limit: Option<rate_limit::Root>,
    route_rewrite: Option<route_rewrite::Root>,
}

impl Stages {
    /// Configures `stage` from its section and keeps it; false if it refused (it logged why).
    fn configure(&mut self, stage: Stage, context_id: u32, section: Vec<u8>) -> bool {
        match stage {
            Stage::BearerAuth => configure_into(&mut self.bearer_auth, context_id, section),
            Stage::RateLimit => configure_into(&mut self.rate_limit, context_id, section),
            Stage::RouteRewrite => configure_into(&mut self.route_rewrite, context_id, section),
        }
    }

    // The stages' root callbacks are called on each concrete type, not through `dyn RootContext`:
    // that would keep each stage's own `create_http_context`, which boxes, in the module.

    fn on_tick(&mut self) {
        if let Some(root) = &mut self.bearer_auth {
            root.on_tick();
        }
        if let Some(root) = &mut self.rate_limit {
            root.on_tick();
        }
        if let Some(root) = &mut self.route_rewrite {
            root.on_tick();
        }
    }

    /// Each stage knows its own callouts by token and ignores the others.
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        if let Some(root) = &mut self.bearer_auth {
            root.on_http_call_response(token, headers, body, trailers);
        }
        if let Some(root) = &mut self.rate_limit {
            root.on_http_call_response(token, headers, body, trailers);
        }
        if let Some(root) = &mut self.route_rewrite {
            root.on_http_call_response(token, headers, body, trailers);
        }
    }

    /// The stage contexts of request `context_id`.
    fn streams(&self, context_id: u32) -> Streams {
        Streams {
            bearer_auth: self.bearer_auth.as_ref().map(|r| r.stream(context_id)),
            rate_limit: self.rate_limit.as_ref().map(|r| r.stream(context_id)),
            route_rewrite: self.route_rewrite.as_ref().map(|r| r.stream(context_id)),
            ran: 0,
            request_headers: (0, false),
        }
    }
}

fn configure_into<R: StageRoot>(slot: &mut Option<R>, context_id: u32, section: Vec<u8>) -> bool {
    let mut root = R::new(context_id);
    let size = section.len();
    let configured = with_configuration(section, || root.on_configure(size));
    if configured {
        *slot = Some(root);
    }
    configured
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        self.stages
            .on_http_call_response(token, headers, body, trailers);
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
        let mut stages = Stages::default();
        for (stage, section) in chain.stages {
            if !stages.configure(stage, self.id, section) {
                // The section passed the filter's own checks, so this is the stage refusing at
                // start-up for another reason; it logged why.
                log(
                    LogLevel::Error,
                    &format!("{FILTER_NAME}: stage `{}` refused to start", stage.key()),
                );
                return false;
            }
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
        self.stages.on_tick();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            id: context_id,
            stages: Held::Own(self.stages.streams(context_id)),
        }))
    }
}

/// One request's stage contexts, side by side (one allocation for the request's whole context),
/// and how far the request got through them.
#[derive(Default)]
struct Streams {
    bearer_auth: Option<bearer_auth::Request>,
    rate_limit: Option<rate_limit::Http>,
    route_rewrite: Option<route_rewrite::Stream>,
    /// Positions in the chain's order (`Stage::ALL`) whose request-headers callback ran, stages
    /// the configuration leaves out included: the response goes back through these only, as it
    /// does through the filters before the one that answered in Envoy's chain.
    ran: usize,
    /// The arguments of the request-headers callback, for the stages run after a pause.
    request_headers: (usize, bool),
}

impl Streams {
    /// The context of the stage at `position` in the chain's order, if the chain has that stage.
    fn at(&mut self, position: usize) -> Option<&mut dyn HttpContext> {
        match Stage::ALL.get(position)? {
            Stage::BearerAuth => self.bearer_auth.as_mut().map(|s| s as &mut dyn HttpContext),
            Stage::RateLimit => self.rate_limit.as_mut().map(|s| s as &mut dyn HttpContext),
            Stage::RouteRewrite => self
                .route_rewrite
                .as_mut()
                .map(|s| s as &mut dyn HttpContext),
        }
    }
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
        while streams.ran < Stage::ALL.len() {
            let at = streams.ran;
            streams.ran += 1;
            let Some(stream) = streams.at(at) else {
                continue;
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
    stages: Held,
}

/// Where a request's stage contexts are.
enum Held {
    /// In the request's own context: every request a stage did not pause.
    Own(Streams),
    /// Shared with `STREAMS`, since a stage paused the request (`continue_after_pause` runs the
    /// later stages when it is resumed).
    Shared(Rc<RefCell<Streams>>),
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Held::Shared(_) = self.stages {
            STREAMS.with(|s| s.borrow_mut().remove(&self.id));
        }
    }
}

impl Stream {
    /// Runs `f` on the request's stage contexts (a request being resumed has them borrowed: then
    /// the request goes on).
    fn with_streams(&mut self, f: impl FnOnce(&mut Streams) -> Action) -> Action {
        match &mut self.stages {
            Held::Own(streams) => f(streams),
            Held::Shared(shared) => match shared.try_borrow_mut() {
                Ok(mut streams) => f(&mut streams),
                Err(_) => Action::Continue,
            },
        }
    }

    /// Puts the stage contexts where `continue_after_pause` finds them.
    fn share(&mut self) {
        if let Held::Own(streams) = &mut self.stages {
            let shared = Rc::new(RefCell::new(std::mem::take(streams)));
            STREAMS.with(|s| s.borrow_mut().insert(self.id, shared.clone()));
            self.stages = Held::Shared(shared);
        }
    }

    /// Calls `f` on each stage that ran, first to last or (`reverse`) last to first, stopping at
    /// the first that does not continue.
    fn each_ran(
        &mut self,
        reverse: bool,
        mut f: impl FnMut(&mut dyn HttpContext) -> Action,
    ) -> Action {
        self.with_streams(|streams| {
            let ran = streams.ran.min(Stage::ALL.len());
            // Runs on every response callback: walk the stages in place, no list of indices.
            let mut run = |at| streams.at(at).map_or(Action::Continue, &mut f);
            let stopped = if reverse {
                (0..ran).rev().map(&mut run).find(|a| *a == Action::Pause)
            } else {
                (0..ran).map(&mut run).find(|a| *a == Action::Pause)
            };
            stopped.unwrap_or(Action::Continue)
        })
    }
}

// No `on_done`: no stage handles it, and the module does not export `proxy_on_done`
// (xtask/src/exports.rs), so the host never calls it.
impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let action = self.with_streams(|streams| {
            streams.request_headers = (num_headers, end_of_stream);
            streams.ran = 0;
            // One read of the request headers for every stage.
            with_request_headers(|| run_request_headers(streams))
        });
        if action == Action::Pause {
            // The stage that paused resumes the request later through `continue_after_pause`.
            self.share();
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
