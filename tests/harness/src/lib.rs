//! A proxy-wasm ABI 0.2.1 host on wasmtime, for testing the compiled filters.
//!
//! It loads a filter's `.wasm` as Envoy would (proxy-wasm host functions plus the dozen WASI
//! calls Envoy offers; any other import is refused at load, by name), and lets a test drive it:
//! VM start, plugin configuration, ticks, HTTP streams (headers, bodies, trailers both ways, each
//! returning the filter's [`Action`]), pause and resume, local responses, HTTP callouts answered
//! by the test, shared data with Envoy's CAS rules shared by several VMs on several OS threads,
//! metrics, properties, captured logs, and a clock that only moves when the test says so.
//!
//! There is no global state: every [`Host`] is independent, so tests run in parallel.
//!
//! ```no_run
//! use wasmgate_harness::{Action, FilterModule, Host};
//!
//! let module = FilterModule::from_file("rate_limit.wasm")?;
//! let host = Host::new(&module);
//! let mut vm = host.plugin(r#"{"limit": 1}"#)?;
//! let mut stream = vm.http_stream()?;
//! let action = stream.request_headers(&[(":method", "GET"), (":path", "/api/notes")], true)?;
//! assert_eq!(action, Action::Continue);
//! # Ok::<(), wasmgate_harness::Error>(())
//! ```

mod abi;
mod clock;
mod error;
mod host;
mod hostcalls;
mod memory;
mod metrics;
mod module_cache;
mod shared_data;
mod stream;
mod tokens;
mod types;
mod vm;
mod wasi;
mod wasm_build;

pub use abi::{
    Action, LogLevel, MetricKind, PROXY_WASM_IMPORTS, PROXY_WASM_MODULE, WASI_IMPORTS, WASI_MODULE,
};
pub use clock::Clock;
pub use error::{Error, LogLine, Result};
pub use host::{FilterModule, Host, LogRecord};
pub use metrics::MetricValue;
pub use shared_data::{CasRules, SetOutcome, SharedData};
pub use stream::HttpStream;
pub use tokens::{TokenSigner, jwks};
pub use types::{CallResponse, Callout, Headers, LocalResponse, Message};
pub use vm::{Crossings, Vm};
pub use wasm_build::{filter_wasm, workspace_root};
