//! rate-limit filter. PASS-THROUGH PLACEHOLDER: until its issue lands, this filter loads in Envoy
//! and lets every request through unchanged.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

const FILTER_NAME: &str = "rate-limit";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    wasmgate_filter_common::host::install_panic_hook(FILTER_NAME);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PassThrough))
    }
}

struct PassThrough;
impl Context for PassThrough {}
impl HttpContext for PassThrough {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        Action::Continue
    }
}
