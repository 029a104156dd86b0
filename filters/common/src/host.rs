//! The one place in this crate that talks to the proxy-wasm host.

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

/// Installs a panic hook that logs the panic through the host before the VM aborts, so that an
/// operator sees why a filter died instead of a bare "wasm trap". Filter code never panics on
/// purpose (clippy denies unwrap/expect/panic); this is the last line of defence.
pub fn install_panic_hook(filter_name: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let _ = hostcalls::log(
            LogLevel::Critical,
            &format!("{filter_name}: panic, the VM will stop: {info}"),
        );
    }));
}

/// Logs the reason a configuration was refused, in the form the docs promise:
/// `<filter>: invalid configuration: field `<path>`: <reason>`.
pub fn log_config_error(filter_name: &str, error: &crate::ConfigError) {
    let _ = hostcalls::log(LogLevel::Error, &format!("{filter_name}: {error}"));
}
