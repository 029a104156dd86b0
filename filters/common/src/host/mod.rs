//! The one place in this crate that talks to the proxy-wasm host.

pub mod chain;
pub mod clock;
pub mod counters;
pub mod headers;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, Status};

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

/// Writes shared data with `cas` (`None`: unconditionally), the same way on every host.
///
/// Envoy stores a set on a missing key whatever its CAS, and a set with CAS 0 unconditionally;
/// our filters create keys with a non-zero CAS, so that a second creator racing with the first
/// gets `CasMismatch` instead of overwriting it. Kong's ngx_wasm_module stores a set only if its
/// CAS equals the key's current one, 0 for a missing key: there a non-zero CAS never creates a
/// key and CAS 0 never overwrites one. When the host refuses a write that Envoy would have taken,
/// it is redone in that host's terms: a create with CAS 0 (still refused if another creator came
/// first), an unconditional write as a compare-and-swap on the current CAS. On Envoy the first
/// write never fails this way, so nothing changes there.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    let first = hostcalls::set_shared_data(key, Some(value), cas);
    if first != Err(Status::CasMismatch) {
        return first;
    }
    match cas.filter(|c| *c != 0) {
        Some(_) if current_cas(key) == Some(0) => {
            hostcalls::set_shared_data(key, Some(value), Some(0))
        }
        Some(_) => first,
        None => {
            for _ in 0..UNCONDITIONAL_WRITE_ATTEMPTS {
                let Some(current) = current_cas(key) else {
                    return first;
                };
                match hostcalls::set_shared_data(key, Some(value), Some(current)) {
                    Err(Status::CasMismatch) => continue,
                    other => return other,
                }
            }
            first
        }
    }
}

/// An unconditional write racing with other writers: how many compare-and-swaps to try.
const UNCONDITIONAL_WRITE_ATTEMPTS: u32 = 8;

/// The key's CAS, 0 if it is missing; `None` if the host refused the read.
fn current_cas(key: &str) -> Option<u32> {
    match hostcalls::get_shared_data(key) {
        Ok((None, _)) => Some(0),
        Ok((Some(_), cas)) => Some(cas.unwrap_or(0)),
        Err(_) => None,
    }
}
