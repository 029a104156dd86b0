//! The host's wall clock, read at most once per callback inside a scope.
//!
//! In the one-module chain, bearer-auth and rate-limit each read the clock while handling the same
//! request headers: two host calls for what is, to a microsecond, the same instant. Inside
//! `with_one_clock_read` the first read is kept and every later one in the scope reuses it.
//! Outside a scope each read goes to the host, so a filter loaded on its own behaves as before.
//! Like the request-header copy, the scope is one callback: a proxy-wasm VM runs one callback at
//! a time on one thread.

use std::cell::Cell;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;

thread_local! {
    /// `Some` inside a scope: the instant read in it, if any yet.
    static SCOPE: Cell<Option<Option<Duration>>> = const { Cell::new(None) };
}

/// Runs `f` with one clock read shared by everything in it (scopes nest: an inner one reuses the
/// outer one's read).
pub fn with_one_clock_read<R>(f: impl FnOnce() -> R) -> R {
    if SCOPE.get().is_some() {
        return f();
    }
    SCOPE.set(Some(None));
    let result = f();
    SCOPE.set(None);
    result
}

/// The time since the Unix epoch; `None` if the host could not tell (or said it was before it).
pub fn since_epoch() -> Option<Duration> {
    match SCOPE.get() {
        Some(Some(read)) => Some(read),
        Some(None) => {
            let read = read_host_clock()?;
            SCOPE.set(Some(Some(read)));
            Some(read)
        }
        None => read_host_clock(),
    }
}

fn read_host_clock() -> Option<Duration> {
    hostcalls::get_current_time()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
}
