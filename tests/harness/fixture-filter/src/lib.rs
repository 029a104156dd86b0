//! Test fixture for the harness's self-tests: a small proxy-wasm filter whose behaviour is chosen
//! by the request path, so that each host feature (shared-data CAS, the clock, callouts with pause
//! and resume, local responses, properties, bodies, trailers, metrics, ticks) is exercised by the
//! real Rust SDK compiled to `wasm32-wasip1`, exactly as our filters use it.
//!
//! Paths:
//! - `/count`   increments the shared counter `fixture.count` with a CAS retry loop.
//! - `/bucket`  takes one token from a token bucket in shared data refilled by the host clock;
//!   429 when empty.
//! - `/callout` asks cluster `backend` and pauses; the answer resumes the request with
//!   `x-callout-status`/`x-callout-body`, a failed call gets a local 503.
//! - `/local`   answers 403 locally.
//! - `/props`   copies properties into `x-prop-*` request headers.
//! - `/upper`   buffers the request body and upper-cases it; the response body too.
//! - `/time`    reports the WASI clock and the proxy-wasm clock in request headers.
//! - `/wasi`    writes to stdout and stderr and reads an environment variable.
//! - `/panic`   panics (to test that a trap is reported with the panic message).
//!
//! This is not a filter of the product; it is never deployed.

use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use serde::Deserialize;

const NAME: &str = "fixture";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    wasmgate_filter_common::host::install_panic_hook(NAME);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Token bucket size for `/bucket`.
    #[serde(default = "default_capacity")]
    capacity: u64,
    /// Tokens added per second of host clock.
    #[serde(default = "default_refill")]
    refill_per_second: u64,
    /// Tick period asked from the host; 0 = no ticks.
    #[serde(default)]
    tick_ms: u64,
    /// On each tick, fetch `/data` from cluster `backend` from the root context.
    #[serde(default)]
    fetch_on_tick: bool,
}

fn default_capacity() -> u64 {
    3
}
fn default_refill() -> u64 {
    1
}

#[derive(Default)]
struct Root {
    config: Option<Config>,
    requests_metric: u32,
    body_metric: u32,
}

impl Context for Root {
    // The answer to a root-context callout (the pattern bearer-auth uses for its JWKS).
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _: usize) {
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let _ = proxy_wasm::hostcalls::set_shared_data("fixture.fetched", Some(&body), None);
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        proxy_wasm::hostcalls::log(LogLevel::Info, "fixture: vm started").is_ok()
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config: Config = match wasmgate_filter_common::parse_config(&bytes) {
            Ok(config) => config,
            Err(err) => {
                wasmgate_filter_common::host::log_config_error(NAME, &err);
                return false;
            }
        };
        if config.tick_ms > 0 {
            self.set_tick_period(Duration::from_millis(config.tick_ms));
        }
        self.requests_metric =
            proxy_wasm::hostcalls::define_metric(MetricType::Counter, "fixture_requests_total")
                .unwrap_or(0);
        self.body_metric =
            proxy_wasm::hostcalls::define_metric(MetricType::Histogram, "fixture_body_bytes")
                .unwrap_or(0);
        self.config = Some(config);
        true
    }

    fn on_tick(&mut self) {
        cas_add("fixture.ticks", 1);
        let _ = proxy_wasm::hostcalls::log(LogLevel::Debug, "fixture: tick");
        if self.config.is_some_and(|c| c.fetch_on_tick) {
            let _ = self.dispatch_http_call(
                "backend",
                vec![
                    (":method", "GET"),
                    (":path", "/data"),
                    (":authority", "backend"),
                ],
                None,
                vec![],
                Duration::from_secs(1),
            );
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config?;
        Some(Box::new(Stream {
            config,
            path: String::new(),
            requests_metric: self.requests_metric,
            body_metric: self.body_metric,
        }))
    }
}

struct Stream {
    config: Config,
    path: String,
    requests_metric: u32,
    body_metric: u32,
}

/// The CAS used to create a missing key. A set on a missing key succeeds whatever the CAS, but a
/// second VM that also saw the key missing must not overwrite the first one's value: with CAS 0
/// it would (an unconditional write), with a non-zero CAS it gets `CasMismatch` and retries.
const CREATE_CAS: u32 = u32::MAX;

/// Adds `delta` to the little-endian u64 under `key`, retrying on CAS mismatch as every real
/// filter must. Returns how many retries it took.
fn cas_add(key: &str, delta: u64) -> u64 {
    let mut retries = 0;
    loop {
        let (bytes, cas) = proxy_wasm::hostcalls::get_shared_data(key).unwrap_or((None, None));
        let current = bytes.as_deref().map_or(0, read_u64);
        let next = current.wrapping_add(delta).to_le_bytes();
        let cas = cas.unwrap_or(CREATE_CAS);
        match proxy_wasm::hostcalls::set_shared_data(key, Some(&next), Some(cas)) {
            Err(Status::CasMismatch) => retries += 1,
            _ => return retries,
        }
    }
}

fn read_u64(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

impl Stream {
    /// Token bucket in shared data: 16 bytes = tokens in millitokens, last refill in ns.
    fn take_token(&self) -> bool {
        let now = proxy_wasm::hostcalls::get_current_time().map_or(0, nanos_since_epoch);
        let capacity = self.config.capacity.saturating_mul(1000);
        loop {
            let (bytes, cas) =
                proxy_wasm::hostcalls::get_shared_data("fixture.bucket").unwrap_or((None, None));
            let (tokens, last) = match bytes.as_deref() {
                Some(b) if b.len() == 16 => (read_u64(b), b.get(8..).map_or(0, read_u64)),
                _ => (capacity, now),
            };
            let elapsed_ms = now.saturating_sub(last) / 1_000_000;
            let refill = elapsed_ms.saturating_mul(self.config.refill_per_second);
            let tokens = tokens.saturating_add(refill).min(capacity);
            let (tokens, allowed) = if tokens >= 1000 {
                (tokens - 1000, true)
            } else {
                (tokens, false)
            };
            let mut state = tokens.to_le_bytes().to_vec();
            state.extend_from_slice(&now.to_le_bytes());
            let cas = cas.unwrap_or(CREATE_CAS);
            match proxy_wasm::hostcalls::set_shared_data("fixture.bucket", Some(&state), Some(cas))
            {
                Err(Status::CasMismatch) => continue,
                _ => return allowed,
            }
        }
    }
}

impl Context for Stream {
    fn on_http_call_response(&mut self, _token: u32, _: usize, body_size: usize, _: usize) {
        match self.get_http_call_response_header(":status") {
            Some(status) => {
                let body = self
                    .get_http_call_response_body(0, body_size)
                    .unwrap_or_default();
                self.set_http_request_header("x-callout-status", Some(&status));
                self.set_http_request_header(
                    "x-callout-body",
                    Some(&String::from_utf8_lossy(&body)),
                );
                self.resume_http_request();
            }
            None => self.send_http_response(503, vec![], Some(b"callout failed")),
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let _ = proxy_wasm::hostcalls::increment_metric(self.requests_metric, 1);
        self.path = self.get_http_request_header(":path").unwrap_or_default();
        match self.path.as_str() {
            "/count" => {
                let retries = cas_add("fixture.count", 1);
                self.set_http_request_header("x-cas-retries", Some(&retries.to_string()));
                // Reads the counter back through the host (proxy_get_metric).
                let total = proxy_wasm::hostcalls::get_metric(self.requests_metric).unwrap_or(0);
                self.set_http_request_header("x-requests-total", Some(&total.to_string()));
                Action::Continue
            }
            "/bucket" => {
                if self.take_token() {
                    Action::Continue
                } else {
                    self.send_http_response(429, vec![("retry-after", "1")], Some(b"slow down"));
                    Action::Pause
                }
            }
            "/callout" => {
                let sent = self.dispatch_http_call(
                    "backend",
                    vec![
                        (":method", "POST"),
                        (":path", "/check"),
                        (":authority", "backend"),
                    ],
                    Some(b"ping"),
                    vec![],
                    Duration::from_millis(2500),
                );
                match sent {
                    Ok(_) => Action::Pause,
                    Err(_) => {
                        self.send_http_response(500, vec![], Some(b"dispatch failed"));
                        Action::Pause
                    }
                }
            }
            "/local" => {
                self.send_http_response(
                    403,
                    vec![("x-reason", "fixture"), ("content-type", "text/plain")],
                    Some(b"denied"),
                );
                Action::Pause
            }
            "/props" => {
                for (header, path) in [
                    ("x-prop-source", vec!["source", "address"]),
                    ("x-prop-path", vec!["request", "path"]),
                    ("x-prop-host", vec!["request", "host"]),
                    ("x-prop-route", vec!["route_name"]),
                ] {
                    let value = self.get_property(path).map_or_else(
                        || "<none>".to_owned(),
                        |v| String::from_utf8_lossy(&v).into(),
                    );
                    self.set_http_request_header(header, Some(&value));
                }
                Action::Continue
            }
            "/time" => {
                // The WASI clock (what `SystemTime::now` reads) and the proxy-wasm clock.
                let wasi = nanos_since_epoch(std::time::SystemTime::now());
                let proxy = proxy_wasm::hostcalls::get_current_time().map_or(0, nanos_since_epoch);
                self.set_http_request_header("x-wasi-time", Some(&wasi.to_string()));
                self.set_http_request_header("x-proxy-time", Some(&proxy.to_string()));
                Action::Continue
            }
            "/wasi" => {
                // WASI stdout/stderr and the environment, as std uses them.
                println!("fixture: to stdout");
                eprintln!("fixture: to stderr");
                let greeting = std::env::var("FIXTURE_GREETING").unwrap_or_default();
                self.set_http_request_header("x-env", Some(&greeting));
                Action::Continue
            }
            "/panic" => fixture_panic(),
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.path != "/upper" {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let _ = proxy_wasm::hostcalls::record_metric(self.body_metric, body.len() as u64);
        self.set_http_request_body(0, body_size, &body.to_ascii_uppercase());
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _: usize) -> Action {
        self.set_http_request_trailer("x-fixture-trailer", Some("seen"));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("x-fixture-response", Some("1"));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.path != "/upper" {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self
            .get_http_response_body(0, body_size)
            .unwrap_or_default();
        self.set_http_response_body(0, body_size, &body.to_ascii_uppercase());
        Action::Continue
    }
}

fn nanos_since_epoch(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Panics on purpose: the harness must turn the resulting trap into an error that carries the
/// panic message the hook logged.
#[allow(clippy::panic)]
fn fixture_panic() -> Action {
    panic!("fixture asked to panic")
}
