//! The benchmark's floor (configuration N in BENCHMARKS.md): one proxy-wasm filter built with the
//! same SDK and profile as ours that does the least a filter in front of the `[P]` route must do,
//! set `x-wasmgate-upstream`, and nothing else. What a run measures for it over passthrough is the
//! fixed cost of one wasm filter in Envoy: a stream context in the VM and each callback entering
//! it. Its exports are trimmed like our modules' (`cargo xtask build`).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream))
    }
}

struct Stream;

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        // The one write route-rewrite's [P] rule makes too; the benchmark's route needs it.
        let _ = hostcalls::set_map_value(
            MapType::HttpRequestHeaders,
            "x-wasmgate-upstream",
            Some("notes_api"),
        );
        Action::Continue
    }
}
