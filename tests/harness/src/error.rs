//! Errors of the harness. Every variant says what went wrong in words a test failure can show.

use crate::abi::LogLevel;

/// A log line the filter wrote, kept in errors so a failure explains itself.
pub type LogLine = (LogLevel, String);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The module could not be read or compiled.
    #[error("cannot load the module: {0}")]
    Load(String),

    /// The module imports something the host does not offer.
    #[error("the module imports `{module}.{name}`, {reason}")]
    UnsupportedImport {
        module: String,
        name: String,
        reason: &'static str,
    },

    /// The module lacks an export the ABI requires.
    #[error("the module does not export `{0}`, required by proxy-wasm 0.2.1")]
    MissingExport(&'static str),

    /// Instantiation or a host-side wasmtime operation failed.
    #[error("wasmtime: {0}")]
    Wasmtime(String),

    /// The filter trapped (a panic, an out-of-bounds access, `proc_exit`, ...). The VM is dead
    /// afterwards, as in Envoy. `logs` holds its warning-and-above lines, which carry the panic
    /// message logged by the filter's panic hook.
    #[error("the filter trapped in `{call}`: {message}; its warnings and errors: {logs:?}")]
    Trap {
        call: &'static str,
        message: String,
        logs: Vec<LogLine>,
    },

    /// A call on a VM that trapped before.
    #[error("the VM is dead: it trapped earlier")]
    VmDead,

    /// `on_vm_start` returned false.
    #[error("the filter refused to start (on_vm_start returned false); logs: {0:?}")]
    VmStartRefused(Vec<LogLine>),

    /// `on_configure` returned false where the test expected a working plugin.
    #[error("the filter refused its configuration; logs: {0:?}")]
    ConfigRefused(Vec<LogLine>),

    /// The test drove the host in a way the proxy-wasm host would not (e.g. answered a callout
    /// that does not exist).
    #[error("harness misuse: {0}")]
    Misuse(String),

    /// Building a filter's `.wasm` with cargo failed.
    #[error("cannot build the wasm of `{package}`: {reason}")]
    Build { package: String, reason: String },

    /// A test token could not be made (`TokenSigner`).
    #[error("cannot sign the test token: {0}")]
    Signing(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
